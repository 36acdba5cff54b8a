//! `--pull-artifact DIR`: resolve the platform when `--image` is an index,
//! check every title before writing, then stream each chosen layer through
//! digest verification into a staging directory (files with their mode,
//! directory layers unpacked safely) and move the result into DIR.

use std::path::Path;

use crate::archive::staging::{self, Staging};
use crate::artifact::download::{unpack_layer, write_files, Budget};
use crate::artifact::pull::{self as artifact, PlannedKind};
use crate::error::Result;
use crate::modes::{print_listing, prune, Context};
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::settings::{ArtifactSettings, PullSettings};
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &ArtifactSettings,
    pull: &PullSettings,
    platform: &Platform,
) -> Result<()> {
    let started = std::time::Instant::now();
    staging::remove_stale(dir);
    let store = Store::for_reading(target, &ctx.remote)?;
    let top = store.get_manifest().await?;
    let fetched = store.resolve_platform(top.clone(), platform).await?;
    let manifest = fetched.image_manifest()?;
    let what = format!("{target} ({})", fetched.digest);
    let planned = artifact::plan(&manifest, &args.media_types, &what)?;
    let mut budget = Budget::new(pull.limits, &planned)?;
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
    let mut written = write_files(ctx.progress, &store, &planned, &staging, &mut budget).await?;
    for (layer, paths) in planned.iter().zip(written.iter_mut()) {
        if let PlannedKind::Unpack(compression) = layer.kind {
            *paths = unpack_layer(
                ctx.progress,
                &store,
                layer,
                compression,
                dir,
                staging.path(),
                &mut budget,
            )
            .await?;
        }
    }
    let listing: Vec<String> = written.into_iter().flatten().collect();
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
    ctx.finish(
        "pull-artifact",
        &format!("pulled {}", store.pinned(&fetched.digest)),
        &Outcome {
            digest: Some(fetched.digest.clone()),
            size: Some(total),
            reference: Some(store.pinned(&fetched.digest)),
            ..Outcome::default()
        },
        Some(platform),
    )?;
    if pull.prune {
        prune(&store, &top).await;
    }
    Ok(())
}
