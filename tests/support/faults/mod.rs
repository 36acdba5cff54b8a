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

mod personas;
mod schedule;
pub mod storage;
mod wire;

use schedule::*;
pub use schedule::{Fault, Rule, Seeded};
use storage::BlobStorage;
use wire::*;

/// How long the proxy waits for the upstream registry's response.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Referrers the referrers-API persona listed, per repository and subject.
    referrers: Mutex<HashMap<(String, String), Vec<serde_json::Value>>>,
    /// The header fields of every request, in arrival order.
    heads: Mutex<Vec<Vec<(String, String)>>>,
    /// Method, target and body length (as framed) of every request read whole.
    bodies: Mutex<Vec<(String, String, usize)>>,
    /// Target, start and end of every request answered.
    spans: Mutex<Vec<(String, Instant, Instant)>>,
    /// Where [`Fault::RedirectToStorage`] sends blob downloads.
    storage: Mutex<Option<Arc<BlobStorage>>>,
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

    /// A proxy in front of `upstream` that leaves the body of the first
    /// streamed upload (its `PATCH`) unread for `millis` milliseconds.
    pub fn stalling_first_patch(upstream: &str, millis: u64) -> FaultProxy {
        FaultProxy::start(
            upstream,
            vec![Rule::new(
                "PATCH",
                "/blobs/uploads/",
                &[1],
                Fault::StallBeforeBody { millis },
            )],
        )
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
        if schedule
            .iter()
            .any(|rule| matches!(rule.fault, Fault::ReadBodySlowly { .. }))
        {
            wire::cap_receive_buffer(&listener);
        }
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            host: addr.to_string(),
            matched: Mutex::new(vec![0; schedule.len()]),
            rules: schedule,
            seeded,
            seen: Mutex::new(HashMap::new()),
            hits: Mutex::new(Vec::new()),
            referrers: Mutex::new(HashMap::new()),
            heads: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
            spans: Mutex::new(Vec::new()),
            storage: Mutex::new(None),
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

    /// The value of header `name` (case-insensitive) in every request so
    /// far, in arrival order (`None` where a request lacked it).
    pub fn header_values(&self, name: &str) -> Vec<Option<String>> {
        self.state
            .heads
            .lock()
            .unwrap()
            .iter()
            .map(|headers| header(headers, name).map(str::to_string))
            .collect()
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
        self.heads.lock().unwrap().push(request.headers.clone());
        self.hits.lock().unwrap().push((
            request.method.clone(),
            request.target.clone(),
            fault.as_ref().map(Fault::to_string),
        ));
        fault
    }

    /// The referrers listed for `subject` in `repo`.
    fn listed_referrers(&self, repo: &str, subject: &str) -> Vec<serde_json::Value> {
        let listed = self.referrers.lock().unwrap();
        listed
            .get(&(repo.to_string(), subject.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Lists `desc` as a referrer of `subject` in `repo`.
    fn list_referrer(&self, repo: &str, subject: &str, desc: serde_json::Value) {
        let mut listed = self.referrers.lock().unwrap();
        let entry = listed
            .entry((repo.to_string(), subject.to_string()))
            .or_default();
        if !entry.iter().any(|d| d["digest"] == desc["digest"]) {
            entry.push(desc);
        }
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
    let body = match fault {
        Some(Fault::ReadBodySlowly { bytes_per_sec }) => {
            read_body_slowly(reader, request, bytes_per_sec, state)?
        }
        _ => read_body(reader, request.framing())?,
    };
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
        Some(Fault::DeclineMount) => {
            let plain = RequestHead {
                target: request
                    .target
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                ..request.clone()
            };
            relay(writer, state, &plain, &body, keep_open)
        }
        Some(Fault::RefuseSubject) => {
            personas::refuse_subject(writer, state, request, &body, keep_open)
        }
        Some(Fault::TagIsDigest) => {
            let rewritten = personas::tag_is_digest(request);
            relay(writer, state, &rewritten, &body, keep_open)
        }
        Some(Fault::ReferrersApi) => {
            personas::referrers_api(writer, state, request, &body, keep_open)
        }
        Some(Fault::RedirectToStorage) => {
            personas::redirect_to_storage(writer, state, request, &body, keep_open)
        }
        Some(Fault::StallBeforeBody { .. } | Fault::ReadBodySlowly { .. }) | None => {
            relay(writer, state, request, &body, keep_open)
        }
    }
}

/// Reads a request body of known length at no more than `bytes_per_sec`,
/// in pieces of 16 KiB; any other body is read at once.
fn read_body_slowly(
    reader: &mut BufReader<TcpStream>,
    request: &RequestHead,
    bytes_per_sec: u64,
    state: &State,
) -> io::Result<Vec<u8>> {
    let Framing::Length(length) = request.framing() else {
        return read_body(reader, request.framing());
    };
    let started = Instant::now();
    let mut body = vec![0; length];
    let mut read = 0;
    while read < length {
        let piece = (length - read).min(16 * 1024);
        reader.read_exact(&mut body[read..read + piece])?;
        read += piece;
        let due = Duration::from_secs_f64(read as f64 / bytes_per_sec as f64);
        if let Some(early) = due.checked_sub(started.elapsed()) {
            state.sleep(early.as_millis() as u64);
        }
    }
    Ok(body)
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
    relay_response(writer, state, request, &response, keep_open)
}

/// Relays the upstream's `response` to `request`. Returns whether the
/// connection may carry another request.
fn relay_response(
    writer: &mut TcpStream,
    state: &State,
    request: &RequestHead,
    response: &Response,
    keep_open: bool,
) -> io::Result<bool> {
    let keep_open = keep_open && response.is_framed(&request.method);
    write_response(writer, state, response, keep_open, None)?;
    Ok(keep_open)
}
