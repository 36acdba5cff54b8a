//! The minimum transfer rate (`--min-rate`): a response body that arrives
//! slower than that over a window of `--timeout` seconds counts as stalled,
//! as one silent for `--timeout` does, so a server that trickles a byte
//! now and then cannot hold a request open for ever.
//!
//! Only time spent waiting for the server counts: while ocistep itself is
//! busy with the bytes (writing files, hashing) the window does not move,
//! so a slow disk never looks like a slow registry.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Response;

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
    /// The fewest bytes a window must bring.
    fn floor(&self) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * self.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// `resp` with its body watched: a window of waiting that brings fewer
    /// bytes than the rule asks ends the body with a [`TooSlow`] error,
    /// which reading the body reports like a connection that broke off.
    pub fn guard(self, resp: Response) -> Result<Response> {
        if self.bytes_per_sec == 0 || self.window.is_zero() {
            return Ok(resp);
        }
        let mut builder = http::Response::builder()
            .status(resp.status())
            .version(resp.version());
        if let Some(headers) = builder.headers_mut() {
            *headers = resp.headers().clone();
        }
        let watch = Watch {
            rule: self,
            inner: Box::pin(resp.bytes_stream()),
            waited: Duration::ZERO,
            got: 0,
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

/// A body stream and what its current window brought so far.
struct Watch {
    rule: MinRate,
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Time spent waiting for the server in this window.
    waited: Duration,
    /// Bytes received in this window.
    got: u64,
    /// An error ended the body.
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<std::result::Result<Bytes, BoxError>> {
        if self.done {
            return None;
        }
        loop {
            let left = self.rule.window.saturating_sub(self.waited);
            let started = Instant::now();
            let item = tokio::time::timeout(left, self.inner.next()).await;
            self.waited += started.elapsed();
            let chunk = match item {
                Ok(Some(Ok(chunk))) => Some(chunk),
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                Ok(None) => return None,
                Err(_) => None,
            };
            self.got += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if let Err(slow) = self.judge() {
                self.done = true;
                return Some(Err(slow.into()));
            }
            if chunk.is_some() {
                return chunk.map(Ok);
            }
        }
    }

    /// At the end of a window: too few bytes is an error, enough starts
    /// the next window.
    fn judge(&mut self) -> std::result::Result<(), TooSlow> {
        if self.waited < self.rule.window {
            return Ok(());
        }
        if self.got < self.rule.floor() {
            return Err(TooSlow {
                got: self.got,
                rule: self.rule,
            });
        }
        self.waited = Duration::ZERO;
        self.got = 0;
        Ok(())
    }
}

/// A body that arrived slower than the rule allows.
#[derive(Debug)]
pub struct TooSlow {
    got: u64,
    rule: MinRate,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stalled: only {} bytes arrived in {} s, below the minimum rate of {} bytes/s \
             (--min-rate, averaged over --timeout)",
            self.got,
            self.rule.window.as_secs_f64(),
            self.rule.bytes_per_sec
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
        let message = TooSlow { got: 12, rule }.to_string();
        assert!(
            message.contains("only 12 bytes arrived in 1.5 s"),
            "{message}"
        );
        assert!(message.contains("--min-rate"), "{message}");
    }
}
