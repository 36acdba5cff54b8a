//! `--pull-source-bundle DIR`: fetch and verify the manifest, stream the
//! layer through digest verification into a staging directory, then move
//! it into DIR. Optionally list what was extracted and prune the bundle.
//!
//! The source timestamp is the bundle's own (its `created` annotation) or,
//! for a bundle without one (Shipwright's), the newest regular file's mtime
//! in its layer, as Shipwright's bundle puller reports it; a layer without
//! a regular file has none, and no timestamp file is written.

use std::io::Read;
use std::path::Path;

use crate::archive::extract::{self, EntryKind, ExtractStats};
use crate::archive::staging::{self, Staging};
use crate::bundle::format;
use crate::error::{Error, Result};
use crate::modes::{print_listing, prune, Context};
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::progress::{Progress, ProgressReader};
use crate::results::Outcome;
use crate::settings::PullSettings;
use crate::signals::StopReader;
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &PullSettings,
    platform: &Platform,
) -> Result<()> {
    let limits = args.limits;
    let started = std::time::Instant::now();
    staging::remove_stale(dir);
    let store = Store::for_reading(target, &ctx.remote)?;
    let top = store.get_manifest().await?;
    let fetched = store.resolve_platform(top.clone(), platform).await?;
    let manifest = fetched.image_manifest()?;
    let info = format::inspect(&manifest, &target.to_string())?;
    tracing::info!(
        "pulling {target} ({}, layer {} bytes)",
        fetched.digest,
        info.layer.size
    );

    let mut staging = Staging::new(dir)?;
    let compression = info.compression;
    let (stats, listing, newest_file) = store
        .stream_blob_restarting(&info.layer, |attempt| {
            // An attempt cut short leaves part of the tree: start afresh.
            if attempt > 1 {
                staging.reset()?;
            }
            let path = staging.path().to_path_buf();
            let worker = staging.worker();
            let progress = Progress::bytes(info.layer.size, "downloading", ctx.progress);
            Ok(move |reader: &mut dyn Read| {
                let _worker = worker;
                let mut listing = Vec::new();
                let mut newest_file: Option<u64> = None;
                let mut reader = StopReader(ProgressReader::new(reader, progress.clone()));
                let extracted =
                    extract::unpack(&mut reader, compression, &path, &limits, &mut |e| {
                        if e.kind == EntryKind::File {
                            newest_file = newest_file.max(Some(e.mtime));
                        }
                        listing.push(e.path.to_string())
                    });
                progress.finish();
                Ok::<(ExtractStats, Vec<String>, Option<u64>), Error>((
                    extracted?,
                    listing,
                    newest_file,
                ))
            })
        })
        .await?;
    staging.commit(args.overwrite)?;
    tracing::info!(
        "extracted {} entries ({} bytes) into {} in {:.2?}",
        stats.entries,
        stats.bytes,
        dir.display(),
        started.elapsed()
    );

    if args.show_listing {
        print_listing(&listing)?;
    }
    let total = fetched.bytes.len() as u64 + manifest.config.size + info.layer.size;
    let source_timestamp = info.source_timestamp.or(newest_file);
    if source_timestamp.is_none() && ctx.results.source_timestamp.is_some() {
        tracing::warn!(
            "unable to determine the source timestamp of the content in {}: the bundle carries none and its layer holds no regular file; no timestamp file is written",
            dir.display()
        );
    }
    ctx.finish(
        "pull-source-bundle",
        &format!("pulled {}", store.pinned(&fetched.digest)),
        &Outcome {
            digest: Some(fetched.digest.clone()),
            size: Some(total),
            reference: Some(store.pinned(&fetched.digest)),
            source_timestamp: source_timestamp.map(|t| t.to_string()),
            platform_results: None,
            vulnerabilities: None,
        },
        Some(platform),
    )?;

    if args.prune {
        prune(&store, &top).await;
    }
    Ok(())
}
