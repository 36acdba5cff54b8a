//! One file per mode; each composes library calls and writes its results.

pub mod assemble_index;
pub mod copy;
pub mod discover;
pub mod process_image;
pub mod pull_artifact;
pub mod pull_source_bundle;
pub mod push_artifact;
pub mod push_image;
pub mod push_source_bundle;

use std::io::Write;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::store::remote::Remote;

/// What every mode shares in one run.
pub struct Context {
    /// The registry client with the cache in front (unused for `oci:`
    /// layouts).
    pub remote: Remote,
    /// Show progress bars (only ever on a terminal).
    pub progress: bool,
    /// Where to write results.
    pub results: ResultFiles,
    /// When the run began.
    pub started: std::time::Instant,
}

pub use crate::results::ResultFiles;

impl Context {
    /// Logs what `mode` did (`message`) with its outcome as fields (with
    /// `--log-format json`: `mode`, `reference`, `digest`, `bytes`,
    /// `duration_ms` and, for pulls, `platform`), then writes the result
    /// files.
    pub fn finish(
        &self,
        mode: &str,
        message: &str,
        outcome: &Outcome,
        platform: Option<&Platform>,
    ) -> Result<()> {
        tracing::info!(
            mode,
            reference = outcome.reference.as_deref(),
            digest = outcome.digest.as_ref().map(Digest::as_str),
            bytes = outcome.size,
            duration_ms = self.started.elapsed().as_millis() as u64,
            platform = platform.map(Platform::short),
            "{message}"
        );
        crate::results::publish(&self.results, outcome)
    }
}

/// Pushes need a tag to write to; `example` shows the user one.
pub fn require_tag(target: &Target, example: &str) -> Result<()> {
    match target.tag() {
        Some(_) => Ok(()),
        None => Err(Error::Usage(format!(
            "--image {target} names a digest; this mode writes a tag (e.g. {example})"
        ))),
    }
}

/// Prints extracted paths on stdout (`--show-listing`), one a line, each
/// escaped as error messages escape names (`{:?}` is this escaping in
/// quotes): a newline in a name prints as `\n` and cannot forge a line of
/// its own, control characters (terminal escape sequences) as `\u{1b}`,
/// a backslash as `\\`. Ordinary names print as they are.
pub fn print_listing(paths: &[String]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for path in paths {
        writeln!(out, "{}", path.escape_debug()).map_err(|e| Error::io("writing", "stdout", e))?;
    }
    Ok(())
}

/// `--prune`: deletes the pulled manifest after a successful pull, but never
/// a multi-platform index, which other platforms' nodes may still need. A
/// refused delete is a warning: the pull itself succeeded.
pub async fn prune(store: &crate::store::Store, top: &crate::oci::manifest::FetchedManifest) {
    if top.is_index() {
        tracing::warn!(
            "--prune skipped: {} is a multi-platform index that other platforms may still pull; delete it once all have",
            store.pinned(&top.digest)
        );
        return;
    }
    match store.delete_manifest(&top.digest).await {
        Ok(()) => tracing::info!("pruned {}", store.pinned(&top.digest)),
        Err(e) => tracing::warn!("the pull succeeded but --prune failed: {e}"),
    }
}

/// Scans an image with trivy on a blocking thread, logs and writes what it
/// found (the result file is written even when the findings then fail the
/// run, as Shipwright does) and returns the `ID:S,…` result.
pub async fn scan(
    ctx: &Context,
    subject: crate::scan::trivy::Subject,
    settings: &crate::scan::ScanSettings,
) -> Result<String> {
    let settings = settings.clone();
    let found = tokio::task::spawn_blocking(move || crate::scan::trivy::scan(&subject, &settings))
        .await
        .map_err(|e| Error::Internal(format!("the scan failed: {e}")))??;
    if !found.is_empty() {
        tracing::warn!("vulnerabilities found in the image:");
        for v in &found {
            tracing::warn!("ID: {}, Severity: {}", v.id, v.severity);
        }
    }
    let value = crate::scan::report::to_result(&found);
    crate::results::write(ctx.results.vulnerabilities.as_deref(), &value)?;
    Ok(value)
}
