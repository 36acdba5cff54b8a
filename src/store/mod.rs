//! Where images are read from and written to: a registry repository or an
//! OCI layout on disk. Modes talk to a [`Store`] and work the same on both.

mod blob_stream;
pub mod cache;
pub mod copy;
pub mod layout;
pub mod locations;
mod referrers;
pub mod remote;
mod streamed;

use crate::error::{Error, Result};
use crate::oci::digest::{self, Digest};
use crate::oci::index;
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::oci::platform::Platform;
use crate::oci::reference::{ImageRef, LayoutRef, Target};
pub use crate::registry::BlobSource;
use crate::store::layout::Layout;
use crate::store::remote::{Placed, Remote};

/// A registry repository or a layout, with the reference the user gave.
#[derive(Clone)]
pub enum Store {
    /// A registry repository.
    Registry {
        /// The run's client, with the cache in front.
        remote: Remote,
        /// The reference.
        image: ImageRef,
    },
    /// An OCI image layout.
    Layout {
        /// The layout.
        layout: Layout,
        /// The reference.
        reference: LayoutRef,
    },
}

impl Store {
    /// A store to write to: layouts are created when missing.
    pub fn for_writing(target: &Target, remote: &Remote) -> Result<Self> {
        Self::open(target, remote, true)
    }

    /// A store to read from: layouts must exist.
    pub fn for_reading(target: &Target, remote: &Remote) -> Result<Self> {
        Self::open(target, remote, false)
    }

    fn open(target: &Target, remote: &Remote, create: bool) -> Result<Self> {
        Ok(match target {
            Target::Registry(image) => Store::Registry {
                remote: remote.clone(),
                image: image.clone(),
            },
            Target::Layout(reference) => Store::Layout {
                layout: if create {
                    Layout::open_or_create(&reference.path)?
                } else {
                    Layout::open(&reference.path)?
                },
                reference: reference.clone(),
            },
        })
    }

    /// The retry policy for transfers from this store (layouts: one attempt).
    pub fn retry_policy(&self) -> crate::registry::retry::RetryPolicy {
        match self {
            Store::Registry { remote, .. } => remote.client.retry_policy(),
            Store::Layout { .. } => crate::registry::retry::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
        }
    }

