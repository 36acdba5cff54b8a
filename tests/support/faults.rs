//! A fault-injecting HTTP/1.1 proxy to put between ocistep and a
//! [`Registry`](super::Registry).
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every request
//! to the upstream registry, each on a fresh upstream connection with
//! `Connection: close`. The `Host` header names the upstream, and `Location`
//! headers pointing at the upstream are rewritten to the proxy, so upload
//! sessions (absolute `Location` URLs) keep going through it.
//!
//! A schedule of [`Rule`]s says which requests get a [`Fault`] instead of,
//! or on top of, a faithful relay. It is deterministic: each rule counts
//! the requests it matches, and fires on exactly the counts listed in
//! [`Rule::nth`]. Every request is logged (see [`FaultProxy::hits`]), so
//! tests can assert how many attempts a client made.
//!
//! A [`Seeded`] schedule fails a share of all requests instead, each with a
//! fault drawn from a menu. The draw hashes the seed, the request's method
//! and path (upload session ids left out) and how often that method and
//! path came before, so it does not depend on how parallel requests
//! interleave; no method and path fails more than a few times in a row,
//! so a client that retries enough always gets through.
//!
//! Client connections stay open between requests when both sides allow it.
//! Bytes that are not HTTP (such as a TLS handshake probing for HTTPS) get
//! the connection closed and are not logged.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the proxy waits for the upstream registry's response.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How many matching requests [`Rule::every`] covers.
const EVERY: usize = 10_000;

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
    /// Relay the response headers at once, then its body one byte every
    /// `millis_per_byte` ms: a server that never goes silent long enough
    /// for a read timeout, yet never finishes.
    Trickle {
        /// The pause before each body byte, in milliseconds.
        millis_per_byte: u64,
    },
    /// Answer with this status and a JSON error body whose message quotes
    /// the request's `Authorization` header, as some servers echo what
    /// they refused; the request is not forwarded.
    EchoAuthorization {
        /// The status code, e.g. 401.
        code: u16,
    },
}

impl fmt::Display for Fault {
    /// A short label, as logged in [`FaultProxy::hits`]: `status 503`,
    /// `reset before response`, `reset mid-body`, `truncated body`,
    /// `stall mid-body`, `stall`, `stall before body`, `trickle`,
    /// `echo authorization 401`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status { code, .. } => write!(f, "status {code}"),
            Fault::ResetBeforeResponse => f.write_str("reset before response"),
            Fault::ResetMidBody { .. } => f.write_str("reset mid-body"),
            Fault::TruncateBody { .. } => f.write_str("truncated body"),
            Fault::StallMidBody { .. } => f.write_str("stall mid-body"),
            Fault::Stall { .. } => f.write_str("stall"),
            Fault::StallBeforeBody { .. } => f.write_str("stall before body"),
            Fault::Trickle { .. } => f.write_str("trickle"),
            Fault::EchoAuthorization { code } => write!(f, "echo authorization {code}"),
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

