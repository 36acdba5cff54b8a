//! The fault kinds and schedules of the [`FaultProxy`](super::FaultProxy):
//! [`Fault`], the counted [`Rule`]s and the [`Seeded`] share of failures.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::wire::RequestHead;

/// How many matching requests [`Rule::every`] covers.
pub(super) const EVERY: usize = 10_000;

/// Something that goes wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: SECONDS` when given)
    /// and a JSON error body, without forwarding the request.
    Status {
        /// The status code, e.g. 503.
        code: u16,
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Read the whole request, then reset the connection without answering.
    ResetBeforeResponse,
    /// Reset the connection in the middle of a body. For a request with a
    /// body: once `after_bytes` of it went through to the upstream (which
    /// then sees its connection end early), while the client is still
    /// sending. Otherwise: after relaying the response headers and
    /// `after_bytes` of the response body.
    ResetMidBody {
        /// Body bytes that get through before the reset.
        after_bytes: usize,
    },
    /// Relay the response headers (with the real `Content-Length`) and only
    /// `after_bytes` of the body, then close the connection cleanly.
    TruncateBody {
        /// Body bytes that get through before the close.
        after_bytes: usize,
    },
    /// Relay the response headers and `after_bytes` of the body, wait
    /// `millis`, then relay the rest and close the connection: a download
    /// that is under way and stalls, so a client can be interrupted in the
    /// middle of it.
    StallMidBody {
        /// Body bytes that get through before the stall.
        after_bytes: usize,
        /// The stall in milliseconds.
        millis: u64,
    },
    /// Wait this long, then forward the request normally.
    Stall {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Leave the request's body unread this long (the client's sending
    /// stops once the connection's buffers are full), then read it and
    /// forward the request normally: a registry slower than its client.
    StallBeforeBody {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Read the request's body at no more than `bytes_per_sec` (the
    /// client's sending has to wait once the connection's buffers are
    /// full), then forward the request normally: a registry at the end of
    /// a slow link, which keeps taking the body.
    ReadBodySlowly {
        /// The pace of reading.
        bytes_per_sec: u64,
    },
    /// Relay the response headers at once, then its body one byte every
    /// `millis_per_byte` ms: a server that never goes silent long enough
    /// for a read timeout, yet never finishes.
    Trickle {
        /// The pause before each body byte, in milliseconds.
        millis_per_byte: u64,
    },
    /// Forward a blob mount (`POST …/blobs/uploads/?mount=D&from=R`)
    /// without its `mount` and `from` parameters, so the registry opens an
    /// upload session and answers 202, as ECR does when no manifest in the
    /// source repository uses the blob.
    DeclineMount,
    /// Answer with this status and a JSON error body whose message quotes
    /// the request's `Authorization` header, as some servers echo what
    /// they refused; the request is not forwarded.
    EchoAuthorization {
        /// The status code, e.g. 401.
        code: u16,
    },
    /// ECR: a manifest naming a `subject` is refused with 405; others are
    /// relayed.
    RefuseSubject,
    /// GitLab: the tag `sha256-<hex>` is read as the digest `sha256:<hex>`.
    TagIsDigest,
    /// The referrers API, served by the proxy (see `personas.rs`).
    ReferrersApi,
    /// A blob `GET` the registry answers 200 is answered with a redirect
    /// to the proxy's [`BlobStorage`](super::storage::BlobStorage)
    /// instead, which then serves the bytes (see `personas.rs`).
    RedirectToStorage,
}

impl fmt::Display for Fault {
    /// A short label, as logged in [`FaultProxy::hits`](super::FaultProxy::hits): `status 503`,
    /// `reset before response`, `reset mid-body`, `truncated body`,
    /// `stall mid-body`, `stall`, `stall before body`, `read body slowly`,
    /// `trickle`, `echo authorization 401`, `decline mount`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status { code, .. } => write!(f, "status {code}"),
            Fault::ResetBeforeResponse => f.write_str("reset before response"),
            Fault::ResetMidBody { .. } => f.write_str("reset mid-body"),
            Fault::TruncateBody { .. } => f.write_str("truncated body"),
            Fault::StallMidBody { .. } => f.write_str("stall mid-body"),
            Fault::Stall { .. } => f.write_str("stall"),
            Fault::StallBeforeBody { .. } => f.write_str("stall before body"),
            Fault::ReadBodySlowly { .. } => f.write_str("read body slowly"),
            Fault::Trickle { .. } => f.write_str("trickle"),
            Fault::EchoAuthorization { code } => write!(f, "echo authorization {code}"),
            Fault::DeclineMount => f.write_str("decline mount"),
            Fault::RefuseSubject => f.write_str("refuse subject"),
            Fault::TagIsDigest => f.write_str("tag is digest"),
            Fault::ReferrersApi => f.write_str("referrers api"),
            Fault::RedirectToStorage => f.write_str("redirect to storage"),
        }
    }
}

