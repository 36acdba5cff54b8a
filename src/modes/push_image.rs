//! `--push-image DIR` (and Shipwright's `--push DIR`): push what a builder
//! wrote (an OCI image layout, an OCI archive or a docker archive) to
//! `--image`, optionally scanned first and with labels, annotations and a
//! creation time applied. Blobs the target has are not uploaded again;
//! without mutations the pushed digest equals the layout's.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::push::push;
use crate::image::source::{Form, ImageSource};
use crate::modes::{require_tag, scan, Context};
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::scan::trivy::{self, Subject};
use crate::settings::ImageSettings;
use crate::shipwright::size::image_size;
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, dir: &Path, target: &Target, image: &ImageSettings) -> Result<()> {
    if image.scan.is_some() {
        trivy::find()?;
    }
    let source = open(dir).await?;
    let dst = Store::for_writing(target, &ctx.remote)?;
    require_tag(target, "app:v1-linux-arm64")?;
    let vulnerabilities = match &image.scan {
        Some(settings) => {
            let subject = Subject::Input(match &source.form {
                Form::Layout => dir.to_path_buf(),
                Form::OciArchive(p) | Form::DockerArchive(p) => p.clone(),
            });
            let found = scan(ctx, subject, settings).await?;
            if settings.fail_on_finding && !found.is_empty() {
                return Err(Error::Vulnerable(format!(
                    "vulnerabilities found in the image in {} and failOnFinding is set; nothing was pushed",
                    dir.display()
                )));
            }
            Some(found)
        }
        None => None,
    };
    let pushed = push(&source.store(), &dst, &source.selection, &image.mutations).await?;
    let pinned = dst.pinned(&pushed.digest);
    let message = format!(
        "pushed {} as {pinned} ({} blobs uploaded, {} already present)",
        describe(dir, &source.form),
        pushed.blobs_uploaded,
        pushed.blobs_present
    );
    let size = match image.shipwright_size {
        true => image_size(&pushed.manifest)?,
        false => Some(pushed.manifest.bytes.len() as u64),
    };
    ctx.finish(
        "push-image",
        &message,
        &Outcome {
            digest: Some(pushed.digest.clone()),
            size,
            reference: Some(pinned),
            vulnerabilities,
            ..Outcome::default()
        },
        None,
    )
}

/// Opens DIR on a blocking thread (a tarball is unpacked, maybe converted).
async fn open(dir: &Path) -> Result<ImageSource> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || ImageSource::open(&dir))
        .await
        .map_err(|e| Error::Internal(format!("reading the image failed: {e}")))?
}

fn describe(dir: &Path, form: &Form) -> String {
    match form {
        Form::Layout => format!("layout {}", dir.display()),
        Form::OciArchive(p) => format!("OCI archive {}", p.display()),
        Form::DockerArchive(p) => format!("docker archive {}", p.display()),
    }
}
