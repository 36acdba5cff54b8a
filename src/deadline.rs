//! `--deadline`: the longest a whole run may take, whatever it is waiting
//! for. `--timeout` and `--min-rate` end a request that stalls; a deadline
//! also ends a run whose every request crawls just fast enough, or whose
//! retries add up, so a pipeline step never outlives its budget.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long work still running on blocking threads (extraction, packing)
/// is given to see that the run was given up, once the deadline passed.
pub const GRACE: Duration = Duration::from_secs(1);

/// Parses a duration: whole seconds (`90`), or a number with a unit
/// (`90s`, `15m`, `2h`). Zero is refused.
pub fn parse(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: expected seconds or a number with s, m or h (e.g. 90s, 15m, 2h)"
            ))
        }
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            format!("invalid duration {text:?}: expected a whole number above 0, e.g. 90s, 15m, 2h")
        })?;
    Ok(Duration::from_secs(seconds))
}

/// Runs `work`, giving it up once `limit` has passed (exit 8). The caller
/// then gives threads still working on its behalf [`GRACE`] to stop (see
/// [`tokio::runtime::Runtime::shutdown_timeout`]).
pub async fn within<T>(
    limit: Option<Duration>,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(limit) = limit else {
        return work.await;
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::Unreachable(format!(
            "the run did not finish within --deadline {}s and was stopped; a registry may be \
             answering too slowly (see --timeout and --min-rate): raise --deadline, or try again later",
            limit.as_secs()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse("0").is_err());
        assert!(parse("1.5h").is_err());
        assert!(parse("5d").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn work_past_the_deadline_is_stopped_with_exit_8() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let e = runtime
            .block_on(within(Some(Duration::from_millis(100)), async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            }))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(e.exit_code(), crate::ExitCode::Unreachable);
        assert!(e.to_string().contains("--deadline"), "{e}");
    }
}
