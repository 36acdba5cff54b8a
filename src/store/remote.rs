//! The registry side of a run's stores: one client for every registry, and
//! the cache in front of it, which answers what it can: manifests by digest
//! and verified blobs always, tags too with `--offline`, when the registry
//! may not be asked at all.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::oci::reference::ImageRef;
use crate::registry::RegistryClient;
use crate::store::blob_stream::BlobStream;
use crate::store::cache::{BlobWriter, Cache};

/// The registry client of one run, with the cache (`--cache-dir`) in front.
#[derive(Clone)]
pub struct Remote {
    /// The client for every registry the run talks to.
    pub client: Arc<RegistryClient>,
    /// The cache, when `--cache-dir` is set.
    pub cache: Option<Arc<Cache>>,
}

impl Remote {
    /// A client with the cache (if any) in front of it.
    pub fn new(client: RegistryClient, cache: Option<Cache>) -> Self {
        Remote {
            client: Arc::new(client),
            cache: cache.map(Arc::new),
        }
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
        let entry = cache.blob_writer(digest);
        Ok((
            BlobStream::Http(self.client.get_blob(image, digest).await?),
            entry,
        ))
    }
}
