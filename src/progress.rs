//! A byte progress bar on a terminal, and nothing at all in CI logs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A cheap, cloneable handle to an optional progress bar.
#[derive(Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` bytes labelled `label`, shown only when `enabled` and
    /// stderr is a terminal outside CI.
    pub fn bytes(len: u64, label: &str, enabled: bool) -> Self {
        if !enabled || !show_on_this_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(label.to_string());
        Progress(Some(bar))
    }

    /// No bar.
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// Advances by `n` bytes.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Back to zero (a retried upload starts over).
    pub fn reset(&self) {
        if let Some(b) = &self.0 {
            b.set_position(0);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
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