/// When to inject a [`Fault`].
#[derive(Debug, Clone)]
pub struct Rule {
    /// Only requests with this method (case-insensitive); `None` for any.
    pub method: Option<String>,
    /// Only requests whose target (path and query) contains this.
    pub path_contains: String,
    /// Which of the matching requests (1-based, counted by this rule)
    /// get the fault.
    pub nth: Vec<usize>,
    /// The fault.
    pub fault: Fault,
}

impl Rule {
    /// The `nth` (1-based) `method` requests whose target contains
    /// `path_contains` get `fault`.
    pub fn new(method: &str, path_contains: &str, nth: &[usize], fault: Fault) -> Rule {
        Rule {
            method: Some(method.to_string()),
            path_contains: path_contains.to_string(),
            nth: nth.to_vec(),
            fault,
        }
    }

    /// Every request (any method, up to 10,000 of them) whose target
    /// contains `path_contains` gets `fault`.
    pub fn every(path_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: None,
            path_contains: path_contains.to_string(),
            nth: (1..=EVERY).collect(),
            fault,
        }
    }

    pub(super) fn matches(&self, request: &RequestHead) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
            && request.target.contains(&self.path_contains)
    }
}

/// A pseudo-random schedule: see the module documentation.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Picks which requests fail and how; the same seed gives the same
    /// faults for the same requests.
    pub seed: u64,
    /// Share of requests that get a fault, in percent.
    pub percent: u64,
    /// Most faults in a row for one method and path.
    pub max_in_a_row: u32,
    /// The faults to draw from, with equal chances.
    pub menu: Vec<Fault>,
}

impl Seeded {
    /// A third of all requests fail (at most twice in a row for one method
    /// and path), each with one of: 429 with `Retry-After: 1`, 500, 502,
    /// 503, a reset before the response, a reset in the middle of a body,
    /// a truncated body, or a stall of `stall_millis` (pick it past the
    /// client's read timeout).
    pub fn third(seed: u64, stall_millis: u64) -> Seeded {
        Seeded {
            seed,
            percent: 33,
            max_in_a_row: 2,
            menu: vec![
                Fault::Status {
                    code: 429,
                    retry_after: Some(1),
                },
                Fault::Status {
                    code: 500,
                    retry_after: None,
                },
                Fault::Status {
                    code: 502,
                    retry_after: None,
                },
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
                Fault::ResetBeforeResponse,
                Fault::ResetMidBody { after_bytes: 64 },
                Fault::TruncateBody { after_bytes: 64 },
                Fault::Stall {
                    millis: stall_millis,
                },
            ],
        }
    }

    /// The fault for the `count`-th (0-based) request with `key`, if any.
    pub(super) fn draw(&self, key: &str, count: u64) -> Option<Fault> {
        let mut h = fnv1a(self.seed.to_le_bytes().iter().chain(key.as_bytes()));
        h = splitmix(h ^ count);
        if h % 100 >= self.percent || self.menu.is_empty() {
            return None;
        }
        let pick = (splitmix(h) % self.menu.len() as u64) as usize;
        Some(self.menu[pick].clone())
    }
}

pub(super) fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The method and path of a request with upload session ids and the query
/// left out: what [`Seeded`] counts requests by.
pub(super) fn seeded_key(request: &RequestHead) -> String {
    let path = request.target.split('?').next().unwrap_or_default();
    let path = match path.find("/blobs/uploads/") {
        Some(at) => &path[..at + "/blobs/uploads/".len()],
        None => path,
    };
    format!("{} {path}", request.method.to_ascii_uppercase())
}
