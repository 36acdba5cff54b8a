//! Downloading an artifact's planned layers into a staging directory:
//! file layers in parallel (up to `--max-transfers`), directory layers
//! unpacked one by one, all within one budget of bytes and entries, each
//! started over when cut short.

use std::io::Read;
use std::path::Path;

use futures_util::future::join_all;

use crate::archive::extract::ExtractLimits;
use crate::archive::staging::Staging;
use crate::artifact::pull::{self as artifact, Planned, PlannedKind};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressReader};
use crate::signals::StopReader;
use crate::store::Store;

/// What is left of the extraction limits, shared by all layers.
pub struct Budget {
    limits: ExtractLimits,
    /// Bytes written so far.
    pub bytes_used: u64,
    entries_used: u64,
}

impl Budget {
    /// Refuses up front when the file layers alone exceed the limits.
    pub fn new(limits: ExtractLimits, planned: &[Planned]) -> Result<Self> {
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

/// Downloads the file layers into `root` (the staging directory), up to
/// `--max-transfers` at a time, each started over when cut short. Returns
/// the paths written for each planned layer, in plan order (none yet for
/// the layers to unpack).
pub async fn write_files(
    progress: bool,
    store: &Store,
    planned: &[Planned],
    staging: &Staging,
    budget: &mut Budget,
) -> Result<Vec<Vec<String>>> {
    let root = staging.path();
    let files = planned
        .iter()
        .filter(|l| matches!(l.kind, PlannedKind::File { .. }));
    let total = files.clone().map(|l| l.desc.size).sum();
    let progress = Progress::bytes(total, "downloading", progress);
    // Every download runs to its end even when another fails: one dropped
    // halfway would leave its writer thread still writing into the staging
    // directory while that is being removed.
    let written = join_all(planned.iter().map(|layer| {
        let progress = progress.clone();
        async move {
            let PlannedKind::File { mode } = layer.kind else {
                return Ok(Vec::new());
            };
            let _slots = store.transfer_slots(store).await;
            store
                .stream_blob_restarting(&layer.desc, |_| {
                    // A previous attempt may have left part of the file.
                    artifact::remove_partial(root, &layer.title)?;
                    let (bar, title, root) =
                        (progress.clone(), layer.title.clone(), root.to_path_buf());
                    let worker = staging.worker();
                    Ok(move |reader: &mut dyn Read| {
                        let _worker = worker;
                        let mut reader = StopReader(ProgressReader::new(reader, bar));
                        artifact::write_file(&mut reader, &root, &title, mode)?;
                        Ok(vec![title.as_str()])
                    })
                })
                .await
        }
    }))
    .await;
    progress.finish();
    let written = written.into_iter().collect::<Result<Vec<_>>>()?;
    budget.bytes_used += total;
    budget.entries_used += files.count() as u64;
    Ok(written)
}

/// Unpacks one directory layer into `root` (the staging directory) within
/// what is left of the budget, started over when cut short; returns the
/// paths written.
pub async fn unpack_layer(
    progress: bool,
    store: &Store,
    layer: &Planned,
    compression: Compression,
    target: &Path,
    root: &Path,
    budget: &mut Budget,
) -> Result<Vec<String>> {
    let limits = budget.remaining();
    let tar_digest = artifact::tar_digest(&layer.desc);
    let mut scratch = None;
    let (stats, entries) = store
        .stream_blob_restarting(&layer.desc, |_| {
            // Every attempt unpacks into a scratch directory of its own.
            let dir = scratch.insert(artifact::scratch_dir(target)?);
            let (scratch_path, worker) = (dir.path().to_path_buf(), dir.worker());
            let progress = Progress::bytes(layer.desc.size, "downloading", progress);
            let tar_digest = tar_digest.clone();
            Ok(move |reader: &mut dyn Read| {
                let _worker = worker;
                let mut reader = StopReader(ProgressReader::new(reader, progress.clone()));
                let unpacked = artifact::unpack(
                    &mut reader,
                    compression,
                    &scratch_path,
                    &limits,
                    tar_digest.as_ref(),
                );
                progress.finish();
                unpacked
            })
        })
        .await?;
    let scratch = scratch.ok_or_else(|| Error::Internal("no scratch directory".into()))?;
    budget.bytes_used += stats.bytes;
    budget.entries_used += stats.entries;
    artifact::place_unpacked(scratch.path(), &entries, root, &layer.title)
}
