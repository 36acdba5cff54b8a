//! `--push-image DIR`: push what a builder wrote (an OCI image layout, an
//! OCI archive or a docker archive) to `--image`, optionally with labels,
//! annotations and a creation time applied. Blobs the target has are not
//! uploaded again; without mutations the pushed digest equals the layout's.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::mutate::Mutations;
use crate::image::push::push;
use crate::image::source::{Form, ImageSource};
use crate::modes::{require_tag, Context};
use crate::oci::reference::Target;
use crate::results::{self, Outcome};
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, dir: &Path, target: &Target, mutations: &Mutations) -> Result<()> {
    let source = open(dir).await?;
    let dst = Store::for_writing(target, &ctx.remote)?;
    require_tag(target, "app:v1-linux-arm64")?;
    let pushed = push(&source.store(), &dst, &source.selection, mutations).await?;
    let pinned = dst.pinned(&pushed.digest);
    tracing::info!(
        "pushed {} as {pinned} ({} blobs uploaded, {} already present)",
        describe(dir, &source.form),
        pushed.blobs_uploaded,
        pushed.blobs_present
    );
    results::publish(
        &ctx.results,
        &Outcome {
            digest: Some(pushed.digest.clone()),
            size: Some(pushed.size),
            reference: Some(pinned),
            ..Outcome::default()
        },
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
