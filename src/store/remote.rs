//! The registry side of a run's stores: one client for every registry, and
//! the cache in front of it, which answers what it can: manifests by digest
//! and verified blobs always, tags too with `--offline`, when the registry
//! may not be asked at all.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::oci::reference::{ImageRef, Target};
use crate::registry::BlobSource;
use crate::registry::RegistryClient;
use crate::store::blob_stream::BlobStream;
use crate::store::cache::{BlobWriter, Cache};

/// The most mounts tried for one blob before it is uploaded.
const MAX_MOUNT_TRIES: usize = 3;

/// How a blob came to be in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// It was there already.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Its bytes were sent, after this many mounts were declined.
    Uploaded {
        /// Mounts tried first and declined.
        declined: u32,
    },
}

impl Placed {
    /// True when the blob's bytes were sent.
    pub fn sent_bytes(self) -> bool {
        matches!(self, Placed::Uploaded { .. })
    }
}

/// The registry client of one run, with the cache (`--cache-dir`) in front.
#[derive(Clone)]
pub struct Remote {
    /// The client for every registry the run talks to.
    pub client: Arc<RegistryClient>,
    /// The cache, when `--cache-dir` is set.
    pub cache: Option<Arc<Cache>>,
    /// What this run learnt about the repositories it writes to.
    written: Arc<Mutex<Written>>,
}

/// What a run learnt about the repositories it writes to.
#[derive(Default)]
struct Written {
    /// Repositories (`registry/repository`) that did not exist when the run
    /// began writing to them: they hold only the blobs the run put there.
    new: HashSet<String>,
    /// Blobs and manifests the run put into each repository, by
    /// `registry/repository`.
    placed: HashSet<(String, Digest)>,
}

impl Remote {
    /// A client with the cache (if any) in front of it.
    pub fn new(client: RegistryClient, cache: Option<Cache>) -> Self {
        Remote {
            client: Arc::new(client),
            cache: cache.map(Arc::new),
            written: Arc::default(),
        }
    }

