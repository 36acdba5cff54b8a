//! HTTP/1.1 as the [`FaultProxy`](super::FaultProxy) speaks it: request
//! heads and bodies read from clients, requests forwarded upstream, and
//! responses written back, whole or cut short.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{State, UPSTREAM_TIMEOUT};

/// A request line and its header fields.
#[derive(Clone)]
pub(super) struct RequestHead {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(usize),
    Chunked,
}

impl RequestHead {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub(super) fn framing(&self) -> Framing {
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

    pub(super) fn wants_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The first value of header `name` (case-insensitive).
pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Reads the next request's line and headers; `None` at the end of the
/// connection or when the client does not speak plain HTTP.
pub(super) fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<RequestHead>> {
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
pub(super) fn read_body(
    reader: &mut BufReader<TcpStream>,
    framing: Framing,
) -> io::Result<Vec<u8>> {
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
pub(super) trait ReadLineBytes {
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
pub(super) fn read_prefix(
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
pub(super) struct Response {
    pub(super) status_line: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// Whether the client can tell where the body ends without the
    /// connection closing.
    pub(super) fn is_framed(&self, method: &str) -> bool {
        let status = self.status_line.split_whitespace().nth(1).unwrap_or("");
        method.eq_ignore_ascii_case("HEAD")
            || matches!(status, "204" | "304")
            || header(&self.headers, "Content-Length").is_some()
            || header(&self.headers, "Transfer-Encoding").is_some()
    }
}

/// Sends the request to the upstream on a fresh connection and reads the
/// whole response.
pub(super) fn forward(state: &State, request: &RequestHead, body: &[u8]) -> io::Result<Response> {
    let mut upstream = send_upstream(state, request, body)?;
    let mut raw = Vec::new();
    upstream.read_to_end(&mut raw)?;
    parse_response(raw)
}

/// Sends the request head and only `prefix` of its body to the upstream,
/// ends the connection there, and waits until the upstream is done with it.
pub(super) fn forward_cut(state: &State, request: &RequestHead, prefix: &[u8]) -> io::Result<()> {
    let mut upstream = send_upstream(state, request, prefix)?;
    upstream.shutdown(Shutdown::Write)?;
    let _ = io::copy(&mut upstream, &mut io::sink());
    Ok(())
}

/// Opens a connection to the upstream and sends the request with `body`
/// (`Host` naming the upstream, `Connection: close`).
pub(super) fn send_upstream(
    state: &State,
    request: &RequestHead,
    body: &[u8],
) -> io::Result<TcpStream> {
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
pub(super) fn is_hop_header(name: &str) -> bool {
    ["Connection", "Keep-Alive", "Proxy-Connection"]
        .iter()
        .any(|hop| hop.eq_ignore_ascii_case(name))
}

pub(super) fn parse_response(raw: Vec<u8>) -> io::Result<Response> {
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
pub(super) fn write_response(
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
pub(super) fn write_status(
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
pub(super) fn reset(stream: &TcpStream) {
    #[repr(C)]
    struct Linger {
        onoff: i32,
        seconds: i32,
    }
    const SO_LINGER: i32 = 13;
    set_socket_option(
        stream,
        SO_LINGER,
        &Linger {
            onoff: 1,
            seconds: 0,
        },
    );
}

/// Caps the receive buffer (`SO_RCVBUF`) of the connections `listener`
/// accepts at 64 KiB, so that a client sending faster than the proxy
/// reads soon has to wait, as it would on a slow link. Set on the
/// listener, the cap is part of each connection from its handshake, so
/// the window it advertises never has to shrink (which would drop
/// segments and leave the client backing off). Linux only.
pub(super) fn cap_receive_buffer(listener: &std::net::TcpListener) {
    const SO_RCVBUF: i32 = 8;
    set_socket_option(listener, SO_RCVBUF, &(64 * 1024_i32));
}

/// Sets a `SOL_SOCKET` option of `socket` to `value`, on Linux; does
/// nothing elsewhere.
fn set_socket_option<T>(socket: &impl std::os::fd::AsRawFd, name: i32, value: &T) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        // SAFETY: a valid socket descriptor and a value of the size passed,
        // which outlives the call.
        unsafe {
            setsockopt(
                socket.as_raw_fd(),
                SOL_SOCKET,
                name,
                (value as *const T).cast::<u8>(),
                std::mem::size_of::<T>() as u32,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, name, value);
}
