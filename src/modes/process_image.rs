//! No mode flag, `--image REF`: Shipwright's image-processing step for an
//! image a build strategy pushed itself. The image (or index) at REF is
//! scanned when asked, changed when annotations, labels or a creation time
//! are given (an index: annotations on it and on every child, labels and
//! times in every child's config; children first, the tag last) and
//! pushed back; its digest and Shipwright's size are the results.

use crate::error::Result;
use crate::image::push::push;
use crate::image::source::Selection;
use crate::modes::{require_tag, scan, Context};
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::scan::trivy::{self, Subject};
use crate::settings::ImageSettings;
use crate::shipwright::size::image_size;
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, target: &Target, image: &ImageSettings) -> Result<()> {
    if image.scan.is_some() {
        trivy::find()?;
    }
    let changes = !image.mutations.is_empty();
    if changes {
        require_tag(target, "app:v1")?;
    }
    let src = Store::for_reading(target, &ctx.remote)?;
    let top = src.get_manifest().await?;
    // Shipwright's step fails only a push from a directory on findings:
    // this image is in the registry already.
    let vulnerabilities = match &image.scan {
        Some(settings) => Some(scan(ctx, subject(target), settings).await?),
        None => None,
    };
    let (manifest, message) = if changes {
        let dst = Store::for_writing(target, &ctx.remote)?;
        let selection = Selection::Single(top.descriptor());
        let pushed = push(&src, &dst, &selection, &image.mutations).await?;
        let message = format!(
            "{target} changed from {} to {} ({} blobs written)",
            top.digest, pushed.digest, pushed.blobs_uploaded
        );
        (pushed.manifest, message)
    } else {
        let message = format!("{target} is {} (nothing to change)", top.digest);
        (top, message)
    };
    ctx.finish(
        "process-image",
        &message,
        &Outcome {
            digest: Some(manifest.digest.clone()),
            size: image_size(&manifest)?,
            reference: Some(src.pinned(&manifest.digest)),
            vulnerabilities,
            ..Outcome::default()
        },
        None,
    )
}

/// What trivy scans for `target`: the reference, or the layout on disk.
fn subject(target: &Target) -> Subject {
    match target {
        Target::Registry(image) => Subject::Image {
            reference: image.to_string(),
            registry: image.registry.clone(),
        },
        Target::Layout(layout) => Subject::Input(layout.path.clone()),
    }
}
