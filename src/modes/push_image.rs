//! `--push-image DIR`: push what a builder wrote (an OCI image layout) to
//! `--image`. Blobs the target has are not uploaded again; without
//! mutations the pushed digest equals the layout's.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::PushImageArgs;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::modes::Context;
use crate::reference::{LayoutRef, Target};
use crate::results;
use crate::store::Store;
use crate::transfer::copy_manifest;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &PushImageArgs,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    if !args.label.is_empty()
        || args.image_timestamp.is_some()
        || args.image_timestamp_file.is_some()
        || !annotations.is_empty()
    {
        return Err(Error::Usage(
            "--label, --annotation and --image-timestamp are not supported with --push-image yet"
                .to_string(),
        ));
    }
    let dst = Store::for_writing(target, &ctx.client)?;
    if dst.tag().is_none() {
        return Err(Error::Usage(format!(
            "--image {target} names a digest; a push needs a tag"
        )));
    }
    let layout = Layout::open(dir)?;
    let desc = layout.single_manifest()?;
    let src = Store::Layout {
        layout,
        reference: LayoutRef {
            path: dir.to_path_buf(),
            tag: None,
            digest: Some(desc.parsed_digest()?),
        },
    };
    let manifest = src.get_manifest().await?;
    let stats = copy_manifest(&src, &dst, &manifest).await?;
    let digest = dst
        .put_manifest(&manifest.bytes, &manifest.media_type)
        .await?;
    let pinned = dst.pinned(&digest);
    tracing::info!(
        "pushed {} as {pinned} ({} blobs uploaded, {} already present)",
        dir.display(),
        stats.blobs_copied,
        stats.blobs_present
    );
    results::write(ctx.results.digest.as_deref(), digest.as_str())?;
    results::write(
        ctx.results.size.as_deref(),
        &manifest.bytes.len().to_string(),
    )?;
    results::write(ctx.results.reference.as_deref(), &pinned)?;
    Ok(())
}
