//! Bounded retries with exponential backoff and jitter for transient
//! registry faults: 429 (honouring `Retry-After`), 5xx and broken connections.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;

use crate::error::Error;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound for one delay, including `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), with full jitter
    /// between half and all of the exponential step, or `retry_after` when
    /// the server named one; both are capped at `max_delay`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let step = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// True when another attempt may follow attempt number `attempt`.
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay before starting a transfer over after attempt number
    /// `attempt` failed with `err`: only a transfer cut short
    /// ([`Error::Interrupted`]) is started over, and only while attempts
    /// remain. Requests that already used up their retries are not repeated.
    pub fn restart_delay(&self, attempt: u32, err: &Error) -> Option<Duration> {
        match err {
            Error::Interrupted(msg) if self.may_retry(attempt) => {
                let delay = self.delay(attempt, None);
                tracing::warn!("{msg} (attempt {attempt}); starting over in {delay:?}");
                Some(delay)
            }
            _ => None,
        }
    }

    /// Runs `once` until it succeeds, starting over after a transfer cut
    /// short while attempts remain (see [`RetryPolicy::restart_delay`]).
    /// `once` is given the attempt's number, from 1.
    pub async fn restarting<T, F, Fut>(&self, mut once: F) -> crate::error::Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match once(attempt).await {
                Err(e) => match self.restart_delay(attempt, &e) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                ok => return ok,
            }
        }
    }
}

/// Statuses worth another try.
pub fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Transport errors worth another try (connect failures, resets, timeouts,
/// bodies cut short). Builder errors and redirect loops are not.
pub fn is_transient_error(e: &reqwest::Error) -> bool {
    !(e.is_builder() || e.is_redirect() || e.is_status() || e.is_decode())
}

/// The delay a response's `Retry-After` header asks for, if it has a
/// readable one.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Parses `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = p.delay(1, None);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d4 = p.delay(4, None);
        assert!(d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800));
        assert!(p.delay(30, None) <= Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn transient_statuses() {
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_transient_status(StatusCode::BAD_GATEWAY));
        assert!(!is_transient_status(StatusCode::NOT_FOUND));
        assert!(!is_transient_status(StatusCode::UNAUTHORIZED));
    }
}
