//! A content-addressed cache of pulled manifests and blobs, kept as an OCI
//! image layout (`--cache-dir`, `OCISTEP_CACHE_DIR`) and shared between
//! runs and modes.
//!
//! Entries are written to a temporary file and renamed into place, so
//! concurrent runs never see partial content, with the mode the umask
//! allows, so runs as other users can read them; tags are recorded under
//! the layout's lock, so concurrent runs keep every one. Every entry is
//! verified before use, and a corrupted one is removed and fetched again.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::fingerprint::PackedRecord;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::{Descriptor, FetchedManifest};
use crate::shared_file;

/// The cache directory and whether tags may be resolved from it alone.
#[derive(Debug, Clone)]
pub struct Cache {
    layout: Layout,
    offline: bool,
}

impl Cache {
    /// Opens (or creates) the cache at `dir`.
    pub fn open(dir: &Path, offline: bool) -> Result<Self> {
        Ok(Cache {
            layout: Layout::open_or_create(dir)?,
            offline,
        })
    }

    /// True when tags are resolved from the cache instead of the registry.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// A cached manifest, verified; a corrupted entry is removed.
    pub fn manifest(&self, digest: &Digest) -> Option<FetchedManifest> {
        let bytes = std::fs::read(self.layout.blob_path(digest)).ok()?;
        if &Digest::of(&bytes) != digest {
            self.evict(digest);
            return None;
        }
        Some(FetchedManifest::new(bytes, None))
    }

    /// The manifest last seen for `reference` (`registry/repo:tag`).
    pub fn manifest_for_tag(&self, reference: &str) -> Option<FetchedManifest> {
        let desc = self.layout.resolve(Some(reference), None).ok()?;
        let mut fetched = self.manifest(&desc.parsed_digest().ok()?)?;
        fetched.media_type = desc.media_type;
        Some(fetched)
    }

    /// Stores a manifest, and remembers it for `tag_reference` when given.
    pub fn put_manifest(
        &self,
        fetched: &FetchedManifest,
        tag_reference: Option<&str>,
    ) -> Result<()> {
        self.layout
            .put_blob_bytes(&fetched.digest, &fetched.bytes)?;
        if let Some(reference) = tag_reference {
            self.layout.set_tag(reference, fetched.descriptor())?;
        }
        Ok(())
    }

    /// The path of a cached blob whose content matches `desc`, checked now;
    /// a corrupted or wrong-sized entry is removed and `None` returned.
    pub fn verified_blob(&self, desc: &Descriptor) -> Option<PathBuf> {
        let digest = desc.parsed_digest().ok()?;
        let path = self.layout.blob_path(&digest);
        let file = std::fs::File::open(&path).ok()?;
        match HashingReader::new(std::io::BufReader::with_capacity(256 * 1024, file))
            .drain_and_finish()
        {
            Ok((actual, size)) if actual == digest && size == desc.size => Some(path),
            _ => {
                tracing::warn!("cached blob {digest} is corrupted; fetching it again");
                self.evict(&digest);
                None
            }
        }
    }

    /// A writer for a blob being downloaded; [`BlobWriter::commit`] makes it
    /// visible once its digest has been verified.
    pub fn blob_writer(&self, digest: &Digest) -> Result<BlobWriter> {
        let dest = self.layout.blob_path(digest);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = shared_file::temp_file_in(&dir)?;
        Ok(BlobWriter { file, dest })
    }

    /// The layer a tree with this fingerprint packed to before.
    pub fn packed_layer(&self, fingerprint: &Digest) -> Option<PackedRecord> {
        let bytes = std::fs::read(self.packed_path(fingerprint)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers what a tree with this fingerprint packed to.
    pub fn remember_packed(&self, fingerprint: &Digest, record: &PackedRecord) -> Result<()> {
        let path = self.packed_path(fingerprint);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Internal(e.to_string()))?;
        shared_file::write_atomic(&path, &bytes)
    }

    fn packed_path(&self, fingerprint: &Digest) -> PathBuf {
        self.layout
            .root()
            .join("ocistep-packed")
            .join(format!("{}.json", fingerprint.hex()))
    }

    fn evict(&self, digest: &Digest) {
        let _ = std::fs::remove_file(self.layout.blob_path(digest));
    }
}

/// A blob on its way into the cache.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl BlobWriter {
    /// Appends a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file
            .write_all(chunk)
            .map_err(|e| Error::io("writing cache entry", self.file.path(), e))
    }

    /// Renames the verified blob into place (another run may have won the race: fine).
    pub fn commit(self) -> Result<()> {
        self.file
            .persist(&self.dest)
            .map_err(|e| Error::io("storing cache entry", &self.dest, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OCI_LAYER_GZIP;

    #[test]
    fn corrupted_entries_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), false).unwrap();
        let data = b"blob content";
        let digest = Digest::of(data);
        let mut w = cache.blob_writer(&digest).unwrap();
        w.write(data).unwrap();
        w.commit().unwrap();
        let desc = Descriptor::new(OCI_LAYER_GZIP, &digest, data.len() as u64);
        assert!(cache.verified_blob(&desc).is_some());
        std::fs::write(cache.layout.blob_path(&digest), b"blob c0ntent").unwrap();
        assert!(cache.verified_blob(&desc).is_none());
        assert!(!cache.layout.blob_path(&digest).exists());
    }

    #[test]
    fn manifests_by_digest_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), true).unwrap();
        let m = FetchedManifest::new(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
            None,
        );
        cache.put_manifest(&m, Some("reg.example/app:v1")).unwrap();
        assert_eq!(cache.manifest(&m.digest).unwrap().bytes, m.bytes);
        assert_eq!(
            cache.manifest_for_tag("reg.example/app:v1").unwrap().digest,
            m.digest
        );
        assert!(cache.manifest_for_tag("reg.example/app:v2").is_none());
    }
}