    fn matches(&self, request: &RequestHead) -> bool {
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
    fn draw(&self, key: &str, count: u64) -> Option<Fault> {
        let mut h = fnv1a(self.seed.to_le_bytes().iter().chain(key.as_bytes()));
        h = splitmix(h ^ count);
        if h % 100 >= self.percent || self.menu.is_empty() {
            return None;
        }
        let pick = (splitmix(h) % self.menu.len() as u64) as usize;
        Some(self.menu[pick].clone())
    }
}

fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The method and path of a request with upload session ids and the query
/// left out: what [`Seeded`] counts requests by.
fn seeded_key(request: &RequestHead) -> String {
    let path = request.target.split('?').next().unwrap_or_default();
    let path = match path.find("/blobs/uploads/") {
        Some(at) => &path[..at + "/blobs/uploads/".len()],
        None => path,
    };
    format!("{} {path}", request.method.to_ascii_uppercase())
}

/// A running fault-injecting proxy; stopped (threads joined) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
struct State {
    upstream: String,
    host: String,
    rules: Vec<Rule>,
    /// Requests matched so far, per rule.
    matched: Mutex<Vec<usize>>,
    seeded: Option<Seeded>,
    /// Per [`seeded_key`]: requests so far, and faults in a row.
    seen: Mutex<HashMap<String, (u64, u32)>>,
    hits: Mutex<Vec<(String, String, Option<String>)>>,
    /// Method, target and body length (as framed) of every request read whole.
    bodies: Mutex<Vec<(String, String, usize)>>,
    /// Target, start and end of every request answered.
    spans: Mutex<Vec<(String, Instant, Instant)>>,
    shutdown: AtomicBool,
    /// A handle on each open client connection, to end them on drop.
    clients: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`
    /// (`127.0.0.1:PORT`), injecting the faults of `schedule`.
    pub fn start(upstream: &str, schedule: Vec<Rule>) -> FaultProxy {
        FaultProxy::launch(upstream, schedule, None)
    }

    /// Starts a proxy in front of `upstream` that fails requests as the
    /// [`Seeded`] schedule draws them.
    pub fn seeded(upstream: &str, schedule: Seeded) -> FaultProxy {
        FaultProxy::launch(upstream, Vec::new(), Some(schedule))
    }

    fn launch(upstream: &str, schedule: Vec<Rule>, seeded: Option<Seeded>) -> FaultProxy {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the fault proxy's port");
        let addr = listener.local_addr().expect("fault proxy address");
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            host: addr.to_string(),
            matched: Mutex::new(vec![0; schedule.len()]),
            rules: schedule,
            seeded,
            seen: Mutex::new(HashMap::new()),
            hits: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
            spans: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let state = state.clone();
            thread::spawn(move || accept_loop(listener, state))
        };
        FaultProxy {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.state.host.clone()
    }

    /// Every HTTP request so far, in arrival order: method, target (path
    /// and query) and the label of the fault injected, if any (see
    /// [`Fault`]'s `Display`).
    pub fn hits(&self) -> Vec<(String, String, Option<String>)> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Method, target and body length of every request whose body was read
    /// whole, in the order they were: the length is exact under a
    /// `Content-Length`, and includes the framing of a chunked body.
    pub fn bodies(&self) -> Vec<(String, String, usize)> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Number of requests so far with method `method` (case-insensitive)
    /// whose target contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.hits()
            .iter()
            .filter(|(m, target, _)| {
                m.eq_ignore_ascii_case(method) && target.contains(path_contains)
            })
            .count()
    }

    /// A proxy that holds every blob download back 300 ms, so downloads
    /// made in parallel overlap and [`FaultProxy::blobs_at_once`] sees them.
    pub fn slow_blobs(upstream: &str) -> FaultProxy {
        FaultProxy::start(
            upstream,
            vec![Rule::every("/blobs/sha256:", Fault::Stall { millis: 300 })],
        )
    }

    /// The most blob downloads answered at the same time, after checking
    /// that there were `expected` of them.
    pub fn blobs_at_once(&self, expected: usize) -> usize {
        assert_eq!(
            self.count("GET", "/blobs/sha256:"),
            expected,
            "{:#?}",
            self.hits()
        );
        self.max_in_flight("/blobs/sha256:")
    }

    /// The most requests whose target contains `path_contains` that were
    /// being answered at the same time.
    pub fn max_in_flight(&self, path_contains: &str) -> usize {
        let spans = self.state.spans.lock().unwrap();
        let mut edges: Vec<(Instant, i32)> = spans
            .iter()
            .filter(|(target, _, _)| target.contains(path_contains))
            .flat_map(|(_, start, end)| [(*start, 1), (*end, -1)])
            .collect();
        // Ends sort before starts at the same instant.
        edges.sort();
        let (mut now, mut most) = (0i32, 0i32);
        for (_, step) in edges {
            now += step;
            most = most.max(now);
        }
        most as usize
    }

    /// How many requests got a fault, and how many there were in all.
    pub fn faulted(&self) -> (usize, usize) {
        let hits = self.hits();
        (
            hits.iter().filter(|(_, _, fault)| fault.is_some()).count(),
            hits.len(),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for client in self.state.clients.lock().unwrap().values() {
            let _ = client.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *self.state.workers.lock().unwrap());
        for worker in workers {
            let _ = worker.join();
        }
    }
}

impl State {
    /// Logs a request and returns the fault scheduled for it: the first
    /// rule (in schedule order) whose count of matches is listed in its
    /// `nth`. Every matching rule counts the request.
    fn record(&self, request: &RequestHead) -> Option<Fault> {
        let mut matched = self.matched.lock().unwrap();
        let mut fault = None;
        for (rule, count) in self.rules.iter().zip(matched.iter_mut()) {
            if rule.matches(request) {
                *count += 1;
                if fault.is_none() && rule.nth.contains(count) {
                    fault = Some(rule.fault.clone());
                }
            }
        }
        drop(matched);
        if let (None, Some(seeded)) = (&fault, &self.seeded) {
            let mut seen = self.seen.lock().unwrap();
            let key = seeded_key(request);
            let (count, in_a_row) = seen.entry(key.clone()).or_default();
            let drawn = seeded.draw(&key, *count);
            *count += 1;
            fault = drawn.filter(|_| *in_a_row < seeded.max_in_a_row);
            *in_a_row = if fault.is_some() { *in_a_row + 1 } else { 0 };
        }
        self.hits.lock().unwrap().push((
            request.method.clone(),
            request.target.clone(),
            fault.as_ref().map(Fault::to_string),
        ));
        fault
    }

    /// Sleeps for `millis`, waking early when the proxy stops.
    fn sleep(&self, millis: u64) {
        let deadline = Instant::now() + Duration::from_millis(millis);
        while Instant::now() < deadline && !self.shutdown.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Accepts client connections, each served on its own thread, until the
/// shutdown flag is set.
fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for (id, stream) in (0u64..).zip(listener.incoming()) {
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        state.clients.lock().unwrap().insert(id, handle);
        let worker = {
            let state = state.clone();
            thread::spawn(move || {
                let _ = serve(stream, &state);
                // The last handle goes here, which closes the connection.
                state.clients.lock().unwrap().remove(&id);
            })
        };
        state.workers.lock().unwrap().push(worker);
    }
}

/// Serves the requests of one client connection, one after the other.
fn serve(stream: TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_head(&mut reader)? {
        let fault = state.record(&request);
        let start = Instant::now();
        let keep_open = handle(&mut reader, &mut writer, &request, fault, state);
        state
            .spans
            .lock()
            .unwrap()
            .push((request.target.clone(), start, Instant::now()));
        if !keep_open? {
            break;
        }
    }
    Ok(())
}

/// Answers one request, injecting `fault`. Returns whether the connection
/// may carry another request.
fn handle(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request: &RequestHead,
    fault: Option<Fault>,
    state: &State,
) -> io::Result<bool> {
    if let Some(Fault::ResetMidBody { after_bytes }) = fault {
        if request.framing() != Framing::None {
            let prefix = read_prefix(reader, request, after_bytes)?;
            forward_cut(state, request, &prefix)?;
            reset(writer);
            return Ok(false);
        }
    }
    if let Some(Fault::StallBeforeBody { millis }) = fault {
        state.sleep(millis);
    }
    let body = read_body(reader, request.framing())?;
    state
        .bodies
        .lock()
        .unwrap()
        .push((request.method.clone(), request.target.clone(), body.len()));
    let keep_open = !request.wants_close();
    match fault {
        Some(Fault::Status { code, retry_after }) => {
            let message = format!("status {code} injected by the fault proxy");
            write_status(writer, code, retry_after, &message, keep_open)?;
            Ok(keep_open)
        }
        Some(Fault::EchoAuthorization { code }) => {
            let message = format!(
                "refused the request with Authorization: {}",
                request.header("Authorization").unwrap_or("(none)")
            );
            write_status(writer, code, None, &message, keep_open)?;
            Ok(keep_open)
        }
        Some(Fault::Trickle { millis_per_byte }) => {
            let response = forward(state, request, &body)?;
            write_response(writer, state, &response, false, Some(0))?;
            for byte in &response.body {
                state.sleep(millis_per_byte);
                if state.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                writer.write_all(std::slice::from_ref(byte))?;
                writer.flush()?;
            }
            Ok(false)
        }
        Some(Fault::ResetBeforeResponse) => {
            reset(writer);
            Ok(false)
        }
        Some(Fault::ResetMidBody { after_bytes }) => {
            let response = forward(state, request, &body)?;
            write_response(writer, state, &response, false, Some(after_bytes))?;
            reset(writer);
            Ok(false)
        }
        Some(Fault::TruncateBody { after_bytes }) => {
            let response = forward(state, request, &body)?;
            write_response(writer, state, &response, false, Some(after_bytes))?;
            writer.shutdown(Shutdown::Write)?;
            Ok(false)
        }
        Some(Fault::StallMidBody {
            after_bytes,
            millis,
        }) => {
            let response = forward(state, request, &body)?;
            write_response(writer, state, &response, false, Some(after_bytes))?;
            state.sleep(millis);
            writer.write_all(&response.body[after_bytes.min(response.body.len())..])?;
            writer.flush()?;
            Ok(false)
        }
        Some(Fault::Stall { millis }) => {
            state.sleep(millis);
            relay(writer, state, request, &body, keep_open)
        }
        Some(Fault::StallBeforeBody { .. }) | None => {
            relay(writer, state, request, &body, keep_open)
        }
    }
}

/// Forwards a request and relays the whole response. Returns whether the
/// connection may carry another request.
fn relay(
    writer: &mut TcpStream,
    state: &State,
    request: &RequestHead,
    body: &[u8],
    keep_open: bool,
) -> io::Result<bool> {
    let response = forward(state, request, body)?;
    let keep_open = keep_open && response.is_framed(&request.method);
    write_response(writer, state, &response, keep_open, None)?;
    Ok(keep_open)
}

/// A request line and its header fields.
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn framing(&self) -> Framing {
        if self
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("Content-Length").and_then(|v| v.parse().ok()) {
            Some(0) | None => Framing::None,
            Some(length) => Framing::Length(length),
        }
    }

    fn wants_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The first value of header `name` (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Reads the next request's line and headers; `None` at the end of the
/// connection or when the client does not speak plain HTTP.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<RequestHead>> {
    let starts_like_http = reader
        .fill_buf()?
        .first()
        .is_some_and(u8::is_ascii_uppercase);
    if !starts_like_http {
        return Ok(None);
    }
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Some(RequestHead {
        method,
        target,
        headers,
    }))
}

/// Reads a whole request body, raw (chunked framing kept as it came).
fn read_body(reader: &mut BufReader<TcpStream>, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::None => {}
        Framing::Length(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::Chunked => loop {
            let start = body.len();
            reader.read_line_bytes(&mut body)?;
            let size_line = String::from_utf8_lossy(&body[start..]).into_owned();
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if size == 0 {
                // Trailer fields, up to the empty line.
                while reader.read_line_bytes(&mut body)? > 2 {}
                return Ok(body);
            }
            let chunk_start = body.len();
            body.resize(chunk_start + size + 2, 0);
            reader.read_exact(&mut body[chunk_start..])?;
        },
    }
    Ok(body)
}

/// `read_until(b'\n')` that fails at the end of the stream.
trait ReadLineBytes {
    fn read_line_bytes(&mut self, out: &mut Vec<u8>) -> io::Result<usize>;
}

impl<R: BufRead> ReadLineBytes for R {
    fn read_line_bytes(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        match self.read_until(b'\n', out)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => Ok(n),
        }
    }
}

/// Reads up to `limit` bytes of a request body and leaves the rest unread.
fn read_prefix(
    reader: &mut BufReader<TcpStream>,
    request: &RequestHead,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let limit = match request.framing() {
        Framing::Length(length) => limit.min(length),
        _ => limit,
    };
    let mut prefix = Vec::new();
    reader.take(limit as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// An upstream response: status line, header fields and raw body.
struct Response {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Whether the client can tell where the body ends without the
    /// connection closing.
    fn is_framed(&self, method: &str) -> bool {
        let status = self.status_line.split_whitespace().nth(1).unwrap_or("");
        method.eq_ignore_ascii_case("HEAD")
            || matches!(status, "204" | "304")
            || header(&self.headers, "Content-Length").is_some()
            || header(&self.headers, "Transfer-Encoding").is_some()
    }
}

/// Sends the request to the upstream on a fresh connection and reads the
/// whole response.
fn forward(state: &State, request: &RequestHead, body: &[u8]) -> io::Result<Response> {
    let mut upstream = send_upstream(state, request, body)?;
    let mut raw = Vec::new();
    upstream.read_to_end(&mut raw)?;
    parse_response(raw)
}

/// Sends the request head and only `prefix` of its body to the upstream,
/// ends the connection there, and waits until the upstream is done with it.
fn forward_cut(state: &State, request: &RequestHead, prefix: &[u8]) -> io::Result<()> {
    let mut upstream = send_upstream(state, request, prefix)?;
    upstream.shutdown(Shutdown::Write)?;
    let _ = io::copy(&mut upstream, &mut io::sink());
    Ok(())
}

/// Opens a connection to the upstream and sends the request with `body`
/// (`Host` naming the upstream, `Connection: close`).
fn send_upstream(state: &State, request: &RequestHead, body: &[u8]) -> io::Result<TcpStream> {
    let mut upstream = TcpStream::connect(&state.upstream)?;
    upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        if !is_hop_header(name) && !name.eq_ignore_ascii_case("Host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "Host: {}\r\nConnection: close\r\n\r\n",
        state.upstream
    ));
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(body)?;
    Ok(upstream)
}

/// Header fields that concern one connection, not the message.
fn is_hop_header(name: &str) -> bool {
    ["Connection", "Keep-Alive", "Proxy-Connection"]
        .iter()
        .any(|hop| hop.eq_ignore_ascii_case(name))
}

fn parse_response(raw: Vec<u8>) -> io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "incomplete upstream response")
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Response {
        status_line,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Relays a response with `Location`s pointing at the upstream rewritten
/// to the proxy, and only the first `body_limit` body bytes when given.
fn write_response(
    writer: &mut TcpStream,
    state: &State,
    response: &Response,
    keep_open: bool,
    body_limit: Option<usize>,
) -> io::Result<()> {
    let mut head = format!("{}\r\n", response.status_line);
    for (name, value) in &response.headers {
        if is_hop_header(name) {
            continue;
        }
        let value = if name.eq_ignore_ascii_case("Location") {
            value.replacen(
                &format!("//{}/", state.upstream),
                &format!("//{}/", state.host),
                1,
            )
        } else {
            value.clone()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_open {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let body = &response.body
        [..body_limit.map_or(response.body.len(), |limit| limit.min(response.body.len()))];
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

/// Answers with `code`, a registry-style JSON error body saying `message`
/// and, when given, `Retry-After`.
fn write_status(
    writer: &mut TcpStream,
    code: u16,
    retry_after: Option<u64>,
    message: &str,
    keep_open: bool,
) -> io::Result<()> {
    let body = serde_json::json!({
        "errors": [{ "code": "INJECTED", "message": message }]
    })
    .to_string();
    let mut head = format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(seconds) = retry_after {
        head.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    if !keep_open {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

/// Makes the connection's final close send a TCP reset (RST) instead of
/// an orderly FIN: `SO_LINGER` with a zero timeout. Elsewhere than on
/// Linux the close is orderly, unless request bytes are left unread.
fn reset(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;

        #[repr(C)]
        struct Linger {
            onoff: i32,
            seconds: i32,
        }
        extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let linger = Linger {
            onoff: 1,
            seconds: 0,
        };
        // SAFETY: a valid socket descriptor and a `struct linger` of the
        // size passed, which outlives the call.
        unsafe {
            setsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                &linger,
                std::mem::size_of::<Linger>() as u32,
            );
        }
    }
}
