//! The minimum transfer rate (`--min-rate`): a transfer that moves slower
//! than that over a window of `--timeout` seconds counts as stalled, and
//! so does one that moves nothing for `--timeout`, so a server that
//! trickles a byte now and then cannot hold a request open for ever. It
//! applies both ways: to a response body as it arrives, and to a request
//! (its body as the registry takes it, then the wait for the response's
//! headers; see [`super::sending`]).
//!
//! Only time spent waiting for the server counts: while ocistep itself is
//! busy with the bytes (writing files, hashing, packing what it uploads)
//! the window does not move, so a slow disk never looks like a slow
//! registry.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{Response, ResponseBuilderExt};

use crate::error::{Error, Result};

/// The rule: at least `bytes_per_sec × window` bytes in every `window` of
/// waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// The slowest rate accepted; 0 turns the rule off.
    pub bytes_per_sec: u64,
    /// How long the rate is averaged over (`--timeout`).
    pub window: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl MinRate {
    /// The fewest bytes a window must move: at least one, so that a
    /// window of silence is a stall even with no minimum rate.
    fn floor(&self) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * self.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX).max(1)
    }

    /// `resp` with its body watched: a window of waiting that brings fewer
    /// bytes than the rule asks ends the body with a [`TooSlow`] error,
    /// which reading the body reports like a connection that broke off.
    pub fn guard(self, resp: Response) -> Result<Response> {
        if self.window.is_zero() {
            return Ok(resp);
        }
        let mut builder = http::Response::builder()
            .status(resp.status())
            .version(resp.version())
            .url(resp.url().clone());
        if let Some(headers) = builder.headers_mut() {
            *headers = resp.headers().clone();
        }
        let watch = Watch {
            inner: Box::pin(resp.bytes_stream()),
            window: Window::new(self, Direction::Receiving),
            done: false,
        };
        let body = futures_util::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|item| (item, watch))
        });
        builder
            .body(reqwest::Body::wrap_stream(body))
            .map(Response::from)
            .map_err(|e| Error::Internal(format!("cannot watch a response's rate: {e}")))
    }
}

/// Which way the bytes a window counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A response body, arriving.
    Receiving,
    /// A request body, taken by the registry.
    Sending,
}

/// One window of waiting for the server: how long it has waited and the
/// bytes that moved meanwhile.
#[derive(Debug)]
pub struct Window {
    rule: MinRate,
    direction: Direction,
    /// Time spent waiting for the server in this window.
    waited: Duration,
    /// Bytes moved in this window.
    moved: u64,
}

impl Window {
    /// An empty window under `rule`.
    pub fn new(rule: MinRate, direction: Direction) -> Self {
        Window {
            rule,
            direction,
            waited: Duration::ZERO,
            moved: 0,
        }
    }

    /// Counts time spent waiting for the server.
    pub fn waited(&mut self, time: Duration) {
        self.waited += time;
    }

    /// Counts bytes that moved.
    pub fn moved(&mut self, bytes: u64) {
        self.moved += bytes;
    }

    /// The waiting left before this window ends.
    pub fn left(&self) -> Duration {
        self.rule.window.saturating_sub(self.waited)
    }

    /// Starts a new window now, whatever the current one brought.
    pub fn restart(&mut self) {
        self.waited = Duration::ZERO;
        self.moved = 0;
    }

    /// At the end of a window: too few bytes is an error, enough starts
    /// the next window.
    pub fn judge(&mut self) -> std::result::Result<(), TooSlow> {
        if self.waited < self.rule.window {
            return Ok(());
        }
        if self.moved < self.rule.floor() {
            return Err(TooSlow {
                moved: self.moved,
                rule: self.rule,
                direction: self.direction,
            });
        }
        self.restart();
        Ok(())
    }
}

/// A body stream and its current window.
struct Watch {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    window: Window,
    /// An error ended the body.
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<std::result::Result<Bytes, BoxError>> {
        if self.done {
            return None;
        }
        loop {
            let started = Instant::now();
            let item = tokio::time::timeout(self.window.left(), self.inner.next()).await;
            self.window.waited(started.elapsed());
            let chunk = match item {
                Ok(Some(Ok(chunk))) => Some(chunk),
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                Ok(None) => return None,
                Err(_) => None,
            };
            self.window
                .moved(chunk.as_ref().map_or(0, |c| c.len() as u64));
            if let Err(slow) = self.window.judge() {
                self.done = true;
                return Some(Err(slow.into()));
            }
            if chunk.is_some() {
                return chunk.map(Ok);
            }
        }
    }
}

/// A transfer that moved slower than the rule allows, or not at all.
#[derive(Debug)]
pub struct TooSlow {
    moved: u64,
    rule: MinRate,
    direction: Direction,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.rule.window.as_secs_f64();
        let (verb, silent) = match self.direction {
            Direction::Receiving => ("arrived", "sent nothing"),
            Direction::Sending => ("went out", "neither took more of the request nor answered"),
        };
        if self.moved == 0 {
            return write!(
                f,
                "stalled: the registry {silent} for {seconds} s (--timeout)"
            );
        }
        write!(
            f,
            "stalled: only {} bytes {verb} in {seconds} s, below the minimum rate of {} bytes/s \
             (--min-rate, averaged over --timeout)",
            self.moved, self.rule.bytes_per_sec
        )
    }
}

impl std::error::Error for TooSlow {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_rate_over_the_window() {
        let rule = MinRate {
            bytes_per_sec: 1024,
            window: Duration::from_millis(1500),
        };
        assert_eq!(rule.floor(), 1536);
        let message = TooSlow {
            moved: 12,
            rule,
            direction: Direction::Receiving,
        }
        .to_string();
        assert!(
            message.contains("only 12 bytes arrived in 1.5 s"),
            "{message}"
        );
        assert!(message.contains("--min-rate"), "{message}");
    }

    #[test]
    fn a_silent_window_is_a_stall_even_without_a_minimum_rate() {
        let rule = MinRate {
            bytes_per_sec: 0,
            window: Duration::from_secs(2),
        };
        let mut window = Window::new(rule, Direction::Sending);
        window.waited(Duration::from_secs(1));
        assert!(window.judge().is_ok(), "half a window is not a stall yet");
        assert_eq!(window.left(), Duration::from_secs(1));
        window.waited(Duration::from_secs(1));
        let message = window.judge().unwrap_err().to_string();
        assert!(
            message.contains("neither took more of the request nor answered for 2 s"),
            "{message}"
        );

        let mut window = Window::new(rule, Direction::Receiving);
        window.moved(1);
        window.waited(Duration::from_secs(2));
        assert!(window.judge().is_ok(), "one byte keeps a window alive");
        assert_eq!(window.left(), Duration::from_secs(2), "and starts the next");
    }
}
