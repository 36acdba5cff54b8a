//! SIGTERM, SIGINT and SIGHUP: what CI systems send a step on a timeout or
//! a cancel. They are turned into a stop request that runs can observe, so
//! a pull removes its staging directory and a push cancels its upload
//! session before the process exits with 128 + the signal's number.
//!
//! [`watch`] blocks the three signals in the calling thread before any
//! other thread exists (so every thread inherits the mask) and waits for
//! them on a thread of its own with `sigwait`: no handler runs in signal
//! context. Child processes (credential helpers) start with an empty mask,
//! as the standard library sets it. A second signal ends the process at
//! once, with the same exit code.

use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, Result};

/// A signal that asks ocistep to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: Tekton, GitLab and GitHub Actions on a timeout or cancel.
    Term,
    /// SIGINT: Ctrl-C, and GitHub Actions' first step on a cancel.
    Int,
    /// SIGHUP: the terminal went away.
    Hup,
}

impl Signal {
    /// The signal's name, e.g. `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Hup => "SIGHUP",
        }
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
        }
    }

    /// The exit status of a process stopped by this signal: 128 + its
    /// number (143, 130, 129), as shells report it.
    pub fn exit_status(self) -> i32 {
        128 + self.number()
    }

    fn from_number(n: i32) -> Option<Signal> {
        [Signal::Term, Signal::Int, Signal::Hup]
            .into_iter()
            .find(|s| s.number() == n)
    }
}

/// How long a push may take after a stop signal to end its streamed PATCH
/// and cancel its upload session; CI systems wait longer than this before
/// they send SIGKILL (GitHub Actions 7.5 s, Tekton and GitLab 30 s).
pub const PUSH_GRACE: Duration = Duration::from_secs(5);

/// The number of the first signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Wakes async waiters once a signal arrives.
fn channel() -> &'static tokio::sync::watch::Sender<Option<Signal>> {
    static CHANNEL: OnceLock<tokio::sync::watch::Sender<Option<Signal>>> = OnceLock::new();
    CHANNEL.get_or_init(|| tokio::sync::watch::Sender::new(None))
}

/// Starts watching for SIGTERM, SIGINT and SIGHUP. Call it first thing in
/// `main`, before any other thread is started.
pub fn watch() -> Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is an initialised signal set; this only changes the
    // calling thread's mask.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(Error::Internal(format!(
            "cannot block the stop signals: {}",
            std::io::Error::from_raw_os_error(rc)
        )));
    }
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || loop {
            let mut number = 0;
            // SAFETY: `set` and `number` are valid for the call.
            if unsafe { libc::sigwait(&set, &mut number) } != 0 {
                continue;
            }
            let Some(signal) = Signal::from_number(number) else {
                continue;
            };
            if RECEIVED
                .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // Asked twice: stop now.
                std::process::exit(signal.exit_status());
            }
            channel().send_replace(Some(signal));
        })
        .map_err(|e| Error::Internal(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for n in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, n);
        }
        set
    }
}

/// The stop signal received, if any: cheap enough for blocking loops.
pub fn received() -> Option<Signal> {
    Signal::from_number(RECEIVED.load(Ordering::SeqCst))
}

/// Resolves once a stop signal has been received (at once if one was).
pub async fn wait() -> Signal {
    let mut rx = channel().subscribe();
    let signal = match rx.wait_for(Option::is_some).await {
        Ok(signal) => *signal,
        // The sender lives in a static: never dropped.
        Err(_) => None,
    };
    match signal {
        Some(signal) => signal,
        None => std::future::pending().await,
    }
}

/// Runs `work` until it ends or a stop signal arrives. On a signal, `work`
/// gets up to `grace` to end on its own (a push cancelling its upload
/// session), then is dropped, which runs its cleanup (a pull's staging
/// directory waits for its writing threads, then is removed). What `work`
/// returned within the grace is the result; else [`Error::Stopped`].
pub async fn run_until_stopped<F>(work: F, grace: Duration) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    let mut work = std::pin::pin!(work);
    let signal = tokio::select! {
        done = &mut work => return done,
        signal = wait() => signal,
    };
    tracing::warn!("{} received: stopping", signal.name());
    match tokio::time::timeout(grace, &mut work).await {
        Ok(done) => done,
        Err(_) => Err(Error::Stopped(signal)),
    }
}

/// A reader that fails once a stop signal has been received, so a blocking
/// thread reading a download stops at its next read.
pub struct StopReader<R>(pub R);

impl<R: std::io::Read> std::io::Read for StopReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(signal) = received() {
            return Err(std::io::Error::other(format!(
                "stopped by {}",
                signal.name()
            )));
        }
        self.0.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_128_plus_the_signal() {
        assert_eq!(Signal::Term.exit_status(), 143);
        assert_eq!(Signal::Int.exit_status(), 130);
        assert_eq!(Signal::Hup.exit_status(), 129);
        assert_eq!(Signal::from_number(libc::SIGHUP), Some(Signal::Hup));
        assert_eq!(Signal::from_number(libc::SIGKILL), None);
    }
}
