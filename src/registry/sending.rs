//! Sending one request under `--timeout` and `--min-rate`, from the moment
//! it goes out until its response's headers arrive: the registry must keep
//! taking the request's body at the minimum rate, then answer within
//! `--timeout` of the body's end. A large layer going up a slow link is
//! therefore never cut off for taking longer than `--timeout` as a whole,
//! and a registry that stops reading, or never answers, still is.
//!
//! Time the body spends waiting for its own source (a layer still being
//! packed) is ocistep's, and does not count (see [`super::rate`]). Bytes
//! count as taken once the connection takes them from the body, so the
//! connection's buffers may still hold some when the body ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use reqwest::{RequestBuilder, Response};

use super::error_chain::error_chain;
use super::rate::{Direction, MinRate, TooSlow, Window};
use super::retry::is_transient_error;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The connection or the request failed.
    Http(reqwest::Error),
    /// The registry stopped taking the body, or did not answer, for
    /// longer than the rule allows.
    Stalled(TooSlow),
}

impl SendError {
    /// True when trying again may help: a stall, or a fault of the
    /// connection rather than of the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Http(e) => is_transient_error(e),
            SendError::Stalled(_) => true,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Http(e) => f.write_str(&error_chain(e)),
            SendError::Stalled(slow) => slow.fmt(f),
        }
    }
}

/// Sends `request` and waits for its response's headers, watched by
/// `rule`; the response's body is the caller's to watch
/// ([`MinRate::guard`]).
pub async fn send(request: RequestBuilder, rule: MinRate) -> Result<Response, SendError> {
    let (client, request) = request.build_split();
    let mut request = request.map_err(failed)?;
    if rule.window.is_zero() {
        return client.execute(request).await.map_err(failed);
    }
    let progress = Arc::new(Mutex::new(Progress {
        window: Window::new(rule, Direction::Sending),
        waiting_since: Some(Instant::now()),
    }));
    let declared = declared_length(&request);
    if let Some(body) = request.body_mut().take() {
        // A body in memory goes out at once; the wait for the answer is
        // all there is to watch.
        let body = match body.as_bytes() {
            Some(_) => body,
            None => reqwest::Body::wrap(WatchedBody {
                left: declared.or_else(|| body.size_hint().exact()),
                inner: body,
                progress: progress.clone(),
            }),
        };
        *request.body_mut() = Some(body);
    }
    let response = client.execute(request);
    let mut response = std::pin::pin!(response);
    loop {
        let left = {
            let mut progress = lock(&progress);
            progress.settle(Instant::now());
            progress.window.judge().map_err(SendError::Stalled)?;
            progress.window.left()
        };
        tokio::select! {
            sent = &mut response => return sent.map_err(failed),
            () = tokio::time::sleep(left) => {}
        }
    }
}

/// A failed request's error, naming its URL without the query: that can
/// hold an upload session's state or a redirect's signature, which are no
/// help to a reader and may be a capability.
pub(super) fn failed(mut e: reqwest::Error) -> SendError {
    if let Some(url) = e.url_mut() {
        url.set_query(None);
    }
    SendError::Http(e)
}

/// The body length `request` declares in its `Content-Length` header.
fn declared_length(request: &reqwest::Request) -> Option<u64> {
    request
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// How far a request has got: its window, and whether it is waiting for
/// the registry.
struct Progress {
    window: Window,
    /// Since when the request has waited for the registry (to take the
    /// next bytes, or to answer); `None` while the body waits for its
    /// own source.
    waiting_since: Option<Instant>,
}

impl Progress {
    /// Counts the waiting up to `now` into the window.
    fn settle(&mut self, now: Instant) {
        if let Some(since) = self.waiting_since {
            self.window.waited(now.saturating_duration_since(since));
            self.waiting_since = Some(now);
        }
    }

    /// The body has gone to the connection: the answer gets a window of
    /// its own from now.
    fn body_ended(&mut self) {
        self.window.restart();
        self.waiting_since = Some(Instant::now());
    }
}

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request body that reports to [`Progress`] as the connection takes it.
struct WatchedBody {
    inner: reqwest::Body,
    progress: Arc<Mutex<Progress>>,
    /// The bytes still to come, when the length is known. The connection
    /// stops asking for a body of known length at its last byte, so that
    /// byte, not the stream's end, is the body's end.
    left: Option<u64>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        // Asked for more: the registry took what it had.
        lock(&self.progress).settle(Instant::now());
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let this = &mut *self;
        let mut progress = lock(&this.progress);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let taken = frame.data_ref().map_or(0, |data| data.len() as u64);
                progress.window.moved(taken);
                progress.waiting_since = Some(Instant::now());
                if let Some(left) = &mut this.left {
                    *left = left.saturating_sub(taken);
                    if *left == 0 {
                        progress.body_ended();
                    }
                }
            }
            Poll::Ready(None) => progress.body_ended(),
            Poll::Ready(Some(Err(_))) => {}
            Poll::Pending => progress.waiting_since = None,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_failed_request_names_its_url_without_the_query() {
        crate::registry::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/v2/app/blobs/uploads/1");
        let request = reqwest::Client::new().put(format!(
            "{url}?_state=SESSIONSTATE&X-Amz-Signature=SIGNATUREVALUE"
        ));
        let rule = MinRate {
            bytes_per_sec: 0,
            window: Duration::from_secs(5),
        };

        let error = send(request, rule).await.unwrap_err();

        let text = error.to_string();
        assert!(error.is_transient(), "{text}");
        assert!(text.contains(&url), "{text}");
        assert!(
            !text.contains("SESSIONSTATE") && !text.contains("SIGNATUREVALUE"),
            "{text}"
        );
    }
}