    /// Asks whether the repository `target` names exists yet (nothing for
    /// a layout): if not, blobs and manifests put there later in the run are
    /// sent without first asking whether the repository has them (it has
    /// only those the run put there). Only a saving: a registry that does
    /// not answer is asked again when the run writes to it, and that
    /// request's error is the one reported.
    pub async fn learn_if_new(&self, target: &Target) {
        let Target::Registry(image) = target else {
            return;
        };
        match self.client.repository_is_new(image).await {
            Ok(true) => {
                tracing::debug!("{} is a new repository", image.name());
                self.written().new.insert(image.name());
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("not known whether {} is new: {e}", image.name()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the run put `digest` (a blob or a manifest) into
    /// `image`'s repository.
    pub(super) fn record_placed(&self, image: &ImageRef, digest: &Digest) {
        self.written().placed.insert((image.name(), digest.clone()));
    }

    /// True when the repository holds the blob or manifest, as far as this
    /// run knows without asking: `Some(false)` in a new repository the run did not
    /// put it into, `Some(true)` when the run put it there.
    pub(super) fn known_to_hold(&self, image: &ImageRef, digest: &Digest) -> Option<bool> {
        let written = self.written();
        let name = image.name();
        if written.placed.contains(&(name.clone(), digest.clone())) {
            return Some(true);
        }
        written.new.contains(&name).then_some(false)
    }

    /// Fetches the manifest `image` names (by digest if it has one, else by
    /// tag), verified: from the cache when it can answer, else from the
    /// registry, remembering it (and the tag) in the cache.
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<FetchedManifest> {
        if let Some(cached) = self.cached_manifest(image)? {
            return Ok(cached);
        }
        let fetched = self.client.get_manifest(image).await?;
        if let Some(cache) = &self.cache {
            cache.put_manifest(
                &fetched,
                image.digest.is_none().then(|| image.to_string()).as_deref(),
            );
        }
        Ok(fetched)
    }

    /// A manifest the cache can answer for: by digest always, by tag only
    /// with `--offline` (then a miss is an error).
    fn cached_manifest(&self, image: &ImageRef) -> Result<Option<FetchedManifest>> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        if let Some(digest) = &image.digest {
            return cache.manifest_by_digest(digest, &image.to_string());
        }
        if !cache.offline() {
            return Ok(None);
        }
        cache.manifest_for_tag(&image.to_string()).map(Some).ok_or_else(|| {
            Error::NotFound(format!(
                "{image} is not in the cache and --offline forbids asking the registry; pull it once without --offline"
            ))
        })
    }

    /// Puts a blob into `image`'s repository: nothing when it is there
    /// already; else a mount from `from` (a repository of the same registry
    /// that holds it) or from where the cache saw it on this registry; else
    /// an upload from `source`. The cache remembers where it now is.
    pub async fn put_blob(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        source: &BlobSource,
        from: Option<&str>,
    ) -> Result<Placed> {
        let digest = desc.parsed_digest()?;
        let placed = self.place(image, &digest, desc.size, source, from).await?;
        self.remember(image, &digest);
        self.record_placed(image, &digest);
        Ok(placed)
    }

    async fn place(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        from: Option<&str>,
    ) -> Result<Placed> {
        let present = match self.known_to_hold(image, digest) {
            Some(known) => known,
            None => self.client.blob_exists(image, digest).await?,
        };
        if present {
            tracing::debug!("blob {digest} already in {}, not uploading", image.name());
            return Ok(Placed::Present);
        }
        let mut declined = 0;
        for repository in self.mount_candidates(image, digest, from) {
            if self.client.mount_blob(image, digest, &repository).await? {
                return Ok(Placed::Mounted);
            }
            declined += 1;
        }
        self.client.upload_blob(image, digest, size, source).await?;
        Ok(Placed::Uploaded { declined })
    }

    /// Pushes a manifest under `reference` (a tag or its digest), noting
    /// that the repository now holds it.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let digest = self
            .client
            .put_manifest(image, reference, bytes, media_type)
            .await?;
        self.record_placed(image, &digest);
        Ok(digest)
    }

    /// Repositories of `image`'s registry to mount `digest` from: `from`
    /// first, then those the cache saw it in, newest first.
    fn mount_candidates(
        &self,
        image: &ImageRef,
        digest: &Digest,
        from: Option<&str>,
    ) -> Vec<String> {
        let known = self
            .cache
            .iter()
            .flat_map(|cache| cache.locations().of(digest))
            .filter(|l| l.registry == image.registry)
            .map(|l| l.repository);
        let mut candidates: Vec<String> = Vec::new();
        for repository in from.map(str::to_string).into_iter().chain(known) {
            if repository != image.repository && !candidates.contains(&repository) {
                candidates.push(repository);
            }
        }
        candidates.truncate(MAX_MOUNT_TRIES);
        candidates
    }

    /// Records in the cache (if any) that `image`'s repository holds `digest`.
    pub fn remember(&self, image: &ImageRef, digest: &Digest) {
        if let Some(cache) = &self.cache {
            cache.remember_location(digest, &image.registry, &image.repository);
        }
    }

    /// Opens a blob of `image`: from the cache when it holds a verified
    /// copy, else from the registry, with a cache entry to fill as it
    /// arrives.
    pub(super) async fn open_blob(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        digest: &Digest,
    ) -> Result<(BlobStream, Option<BlobWriter>)> {
        let Some(cache) = &self.cache else {
            return Ok((
                BlobStream::Http(self.client.get_blob(image, digest).await?),
                None,
            ));
        };
        if let Some(path) = cache.verified_blob(desc)? {
            tracing::debug!("blob {digest} from the cache");
            return Ok((BlobStream::open_file(&path, digest).await?, None));
        }
        let response = self.client.get_blob(image, digest).await?;
        self.remember(image, digest);
        Ok((BlobStream::Http(response), cache.blob_writer(digest)))
    }
}
