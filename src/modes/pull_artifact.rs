//! `--pull-artifact DIR`: resolve the platform when `--image` is an index,
//! check every title before writing, then stream each chosen layer through
//! digest verification into a staging directory (files with their mode,
//! directory layers unpacked safely) and move the result into DIR.

use std::path::Path;

use crate::artifact::pull::{self as artifact, Planned, PlannedKind};
use crate::bundle::extract::ExtractLimits;
use crate::bundle::install::Staging;
use crate::cli::{ArtifactArgs, PullArgs};
use crate::error::{Error, Result};
use crate::modes::{print_listing, prune, Context};
use crate::platform::Platform;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Target;
use crate::results::{self, Outcome};
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &ArtifactArgs,
    pull: &PullArgs,
    limits: ExtractLimits,
    platform: &Platform,
) -> Result<()> {
    let started = std::time::Instant::now();
    let store = Store::for_reading(target, &ctx.client)?;
    let top = store.get_manifest().await?;
    let fetched = store.resolve_platform(top.clone(), platform).await?;
    let manifest = fetched.image_manifest()?;
    let what = format!("{target} ({})", fetched.digest);
    let planned = artifact::plan(&manifest, &args.media_type, &what)?;
    let mut budget = Budget::new(limits, &planned)?;
    tracing::info!(
        "pulling {what}: {} of {} layers{}",
        planned.len(),
        manifest.layers.len(),
        manifest
            .artifact_type
            .as_deref()
            .map(|t| format!(", artifact type {t}"))
            .unwrap_or_default()
    );

    let staging = Staging::new(dir)?;
    let mut listing = Vec::new();
    for layer in &planned {
        listing.extend(write_layer(ctx, &store, layer, dir, staging.path(), &mut budget).await?);
    }
    staging.commit(pull.overwrite)?;
    tracing::info!(
        "wrote {} layers ({} bytes) into {} in {:.2?}",
        planned.len(),
        budget.bytes_used,
        dir.display(),
        started.elapsed()
    );
    if pull.show_listing {
        print_listing(&listing)?;
    }

    let total = fetched.bytes.len() as u64
        + manifest.config.size
        + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    results::publish(
        &ctx.results,
        &Outcome {
            digest: Some(fetched.digest.clone()),
            size: Some(total),
            reference: Some(store.pinned(&fetched.digest)),
            ..Outcome::default()
        },
    )?;
    if pull.prune {
        prune(&store, &top).await;
    }
    Ok(())
}

/// What is left of the extraction limits, shared by all layers.
struct Budget {
    limits: ExtractLimits,
    bytes_used: u64,
    entries_used: u64,
}

impl Budget {
    /// Refuses up front when the file layers alone exceed the limits.
    fn new(limits: ExtractLimits, planned: &[Planned]) -> Result<Self> {
        let files: Vec<&Planned> = planned
            .iter()
            .filter(|p| matches!(p.kind, PlannedKind::File { .. }))
            .collect();
        let bytes: u64 = files.iter().map(|p| p.desc.size).sum();
        if bytes > limits.max_bytes {
            return Err(Error::UnsafeArchive(format!(
                "the artifact's files add up to {bytes} bytes, more than {}; raise --max-extract-size if this is expected",
                limits.max_bytes
            )));
        }
        if planned.len() as u64 > limits.max_entries {
            return Err(Error::UnsafeArchive(format!(
                "the artifact has {} layers to write, more than {}; raise --max-entries if this is expected",
                planned.len(),
                limits.max_entries
            )));
        }
        Ok(Budget {
            limits,
            bytes_used: 0,
            entries_used: 0,
        })
    }

    /// The limits left for one more unpacked layer.
    fn remaining(&self) -> ExtractLimits {
        ExtractLimits {
            max_bytes: self.limits.max_bytes.saturating_sub(self.bytes_used),
            max_entries: self.limits.max_entries.saturating_sub(self.entries_used),
        }
    }
}

/// Writes one layer into `root` (the staging directory), retrying a
/// transfer cut short; returns the paths written, for `--show-listing`.
async fn write_layer(
    ctx: &Context,
    store: &Store,
    layer: &Planned,
    target: &Path,
    root: &Path,
    budget: &mut Budget,
) -> Result<Vec<String>> {
    let policy = store.retry_policy();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let progress = Progress::bytes(layer.desc.size, "downloading", ctx.progress);
        let bar = progress.clone();
        let title = layer.title.clone();
        let root_owned = root.to_path_buf();
        let outcome = match layer.kind {
            PlannedKind::File { mode } => store
                .stream_blob(&layer.desc, move |reader| {
                    let mut reader = ProgressReader::new(reader, bar);
                    artifact::write_file(&mut reader, &root_owned, &title, mode)?;
                    Ok(vec![title.as_str()])
                })
                .await
                .inspect(|_| {
                    budget.bytes_used += layer.desc.size;
                    budget.entries_used += 1;
                }),
            PlannedKind::Unpack(compression) => {
                let scratch = artifact::scratch_dir(target)?;
                let scratch_path = scratch.path().to_path_buf();
                let limits = budget.remaining();
                let tar_digest = artifact::tar_digest(&layer.desc);
                let unpacked = store
                    .stream_blob(&layer.desc, move |reader| {
                        let mut reader = ProgressReader::new(reader, bar);
                        artifact::unpack(
                            &mut reader,
                            compression,
                            &scratch_path,
                            &limits,
                            tar_digest.as_ref(),
                        )
                    })
                    .await;
                match unpacked {
                    Ok((stats, entries)) => {
                        budget.bytes_used += stats.bytes;
                        budget.entries_used += stats.entries;
                        artifact::place_unpacked(scratch.path(), &entries, root, &layer.title)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        progress.finish();
        match outcome {
            Ok(paths) => return Ok(paths),
            Err(e) => match policy.restart_delay(attempt, &e) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    if let PlannedKind::File { .. } = layer.kind {
                        artifact::remove_partial(root, &layer.title)?;
                    }
                }
                None => return Err(e),
            },
        }
    }
}
