//! `--push-artifact`: every `--file` as a titled layer with its media type,
//! the config (`--config` or the empty one), then the manifest with the
//! `artifactType` and annotations, pushed last so the tag never names
//! missing content.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::artifact::push::{self as artifact, Blob, Content, DirOptions};
use crate::artifact::{check_media_type, FileSpec};
use crate::error::{Error, Result};
use crate::modes::{require_tag, Context};
use crate::oci::manifest::{Descriptor, OCI_MANIFEST};
use crate::oci::reference::Target;
use crate::progress::Progress;
use crate::referrers::attach::attach;
use crate::results::Outcome;
use crate::settings::{ArtifactSettings, PushSettings};
use crate::store::BlobSource;
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    target: &Target,
    args: &ArtifactSettings,
    push: &PushSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    if args.subject.is_none() {
        require_tag(target, "app:v1")?;
    }
    let artifact_type = args.artifact_type.as_deref();
    if let Some(t) = artifact_type {
        check_media_type(t, "--artifact-type")?;
    }
    let files = args
        .files
        .iter()
        .map(|f| FileSpec::parse(f))
        .collect::<Result<Vec<_>>>()?;
    let config_spec = args.config.as_deref().map(FileSpec::parse).transpose()?;
    if files.is_empty() {
        return Err(Error::Usage(
            "--push-artifact needs at least one --file PATH[:MEDIATYPE]".to_string(),
        ));
    }
    let dir_opts = DirOptions {
        walk: push.walk.clone(),
        pack: push.pack_options(),
    };
    let started = std::time::Instant::now();
    let (config, layers, manifest) = tokio::task::spawn_blocking({
        let artifact_type = artifact_type.map(str::to_string);
        let annotations = annotations.clone();
        move || {
            let config = artifact::config(config_spec.as_ref())?;
            let layers = artifact::layers(&files, &dir_opts)?;
            let manifest =
                artifact::manifest(artifact_type.as_deref(), &config, &layers, &annotations)?;
            Ok::<_, Error>((config, layers, manifest))
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("packing thread failed: {e}")))??;

    let mut manifest = manifest;
    let mut store = Store::for_writing(target, &ctx.remote)?;
    if let Some(subject) = &args.subject {
        manifest.subject = Some(subject_descriptor(ctx, subject).await?);
        if args.into_subject_repository {
            store = store.untagged();
        }
    }
    for blob in layers.iter().chain(std::iter::once(&config)) {
        upload(ctx, &store, blob).await?;
    }
    let bytes = manifest.to_bytes();
    let digest = match manifest.subject {
        Some(_) => attach(&store, &manifest).await?,
        None => store.put_manifest(&bytes, OCI_MANIFEST).await?,
    };
    let total =
        bytes.len() as u64 + config.desc.size + layers.iter().map(|l| l.desc.size).sum::<u64>();
    let pinned = store.pinned(&digest);
    let message = format!(
        "pushed {target} as {pinned} ({} layers, {total} bytes) in {:.2?}",
        layers.len(),
        started.elapsed()
    );
    ctx.finish(
        "push-artifact",
        &message,
        &Outcome {
            digest: Some(digest),
            size: Some(total),
            reference: Some(pinned),
            ..Outcome::default()
        },
        None,
    )
}

/// The descriptor of the `--subject` manifest, which must exist.
async fn subject_descriptor(ctx: &Context, subject: &Target) -> Result<Descriptor> {
    let store = Store::for_reading(subject, &ctx.remote)?;
    store.subject_descriptor().await.map_err(|e| match e {
        Error::NotFound(why) => Error::NotFound(format!(
            "--subject {subject} does not exist ({why}); push the image first, or name one that exists"
        )),
        e => e,
    })
}

/// Uploads one blob, streamed from disk unless it is the empty config.
async fn upload(ctx: &Context, store: &Store, blob: &Blob) -> Result<()> {
    let progress = Progress::bytes(blob.desc.size, "uploading", ctx.progress);
    let source = match (&blob.content, blob.path()) {
        (Content::Bytes(b), _) => BlobSource::Bytes(Bytes::from_static(b)),
        (_, Some(path)) => BlobSource::File {
            path: path.to_path_buf(),
            progress: progress.clone(),
        },
        (_, None) => return Err(Error::Internal("blob without content".to_string())),
    };
    let uploaded = store.put_blob(&blob.desc, &source).await?.sent_bytes();
    progress.finish();
    let title = blob
        .desc
        .annotations
        .get(crate::oci::manifest::ANNOTATION_TITLE)
        .map(String::as_str)
        .unwrap_or("config");
    if uploaded {
        tracing::debug!(
            "{title}: uploaded {} ({} bytes)",
            blob.desc.digest,
            blob.desc.size
        );
    } else {
        tracing::info!(
            "{title}: {} already present, not uploaded again",
            blob.desc.digest
        );
    }
    Ok(())
}
