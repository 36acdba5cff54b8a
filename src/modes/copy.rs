//! `--copy SRC DST`: an image or an index with all its children, from a
//! registry or layout to a registry or layout. Blobs move once (skipped
//! when present, mounted within a registry). With `--platform`, only those
//! platforms (and their attestations) go into a new index; with
//! `--referrers`, referrers and cosign's tags come along. The tag is set
//! last.

use crate::assemble::select::select_platforms;
use crate::error::Result;
use crate::modes::Context;
use crate::oci::index::{self, format_of, index_annotations, index_children};
use crate::oci::manifest::FetchedManifest;
use crate::oci::reference::Target;
use crate::referrers::copy::copy_referrers;
use crate::results::Outcome;
use crate::settings::CopySettings;
use crate::store::copy::{copy_references, CopyStats};
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, src: &Target, dst: &Target, args: &CopySettings) -> Result<()> {
    let from = Store::for_reading(src, &ctx.remote)?;
    let (manifest, ()) = futures_util::join!(from.get_manifest(), ctx.remote.learn_if_new(dst));
    let source = manifest?;
    let manifest = match args.platforms.is_empty() {
        true => source.clone(),
        false => {
            let mut chosen = select_platforms(&source, &args.platforms)?;
            if args.drop_attestations {
                chosen.retain(|c| !c.is_attestation());
            }
            let format = format_of(&source);
            let bytes = index::build(&mut chosen, format, &index_annotations(&source)?);
            FetchedManifest::new(bytes, Some(format.media_type().to_string()))
        }
    };
    let to = Store::for_writing(dst, &ctx.remote)?;
    // The manifest itself is stored once, under the tag when there is one
    // (and by digest first when referrers follow, which name it).
    let stats = match copy_references(&from, &to, &manifest).await? {
        Some(stats) => CopyStats {
            manifests: stats.manifests + 1,
            ..stats
        },
        None => CopyStats::default(),
    };
    if args.referrers {
        to.put_manifest_by_digest(&manifest.bytes, &manifest.media_type)
            .await?;
        let mut subjects = vec![manifest.digest.clone()];
        if manifest.is_index() {
            for child in index_children(&manifest)? {
                subjects.push(child.parsed_digest()?);
            }
        }
        let copied = copy_referrers(&from, &to, &subjects).await?;
        tracing::info!("copied {copied} referrers and cosign tags");
    }
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