    /// The tag the reference names, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Store::Registry { image, .. } => image.tag.as_deref(),
            Store::Layout { reference, .. } => reference.tag.as_deref(),
        }
    }

    /// `name@digest` for result files: `registry/repo@sha256:…` or `oci:PATH@sha256:…`.
    pub fn pinned(&self, digest: &Digest) -> String {
        match self {
            Store::Registry { image, .. } => image.with_digest(digest),
            Store::Layout { reference, .. } => format!("oci:{}@{digest}", reference.path.display()),
        }
    }

    /// Stores a blob unless it is there already (a registry mounts it
    /// instead when it knows a repository there that holds it).
    pub async fn put_blob(&self, desc: &Descriptor, source: &BlobSource) -> Result<Placed> {
        match self {
            Store::Registry { remote, image } => remote.put_blob(image, desc, source, None).await,
            Store::Layout { layout, .. } => {
                let digest = desc.parsed_digest()?;
                if layout.has_blob(&digest) {
                    return Ok(Placed::Present);
                }
                match source {
                    BlobSource::Bytes(b) => layout.put_blob_bytes(&digest, b)?,
                    BlobSource::File { path, .. } => layout.put_blob_file(&digest, path)?,
                    BlobSource::Stream { .. } => {
                        return Err(Error::Internal(
                            "a layout takes blobs from memory or a file".to_string(),
                        ))
                    }
                }
                Ok(Placed::Uploaded { declined: 0 })
            }
        }
    }

    /// Stores a manifest, under the reference's tag when it has one, and
    /// returns its digest. Blobs must be stored first, so a tag never points
    /// at missing content.
    pub async fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = Digest::of(bytes);
        match self {
            Store::Registry { remote, image } => {
                let reference = image.tag.clone().unwrap_or_else(|| digest.to_string());
                remote
                    .put_manifest(image, &reference, bytes, media_type)
                    .await
            }
            Store::Layout { layout, reference } => {
                layout.put_blob_bytes(&digest, bytes)?;
                if let Some(tag) = &reference.tag {
                    layout.set_tag(
                        tag,
                        Descriptor::new(media_type, &digest, bytes.len() as u64),
                    )?;
                }
                Ok(digest)
            }
        }
    }

    /// Stores a manifest by digest only (children of an index).
    pub async fn put_manifest_by_digest(&self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = Digest::of(bytes);
        match self {
            Store::Registry { remote, image } => {
                remote
                    .put_manifest(image, digest.as_str(), bytes, media_type)
                    .await
            }
            Store::Layout { layout, .. } => {
                layout.put_blob_bytes(&digest, bytes)?;
                Ok(digest)
            }
        }
    }

    /// True when the store has the manifest with `digest`.
    pub async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        match self {
            Store::Registry { remote, image } => match remote.known_to_hold(image, digest) {
                Some(known) => Ok(known),
                None => remote.client.manifest_exists(image, digest).await,
            },
            Store::Layout { layout, .. } => Ok(layout.has_blob(digest)),
        }
    }

    /// True when the store has the blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self {
            Store::Registry { remote, image } => {
                let present = remote.client.blob_exists(image, digest).await?;
                if present {
                    remote.remember(image, digest);
                }
                Ok(present)
            }
            Store::Layout { layout, .. } => Ok(layout.has_blob(digest)),
        }
    }

    /// True when both name the same repository (or the same layout), so
    /// content in one is already in the other.
    pub fn same_repository(&self, other: &Store) -> bool {
        match (self, other) {
            (Store::Registry { image: a, .. }, Store::Registry { image: b, .. }) => {
                a.name() == b.name()
            }
            (Store::Layout { reference: a, .. }, Store::Layout { reference: b, .. }) => {
                a.path == b.path
            }
            _ => false,
        }
    }

    /// Slots for moving one blob from `src` to this store: one per registry
    /// involved, none for layouts.
    /// Always taken source first, and a run writes to one destination, so
    /// two transfers never wait on each other's slots.
    pub async fn transfer_slots(&self, src: &Store) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let mut slots = Vec::new();
        if let Store::Registry { remote, image } = src {
            slots.push(remote.client.transfer_slot(image).await);
        }
        if let Store::Registry { remote, image } = self {
            let shared =
                matches!(src, Store::Registry { image: s, .. } if s.api_host() == image.api_host());
            if !shared {
                slots.push(remote.client.transfer_slot(image).await);
            }
        }
        slots
    }

    /// Fetches and verifies the manifest with `digest` in this repository.
    pub async fn get_manifest_by_digest(&self, digest: &Digest) -> Result<FetchedManifest> {
        match self {
            Store::Registry { remote, image } => {
                let pinned = ImageRef {
                    tag: None,
                    digest: Some(digest.clone()),
                    ..image.clone()
                };
                remote.get_manifest(&pinned).await
            }
            Store::Layout { layout, .. } => {
                let desc = layout.resolve(None, Some(digest))?;
                layout.read_manifest(&desc)
            }
        }
    }

    /// Fetches the manifest an index entry names, checked against the
    /// entry's digest and size.
    pub async fn get_child(&self, desc: &Descriptor) -> Result<FetchedManifest> {
        let fetched = self.get_manifest_by_digest(&desc.parsed_digest()?).await?;
        digest::verify(
            &format!("manifest {}", desc.digest),
            &fetched.digest,
            Some(desc.size),
            &fetched.digest,
            fetched.bytes.len() as u64,
        )?;
        Ok(fetched)
    }

    /// Reads a small blob (a config) into memory, verified, refusing more than `limit` bytes.
    pub async fn read_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        if desc.size > limit {
            return Err(Error::BadContent(format!(
                "blob {} is {} bytes, more than the {limit} expected",
                desc.digest, desc.size
            )));
        }
        self.retry_policy()
            .restarting(|_| {
                self.stream_blob(desc, |reader| {
                    let mut out = Vec::new();
                    reader
                        .read_to_end(&mut out)
                        .map_err(|e| Error::Interrupted(format!("reading blob: {e}")))?;
                    Ok(out)
                })
            })
            .await
    }

    /// Fetches and verifies the manifest the reference names.
    pub async fn get_manifest(&self) -> Result<FetchedManifest> {
        match self {
            Store::Registry { remote, image } => remote.get_manifest(image).await,
            Store::Layout { layout, reference } => {
                let desc = layout.resolve(reference.tag.as_deref(), reference.digest.as_ref())?;
                layout.read_manifest(&desc)
            }
        }
    }

    /// For an index, fetches the child that best matches `platform`
    /// (containerd's fallbacks); a single manifest is returned as is.
    pub async fn resolve_platform(
        &self,
        fetched: FetchedManifest,
        platform: &Platform,
    ) -> Result<FetchedManifest> {
        if !fetched.is_index() {
            return Ok(fetched);
        }
        let children = crate::oci::index::index_children(&fetched)?;
        match platform.select(&children, index::child_platform) {
            Some(child) => self.get_child(child).await,
            None => {
                let available: Vec<String> = children
                    .iter()
                    .filter_map(index::child_platform)
                    .map(|p| p.to_string())
                    .collect();
                Err(Error::PlatformNotFound(format!(
                    "index {} has no image for {}; it has: {}; choose one with --platform",
                    fetched.digest,
                    platform.short(),
                    if available.is_empty() {
                        "no platform entries".to_string()
                    } else {
                        available.join(", ")
                    }
                )))
            }
        }
    }

    /// Deletes a manifest (registry) or its index entry (layout).
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        match self {
            Store::Registry { remote, image } => remote.client.delete_manifest(image, digest).await,
            Store::Layout { layout, .. } => layout.remove_manifest(digest),
        }
    }
}
