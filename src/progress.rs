//! Progress of a transfer: a byte bar on a terminal; elsewhere (CI logs),
//! a log line at most every [`LINE_EVERY`] once the work has taken
//! that long, so a long push or pull never leaves a log silent. The lines
//! are info records (`-q` hides them; with `--log-format json` they carry
//! `progress`, `bytes`, `total_bytes` and `elapsed_ms` as fields).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged off a terminal, unless
/// `OCISTEP_PROGRESS_EVERY` (seconds) says otherwise.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// A cheap, cloneable handle to a progress bar, progress lines, or nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Shown>);

#[derive(Clone)]
enum Shown {
    Bar(ProgressBar),
    Lines(Arc<Lines>),
}

/// Progress told as log lines.
struct Lines {
    label: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    every: Duration,
    /// When the last line was logged (the start before the first).
    last: Mutex<Instant>,
}

impl Progress {
    /// Progress over `len` bytes labelled `label` (`packing`, `uploading`,
    /// `downloading`): a bar when `bar` allows one and stderr is a terminal
    /// outside CI; log lines otherwise.
    pub fn bytes(len: u64, label: &str, bar: bool) -> Self {
        if !bar || !show_on_this_terminal() {
            return Progress::lines(len, label, line_every());
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(label.to_string());
        Progress(Some(Shown::Bar(bar)))
    }

    /// Progress told as a log line at most every `every`.
    fn lines(len: u64, label: &str, every: Duration) -> Self {
        let now = Instant::now();
        Progress(Some(Shown::Lines(Arc::new(Lines {
            label: label.to_string(),
            total: len,
            done: AtomicU64::new(0),
            started: now,
            every,
            last: Mutex::new(now),
        }))))
    }

    /// Nothing shown.
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// Advances by `n` bytes.
    pub fn inc(&self, n: u64) {
        match &self.0 {
            Some(Shown::Bar(b)) => b.inc(n),
            Some(Shown::Lines(lines)) => lines.advance(n),
            None => {}
        }
    }

    /// Back to zero (a retried upload starts over).
    pub fn reset(&self) {
        match &self.0 {
            Some(Shown::Bar(b)) => b.set_position(0),
            Some(Shown::Lines(lines)) => lines.done.store(0, Ordering::Relaxed),
            None => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(Shown::Bar(b)) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Lines {
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(*last) < self.every {
                return;
            }
            *last = now;
        }
        let elapsed = now.duration_since(self.started);
        tracing::info!(
            progress = %self.label,
            bytes = done,
            total_bytes = self.total,
            elapsed_ms = elapsed.as_millis() as u64,
            "{}: {} of {} ({}%) after {}s",
            self.label,
            human_bytes(done),
            human_bytes(self.total),
            (done * 100).checked_div(self.total).unwrap_or(100),
            elapsed.as_secs()
        );
    }
}

/// The interval between progress lines: `OCISTEP_PROGRESS_EVERY` seconds
/// when set to a number, else [`LINE_EVERY`].
fn line_every() -> Duration {
    std::env::var("OCISTEP_PROGRESS_EVERY")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(LINE_EVERY)
}

/// Bytes as a short human figure (`3.2 MiB`).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A reader that advances a [`Progress`] by the bytes read through it.
pub struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R> ProgressReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: Progress) -> Self {
        ProgressReader { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// True when stderr is a terminal and no CI variable is set.
pub fn show_on_this_terminal() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none()
        && std::env::var_os("TEKTON_RESULTS_DIR").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
