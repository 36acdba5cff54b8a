//! Pushing an image (or index) from one store to another, mutated on the
//! way. Blobs go first (skipped when present, mounted or streamed by
//! [`copy_blob`]), children before their index, the tagged manifest last.
//! Without mutations every manifest is pushed byte for byte.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::error::{Error, Result};
use crate::image::layer_time::{retimable, retime_layer, RetimedLayer};
use crate::image::mutate::Mutations;
use crate::image::source::Selection;
use crate::oci::attestation::is_attestation;
use crate::oci::digest::Digest;
use crate::oci::index::index_children;
use crate::oci::index::{self, IndexChild, IndexFormat};
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::progress::Progress;
use crate::store::copy::{copy_blob, CopyStats};
use crate::store::BlobSource;
use crate::store::Store;
use futures_util::{StreamExt, TryStreamExt};

/// The largest image config read to mutate it.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// What a push stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Digest of the tagged manifest.
    pub digest: Digest,
    /// The tagged manifest (or index) itself.
    pub manifest: FetchedManifest,
    /// Blobs uploaded (or mutated configs written).
    pub blobs_uploaded: u64,
    /// Blobs the target had already, or mounted.
    pub blobs_present: u64,
}

/// Running totals of the blobs moved.
#[derive(Debug, Default)]
struct Tally {
    uploaded: u64,
    present: u64,
}

impl Tally {
    fn add(&mut self, stats: CopyStats) {
        self.uploaded += stats.blobs_copied;
        self.present += stats.blobs_present + stats.blobs_mounted;
    }
}

/// Pushes `selection` from `src` to `dst` (under `dst`'s tag) with
/// `mutations` applied.
pub async fn push(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    mutations: &Mutations,
) -> Result<Pushed> {
    let mut tally = Tally::default();
    let (bytes, media_type) = match selection {
        Selection::Single(desc) => {
            let manifest = prepare(src, dst, desc, mutations, &mut tally).await?;
            (manifest.bytes, manifest.media_type)
        }
        Selection::Platforms(images) => {
            let mut children = Vec::with_capacity(images.len());
            for (platform, desc) in images {
                let manifest = prepare(src, dst, desc, mutations, &mut tally).await?;
                dst.put_manifest_by_digest(&manifest.bytes, &manifest.media_type)
                    .await?;
                children.push(IndexChild {
                    platform: platform.clone(),
                    descriptor: manifest.descriptor(),
                });
            }
            let format = IndexFormat::Oci;
            let bytes = index::build(&mut children, format, &mutations.annotations);
            (bytes, format.media_type().to_string())
        }
    };
    let digest = dst.put_manifest(&bytes, &media_type).await?;
    Ok(Pushed {
        digest,
        manifest: FetchedManifest::new(bytes, Some(media_type)),
        blobs_uploaded: tally.uploaded,
        blobs_present: tally.present,
    })
}

/// Copies what `desc` references to `dst` (children of an index are
/// stored there by digest) and returns the manifest, mutated, ready to be
/// stored itself.
fn prepare<'a>(
    src: &'a Store,
    dst: &'a Store,
    desc: &'a Descriptor,
    mutations: &'a Mutations,
    tally: &'a mut Tally,
) -> BoxFuture<'a, Result<FetchedManifest>> {
    async move {
        let manifest = fetch(src, desc).await?;
        if manifest.is_index() {
            prepare_index(src, dst, manifest, mutations, tally).await
        } else {
            prepare_image(src, dst, manifest, mutations, tally).await
        }
    }
    .boxed()
}

/// Reads a manifest, keeping the media type its descriptor declares.
async fn fetch(src: &Store, desc: &Descriptor) -> Result<FetchedManifest> {
    let fetched = src.get_child(desc).await?;
    Ok(FetchedManifest::new(
        fetched.bytes,
        Some(desc.media_type.clone()).filter(|m| !m.is_empty()),
    ))
}

async fn prepare_index(
    src: &Store,
    dst: &Store,
    manifest: FetchedManifest,
    mutations: &Mutations,
    tally: &mut Tally,
) -> Result<FetchedManifest> {
    let mut replaced = BTreeMap::new();
    let for_attestations = mutations.for_attestation();
    for child in index_children(&manifest)? {
        let applied = match is_attestation(&child) {
            true => &for_attestations,
            false => mutations,
        };
        let prepared = prepare(src, dst, &child, applied, tally).await?;
        dst.put_manifest_by_digest(&prepared.bytes, &prepared.media_type)
            .await?;
        replaced.insert(
            child.digest.clone(),
            (prepared.digest.clone(), prepared.bytes.len() as u64),
        );
    }
    if mutations.is_empty() {
        return Ok(manifest);
    }
    let bytes = mutations.apply_to_index(&manifest.bytes, &replaced)?;
    Ok(FetchedManifest::new(bytes, Some(manifest.media_type)))
}

