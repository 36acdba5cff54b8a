//! Copying content between stores: blobs are skipped when present, mounted
//! within one registry (from the source, or from where the cache saw them),
//! otherwise streamed across as they are read (into a layout through a
//! spool file; never held in memory); manifests follow their blobs, index children before the index.
//! Blobs move in parallel, bounded by each registry's transfer slots.

use std::io::Write;
use std::sync::Arc;

use futures_util::future::{try_join_all, BoxFuture};
use futures_util::FutureExt;

use crate::error::{Error, Result};
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::progress::Progress;
use crate::registry::BlobSource;
use crate::store::remote::Placed;
use crate::store::Store;

/// What a copy moved, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Blobs already at the destination.
    pub blobs_present: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Blobs streamed across.
    pub blobs_copied: u64,
    /// Mounts the destination declined before a blob was streamed across.
    pub mounts_declined: u64,
    /// Bytes streamed across.
    pub bytes_copied: u64,
    /// Manifests stored.
    pub manifests: u64,
}

impl CopyStats {
    /// What putting one blob of `size` bytes moved, by how it was placed.
    pub fn of_blob(placed: Placed, size: u64) -> CopyStats {
        let mut stats = CopyStats::default();
        match placed {
            Placed::Present => stats.blobs_present = 1,
            Placed::Mounted => stats.blobs_mounted = 1,
            Placed::Uploaded { declined } => {
                stats.blobs_copied = 1;
                stats.bytes_copied = size;
                stats.mounts_declined = u64::from(declined);
            }
        }
        stats
    }

    fn add(&mut self, other: CopyStats) {
        self.blobs_present += other.blobs_present;
        self.blobs_mounted += other.blobs_mounted;
        self.blobs_copied += other.blobs_copied;
        self.mounts_declined += other.mounts_declined;
        self.bytes_copied += other.bytes_copied;
        self.manifests += other.manifests;
    }
}

/// Copies one blob from `src` to `dst` unless `dst` has it.
pub async fn copy_blob(src: &Store, dst: &Store, desc: &Descriptor) -> Result<CopyStats> {
    let _slots = dst.transfer_slots(src).await;
    let placed = match dst.same_repository(src) {
        true => Placed::Present,
        false => place_blob(src, dst, desc).await?,
    };
    Ok(CopyStats::of_blob(placed, desc.size))
}

/// Puts a blob of `src` into `dst`: into a registry, mounted from `src`
/// when both are on one registry (or from where the cache saw it there),
/// else streamed across as it is read, verified on the way; into a layout,
/// through a spool file.
async fn place_blob(src: &Store, dst: &Store, desc: &Descriptor) -> Result<Placed> {
    match dst {
        Store::Registry { remote, image } => {
            let from = match src {
                Store::Registry { image: s, .. } if s.registry == image.registry => {
                    Some(s.repository.as_str())
                }
                _ => None,
            };
            let (src, desc_owned) = (src.clone(), desc.clone());
            let source = BlobSource::stream(Arc::new(move || src.verified_chunks(&desc_owned)));
            remote.put_blob(image, desc, &source, from).await
        }
        Store::Layout { .. } => {
            if dst.has_blob(&desc.parsed_digest()?).await? {
                return Ok(Placed::Present);
            }
            let spool = src
                .retry_policy()
                .restarting(|_| spool_blob(src, desc))
                .await?;
            let source = BlobSource::File {
                path: spool.path().to_path_buf(),
                progress: Progress::hidden(),
            };
            dst.put_blob(desc, &source).await
        }
    }
}

/// Downloads a blob into a temporary file, verified against its digest.
async fn spool_blob(src: &Store, desc: &Descriptor) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("creating a spool file in", std::env::temp_dir(), e))?;
    let mut writer = file
        .reopen()
        .map_err(|e| Error::io("opening", file.path(), e))?;
    let path = file.path().to_path_buf();
    src.stream_blob(desc, move |reader| {
        std::io::copy(reader, &mut writer).map_err(|e| Error::io("spooling blob to", &path, e))?;
        writer
            .flush()
            .map_err(|e| Error::io("spooling blob to", &path, e))
    })
    .await?;
    Ok(file)
}

/// Copies a manifest with everything it references to `dst` and stores it
/// there by digest. Children of an index are copied first.
pub fn copy_manifest<'a>(
    src: &'a Store,
    dst: &'a Store,
    manifest: &'a FetchedManifest,
) -> BoxFuture<'a, Result<CopyStats>> {
    async move {
        let Some(mut stats) = copy_references(src, dst, manifest).await? else {
            return Ok(CopyStats::default());
        };
        dst.put_manifest_by_digest(&manifest.bytes, &manifest.media_type)
            .await?;
        stats.manifests += 1;
        Ok(stats)
    }
    .boxed()
}

/// Copies everything `manifest` references to `dst` (an index's children
/// with theirs, an image's config and layers), but not the manifest
/// itself: the caller stores it, by digest or under a tag. `None` when
/// `dst` holds the manifest already, and with it everything it references.
pub async fn copy_references(
    src: &Store,
    dst: &Store,
    manifest: &FetchedManifest,
) -> Result<Option<CopyStats>> {
    if dst.same_repository(src) || dst.has_manifest(&manifest.digest).await? {
        return Ok(None);
    }
    // Children and blobs move side by side, as many at a time as the
    // registries' transfer slots allow; the first failure stops the rest.
    let parts = if manifest.is_index() {
        try_join_all(
            crate::oci::index::index_children(manifest)?
                .into_iter()
                .map(|child| async move {
                    let child_manifest = src.get_child(&child).await?;
                    copy_manifest(src, dst, &child_manifest).await
                }),
        )
        .await?
    } else {
        let image = manifest.image_manifest()?;
        try_join_all(
            std::iter::once(&image.config)
                .chain(image.layers.iter())
                .map(|desc| copy_blob(src, dst, desc)),
        )
        .await?
    };
    let mut stats = CopyStats::default();
    for part in parts {
        stats.add(part);
    }
    Ok(Some(stats))
}
