//! `--copy SRC DST`: an image or an index with all its children, from a
//! registry or layout to a registry or layout. Blobs move once (skipped
//! when present, mounted within a registry); the tag is set last.

use crate::error::Result;
use crate::modes::Context;
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::store::copy::copy_manifest;
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, src: &Target, dst: &Target) -> Result<()> {
    let from = Store::for_reading(src, &ctx.remote)?;
    let (manifest, ()) = futures_util::join!(from.get_manifest(), ctx.remote.learn_if_new(dst));
    let manifest = manifest?;
    let to = Store::for_writing(dst, &ctx.remote)?;
    let stats = copy_manifest(&from, &to, &manifest).await?;
    let digest = match to.tag() {
        Some(_) => {
            to.put_manifest(&manifest.bytes, &manifest.media_type)
                .await?
        }
        None => {
            to.put_manifest_by_digest(&manifest.bytes, &manifest.media_type)
                .await?
        }
    };
    let pinned = to.pinned(&digest);
    let message = format!(
        "copied {src} to {pinned}: {} manifests, {} blobs copied ({} bytes), {} mounted, {} already there{}",
        stats.manifests,
        stats.blobs_copied,
        stats.bytes_copied,
        stats.blobs_mounted,
        stats.blobs_present,
        match stats.mounts_declined {
            0 => String::new(),
            n => format!(" ({n} mounts declined, copied instead)"),
        }
    );
    ctx.finish(
        "copy",
        &message,
        &Outcome {
            digest: Some(digest),
            size: Some(manifest.bytes.len() as u64),
            reference: Some(pinned),
            ..Outcome::default()
        },
        None,
    )
}
