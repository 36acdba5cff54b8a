//! Where images are read from and written to: a registry repository or an
//! OCI layout on disk. Modes talk to a [`Store`] and work the same on both.

pub mod cache;
pub mod copy;
pub mod layout;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::oci::digest::{self, Digest, StreamHasher};
use crate::oci::index;
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::oci::platform::Platform;
use crate::oci::reference::{ImageRef, LayoutRef, Target};
use crate::registry::{BlobSource, RegistryClient};
use crate::store::cache::BlobWriter;
use crate::store::layout::Layout;

/// A registry repository or a layout, with the reference the user gave.
pub enum Store {
    /// A registry repository.
    Registry {
        /// The shared client.
        client: Arc<RegistryClient>,
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
    pub fn for_writing(target: &Target, client: &Arc<RegistryClient>) -> Result<Self> {
        Self::open(target, client, true)
    }

    /// A store to read from: layouts must exist.
    pub fn for_reading(target: &Target, client: &Arc<RegistryClient>) -> Result<Self> {
        Self::open(target, client, false)
    }

    fn open(target: &Target, client: &Arc<RegistryClient>, create: bool) -> Result<Self> {
        Ok(match target {
            Target::Registry(image) => Store::Registry {
                client: client.clone(),
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
            Store::Registry { client, .. } => client.retry_policy(),
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

    /// Stores a blob unless it is there already; true when bytes were written.
    pub async fn put_blob(&self, desc: &Descriptor, source: &BlobSource) -> Result<bool> {
        let digest = desc.parsed_digest()?;
        match self {
            Store::Registry { client, image } => {
                client.upload_blob(image, &digest, desc.size, source).await
            }
            Store::Layout { layout, .. } => {
                if layout.has_blob(&digest) {
                    return Ok(false);
                }
                match source {
                    BlobSource::Bytes(b) => layout.put_blob_bytes(&digest, b)?,
                    BlobSource::File { path, .. } => layout.put_blob_file(&digest, path)?,
                }
                Ok(true)
            }
        }
    }

    /// Stores a manifest, under the reference's tag when it has one, and
    /// returns its digest. Blobs must be stored first, so a tag never points
    /// at missing content.
    pub async fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = Digest::of(bytes);
        match self {
            Store::Registry { client, image } => {
                let reference = image.tag.clone().unwrap_or_else(|| digest.to_string());
                client
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
            Store::Registry { client, image } => {
                client
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
            Store::Registry { client, image } => client.manifest_exists(image, digest).await,
            Store::Layout { layout, .. } => Ok(layout.has_blob(digest)),
        }
    }

    /// True when the store has the blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self {
            Store::Registry { client, image } => client.blob_exists(image, digest).await,
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
        if let Store::Registry { client, image } = src {
            slots.push(client.transfer_slot(image).await);
        }
        if let Store::Registry { client, image } = self {
            let shared =
                matches!(src, Store::Registry { image: s, .. } if s.api_host() == image.api_host());
            if !shared {
                slots.push(client.transfer_slot(image).await);
            }
        }
        slots
    }

    /// Mounts a blob from `from` when both are repositories of one registry;
    /// false when that is not possible or the registry declined.
    pub async fn mount_blob_from(&self, from: &Store, digest: &Digest) -> Result<bool> {
        match (self, from) {
            (Store::Registry { client, image }, Store::Registry { image: src, .. })
                if image.registry == src.registry =>
            {
                client.mount_blob(image, digest, &src.repository).await
            }
            _ => Ok(false),
        }
    }

    /// Fetches and verifies the manifest with `digest` in this repository.
    pub async fn get_manifest_by_digest(&self, digest: &Digest) -> Result<FetchedManifest> {
        match self {
            Store::Registry { client, image } => {
                let pinned = ImageRef {
                    tag: None,
                    digest: Some(digest.clone()),
                    ..image.clone()
                };
                client.get_manifest(&pinned).await
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
            Store::Registry { client, image } => client.get_manifest(image).await,
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
            Store::Registry { client, image } => client.delete_manifest(image, digest).await,
            Store::Layout { layout, .. } => layout.remove_manifest(digest),
        }
    }

    /// [`Store::stream_blob`], started over after a transfer cut short while
    /// attempts remain (the retry policy's restarts): `attempt` makes each
    /// try's consumer, given the try's number from 1, after undoing what an
    /// earlier try left behind.
    pub async fn stream_blob_restarting<T, F, C>(
        &self,
        desc: &Descriptor,
        mut attempt: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(u32) -> Result<C>,
        C: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
    {
        self.retry_policy()
            .restarting(|n| {
                let consume = attempt(n);
                async move { self.stream_blob(desc, consume?).await }
            })
            .await
    }

    /// Streams a blob into `consume` (run on a blocking thread) while hashing
    /// it. The digest and size are checked when the stream ends; a mismatch
    /// wins over whatever `consume` returned, since its input was not genuine.
    pub async fn stream_blob<T, F>(&self, desc: &Descriptor, consume: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
    {
        let digest = desc.parsed_digest()?;
        let (mut source, mut cache_entry) = self.open_blob(desc, &digest).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(32);
        let consumer = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            consume(&mut reader)
        });
        let mut hasher = StreamHasher::default();
        let mut received = 0u64;
        let mut consumer_open = true;
        let what = format!("blob {digest}");
        let network = loop {
            match source.next_chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > desc.size {
                        break Err(Error::DigestMismatch {
                            what: format!("{what} (size)"),
                            expected: format!("{} bytes", desc.size),
                            actual: format!("more than {} bytes", desc.size),
                        });
                    }
                    hasher.update(&chunk);
                    if let Some(entry) = cache_entry.as_mut() {
                        entry.write(&chunk);
                    }
                    if consumer_open && tx.send(Ok(chunk)).await.is_err() {
                        consumer_open = false;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if network.is_err() {
            let _ = tx
                .send(Err(std::io::Error::other("download interrupted")))
                .await;
        }
        drop(tx);
        let consumed = consumer
            .await
            .map_err(|e| Error::Internal(format!("extraction thread failed: {e}")))?;
        network?;
        let (actual, size) = hasher.finish();
        digest::verify(&what, &digest, Some(desc.size), &actual, size)?;
        if let Some(entry) = cache_entry {
            entry.commit();
        }
        consumed
    }

    /// Opens a blob: from the cache when it holds a verified copy, else from
    /// the registry (with a cache entry to fill), or from the layout.
    async fn open_blob(
        &self,
        desc: &Descriptor,
        digest: &Digest,
    ) -> Result<(BlobStream, Option<BlobWriter>)> {
        match self {
            Store::Registry { client, image } => {
                let Some(cache) = client.cache() else {
                    return Ok((
                        BlobStream::Http(client.get_blob(image, digest).await?),
                        None,
                    ));
                };
                if let Some(path) = cache.verified_blob(desc)? {
                    tracing::debug!("blob {digest} from the cache");
                    return Ok((BlobStream::File(open_file(&path, digest).await?), None));
                }
                let entry = cache.blob_writer(digest);
                Ok((
                    BlobStream::Http(client.get_blob(image, digest).await?),
                    entry,
                ))
            }
            Store::Layout { layout, .. } => Ok((
                BlobStream::File(open_file(&layout.blob_path(digest), digest).await?),
                None,
            )),
        }
    }
}

async fn open_file(
    path: &std::path::Path,
    digest: &Digest,
) -> Result<tokio_util::io::ReaderStream<tokio::fs::File>> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("blob {digest} is missing ({})", path.display()))
            }
            _ => Error::io("opening", path, e),
        })?;
    Ok(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ))
}

/// The bytes of one blob as they arrive.
enum BlobStream {
    Http(reqwest::Response),
    File(tokio_util::io::ReaderStream<tokio::fs::File>),
}

impl BlobStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        use futures_util::StreamExt;
        match self {
            BlobStream::Http(resp) => resp.chunk().await.map_err(|e| {
                Error::Interrupted(format!(
                    "download interrupted: {}",
                    crate::registry::error_chain::error_chain(&e)
                ))
            }),
            BlobStream::File(s) => s
                .next()
                .await
                .transpose()
                .map_err(|e| Error::io("reading blob", "layout", e)),
        }
    }
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
