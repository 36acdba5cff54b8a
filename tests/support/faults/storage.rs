//! Blob storage on another origin, as S3, a CDN or a storage account sit
//! behind many registries: a [`FaultProxy`](super::FaultProxy)
//! persona ([`FaultProxy::storage_redirects`](super::FaultProxy::storage_redirects))
//! answers blob `GET`s with a redirect to a signed URL here, and this
//! server serves the bytes the registry gave for it.
//!
//! It listens on `127.0.0.2`, another host than the registry's
//! `127.0.0.1`, records the header fields of every request, and can be
//! told to answer the next requests otherwise: an S3 "Request has expired"
//! refusal, corrupted bytes, or a bearer challenge naming a realm.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use super::wire::read_head;

/// The signature in every URL the storage hands out; it must never show
/// in ocistep's output.
pub const SIGNATURE: &str = "c2lnbmF0dXJlLW5ldmVyLXByaW50ZWQ";

/// How the storage answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The blob's bytes.
    Serve,
    /// 403 with S3's XML error for an expired signature.
    Expired,
    /// The blob's bytes with the first one changed.
    Corrupt,
    /// 401 with a bearer challenge naming `realm`.
    Challenge {
        /// The token service the challenge sends clients to.
        realm: String,
    },
}

/// A running storage server; stopped on drop.
pub struct BlobStorage {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

/// A request's target and header fields.
pub type Request = (String, Vec<(String, String)>);

#[derive(Default)]
struct State {
    /// Blob bytes by digest (`sha256:…`).
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Answers for the next requests, in order; then [`Answer::Serve`].
    next: Mutex<Vec<Answer>>,
    /// The target and header fields of every request, in arrival order.
    requests: Mutex<Vec<Request>>,
    shutdown: AtomicBool,
}

impl BlobStorage {
    /// Starts the server on a free port of `127.0.0.2`.
    pub fn start() -> Arc<BlobStorage> {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0))
            .expect("bind the blob storage's port on 127.0.0.2");
        let addr = listener.local_addr().expect("blob storage address");
        let state = Arc::new(State::default());
        let acceptor = {
            let state = state.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if state.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let state = state.clone();
                        thread::spawn(move || {
                            let _ = answer(stream, &state);
                        });
                    }
                }
            })
        };
        Arc::new(BlobStorage {
            addr,
            state,
            acceptor: Some(acceptor),
        })
    }

    /// Keeps `bytes` as the blob `digest` and returns its signed URL.
    pub fn offer(&self, digest: &str, bytes: Vec<u8>) -> String {
        self.state
            .blobs
            .lock()
            .unwrap()
            .insert(digest.to_string(), bytes);
        format!(
            "http://{}/bucket/{digest}?X-Amz-Expires=900&X-Amz-Signature={SIGNATURE}",
            self.addr
        )
    }

    /// Answers the next requests with `answers`, in order.
    pub fn then(&self, answers: Vec<Answer>) {
        *self.state.next.lock().unwrap() = answers;
    }

    /// The target and header fields of every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for BlobStorage {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one request and answers it, closing the connection.
fn answer(stream: TcpStream, state: &State) -> io::Result<()> {
    let Some(head) = read_head(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(());
    };
    let target = head.target;
    state
        .requests
        .lock()
        .unwrap()
        .push((target.clone(), head.headers));
    let next = {
        let mut next = state.next.lock().unwrap();
        match next.is_empty() {
            true => Answer::Serve,
            false => next.remove(0),
        }
    };
    let digest = target
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or_default();
    let blob = state.blobs.lock().unwrap().get(digest).cloned();
    let mut writer = stream;
    match (next, blob) {
        (Answer::Expired, _) => write(
            &mut writer,
            "403 Forbidden",
            &[("Content-Type", "application/xml")],
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
              <Message>Request has expired</Message><X-Amz-Expires>900</X-Amz-Expires>\
              <RequestId>4442587FB7D0A2F9</RequestId></Error>",
        ),
        (Answer::Challenge { realm }, _) => write(
            &mut writer,
            "401 Unauthorized",
            &[(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"storage\""),
            )],
            b"",
        ),
        (_, None) => write(&mut writer, "404 Not Found", &[], b"no such key"),
        (Answer::Corrupt, Some(mut bytes)) => {
            if let Some(first) = bytes.first_mut() {
                *first ^= 0xff;
            }
            write(&mut writer, "200 OK", &[], &bytes)
        }
        (Answer::Serve, Some(bytes)) => write(&mut writer, "200 OK", &[], &bytes),
    }
}

fn write(
    writer: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}
