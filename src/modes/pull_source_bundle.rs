//! `--pull-source-bundle DIR`: fetch and verify the manifest, stream the
//! layer through digest verification into a staging directory, then move
//! it into DIR. Optionally list what was extracted and prune the bundle.

use std::io::Read;
use std::path::Path;

use crate::archive::extract::{self, ExtractStats};
use crate::archive::staging::{self, Staging};
use crate::bundle::format;
use crate::error::{Error, Result};
use crate::modes::{print_listing, prune, Context};
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::progress::{Progress, ProgressReader};
use crate::results::{self, Outcome};
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
    let (stats, listing) = store
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
                let mut reader = StopReader(ProgressReader::new(reader, progress.clone()));
                let extracted =
                    extract::unpack(&mut reader, compression, &path, &limits, &mut |e| {
                        listing.push(e.path.to_string())
                    });
                progress.finish();
                Ok::<(ExtractStats, Vec<String>), Error>((extracted?, listing))
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
    if info.source_timestamp.is_none() && ctx.results.source_timestamp.is_some() {
        tracing::warn!("the bundle carries no source timestamp; the result file is left empty");
    }
    results::publish(
        &ctx.results,
        &Outcome {
            digest: Some(fetched.digest.clone()),
            size: Some(total),
            reference: Some(store.pinned(&fetched.digest)),
            source_timestamp: Some(
                info.source_timestamp
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
            platform_results: None,
        },
    )?;

    if args.prune {
        prune(&store, &top).await;
    }
    Ok(())
}