/// How many layers are re-timed at the same time; each keeps every core
/// busy compressing.
const LAYERS_RETIMED_AT_ONCE: usize = 2;

async fn prepare_image(
    src: &Store,
    dst: &Store,
    manifest: FetchedManifest,
    mutations: &Mutations,
    tally: &mut Tally,
) -> Result<FetchedManifest> {
    let image = manifest.image_manifest()?;
    let placing: Vec<_> = image
        .layers
        .iter()
        .map(|layer| place_layer(src, dst, layer, mutations.created))
        .collect();
    let placed: Vec<(CopyStats, Option<RetimedLayer>)> = futures_util::stream::iter(placing)
        .buffered(match mutations.created {
            Some(_) => LAYERS_RETIMED_AT_ONCE,
            None => image.layers.len().max(1),
        })
        .try_collect()
        .await?;
    let mut layers = BTreeMap::new();
    let mut diff_ids = Vec::with_capacity(placed.len());
    for (layer, (copied, retimed)) in image.layers.iter().zip(placed) {
        tally.add(copied);
        diff_ids.push(retimed.as_ref().map(|r| r.diff_id.clone()));
        if let Some(retimed) = retimed {
            let new = (retimed.descriptor.parsed_digest()?, retimed.descriptor.size);
            layers.insert(layer.digest.clone(), new);
        }
    }
    if !mutations.changes_config() {
        tally.add(copy_blob(src, dst, &image.config).await?);
        if mutations.is_empty() {
            return Ok(manifest);
        }
        let bytes = mutations.apply_to_manifest(&manifest.bytes, None, &layers)?;
        return Ok(FetchedManifest::new(bytes, Some(manifest.media_type)));
    }
    let config = src.read_blob(&image.config, MAX_CONFIG_BYTES).await?;
    let config = mutations
        .apply_to_config(&config, &diff_ids)
        .map_err(|e| in_image(e, &manifest))?;
    let config_desc = Descriptor {
        digest: Digest::of(&config).to_string(),
        size: config.len() as u64,
        ..image.config.clone()
    };
    let config_digest = config_desc.parsed_digest()?;
    if dst
        .put_blob(&config_desc, &BlobSource::Bytes(Bytes::from(config)))
        .await?
        .sent_bytes()
    {
        tally.uploaded += 1;
    } else {
        tally.present += 1;
    }
    let bytes = mutations
        .apply_to_manifest(
            &manifest.bytes,
            Some((&config_digest, config_desc.size)),
            &layers,
        )
        .map_err(|e| in_image(e, &manifest))?;
    Ok(FetchedManifest::new(bytes, Some(manifest.media_type)))
}

/// Puts one layer into `dst`: as it is, or re-timed to `time` when that is
/// given and the layer is a tar (then the re-timed layer is returned too).
async fn place_layer(
    src: &Store,
    dst: &Store,
    layer: &Descriptor,
    time: Option<u64>,
) -> Result<(CopyStats, Option<RetimedLayer>)> {
    let compression = time.and_then(|_| retimable(&layer.media_type));
    let (Some(secs), Some(compression)) = (time, compression) else {
        if time.is_some() {
            tracing::info!(
                "layer {} ({}) is not a tar layer that may be rewritten: its times are left as they are",
                layer.digest,
                layer.media_type
            );
        }
        return Ok((copy_blob(src, dst, layer).await?, None));
    };
    let retimed = retime_layer(src, layer, compression, secs).await?;
    let source = BlobSource::File {
        path: retimed.file.path().to_path_buf(),
        progress: Progress::hidden(),
    };
    let placed = dst.put_blob(&retimed.descriptor, &source).await?;
    let stats = CopyStats::of_blob(placed, retimed.descriptor.size);
    Ok((stats, Some(retimed)))
}

/// Names the image a content error is about.
fn in_image(e: Error, manifest: &FetchedManifest) -> Error {
    match e {
        Error::BadContent(m) => Error::BadContent(format!("image {}: {m}", manifest.digest)),
        other => other,
    }
}
