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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::digest::{Digest, HashingReader};
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::shared_file;
use crate::store::layout::Layout;
use crate::store::locations::Locations;

/// The layer a tree packed to, remembered under the tree's fingerprint
/// (what the tree looked like: paths, sizes, inodes and times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedRecord {
    /// Digest of the compressed layer.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Entries packed.
    pub entries: u64,
}

/// The cache directory and whether tags may be resolved from it alone.
#[derive(Debug, Clone)]
pub struct Cache {
    layout: Layout,
    locations: Locations,
    offline: bool,
}

impl Cache {
    /// Opens (or creates) the cache at `dir`.
    pub fn open(dir: &Path, offline: bool) -> Result<Self> {
        Ok(Cache {
            layout: Layout::open_or_create(dir)?,
            locations: Locations::new(dir),
            offline,
        })
    }

    /// Where blobs were seen.
    pub fn locations(&self) -> &Locations {
        &self.locations
    }

    /// Records that `registry/repository` holds `digest`; a cache that
    /// cannot be written gets a warning.
    pub fn remember_location(&self, digest: &Digest, registry: &str, repository: &str) {
        if let Err(e) = self.locations.remember(digest, registry, repository) {
            self.warn_unwritable(&e);
        }
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

    /// A cached manifest by digest for `image`. A miss is `None` online;
    /// with `--offline` it is an error naming the entry (exit 4 when
    /// missing, 5 when corrupted), since the registry may not be asked.
    pub fn manifest_by_digest(
        &self,
        digest: &Digest,
        image: &str,
    ) -> Result<Option<FetchedManifest>> {
        let path = self.layout.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) if self.offline => {
                return Err(self.offline_missing(&format!("manifest {digest} of {image}"), &path))
            }
            Err(_) => return Ok(None),
        };
        let actual = Digest::of(&bytes);
        if &actual != digest {
            self.evict(digest);
            if self.offline {
                return Err(offline_corrupt(
                    &format!("manifest of {image}"),
                    &path,
                    digest,
                    &actual.to_string(),
                ));
            }
            return Ok(None);
        }
        Ok(Some(FetchedManifest::new(bytes, None)))
    }

    /// The manifest last seen for `reference` (`registry/repo:tag`).
    pub fn manifest_for_tag(&self, reference: &str) -> Option<FetchedManifest> {
        let desc = self.layout.resolve(Some(reference), None).ok()?;
        let mut fetched = self.manifest(&desc.parsed_digest().ok()?)?;
        fetched.media_type = desc.media_type;
        Some(fetched)
    }

    /// Stores a manifest, and remembers it for `tag_reference` when given.
    /// A cache that cannot be written (a full disk) gets a warning: the
    /// run goes on without it.
    pub fn put_manifest(&self, fetched: &FetchedManifest, tag_reference: Option<&str>) {
        let stored = self
            .layout
            .put_blob_bytes(&fetched.digest, &fetched.bytes)
            .and_then(|()| match tag_reference {
                Some(reference) => self.layout.set_tag(reference, fetched.descriptor()),
                None => Ok(()),
            });
        if let Err(e) = stored {
            self.warn_unwritable(&e);
        }
    }

    /// The path of a cached blob whose content matches `desc`, checked now;
    /// a corrupted or wrong-sized entry is removed. A miss is `None`
    /// online; with `--offline` it is an error naming the entry (exit 4
    /// when missing, 5 when corrupted), since the registry may not be
    /// asked.
    pub fn verified_blob(&self, desc: &Descriptor) -> Result<Option<PathBuf>> {
        let digest = desc.parsed_digest()?;
        let path = self.layout.blob_path(&digest);
        let Ok(file) = std::fs::File::open(&path) else {
            if self.offline {
                return Err(self.offline_missing(&format!("blob {digest}"), &path));
            }
            return Ok(None);
        };
        match HashingReader::new(std::io::BufReader::with_capacity(256 * 1024, file))
            .drain_and_finish()
        {
            Ok((actual, size)) if actual == digest && size == desc.size => Ok(Some(path)),
            read => {
                self.evict(&digest);
                if self.offline {
                    let actual = match read {
                        Ok((actual, size)) => format!("{actual} ({size} bytes)"),
                        Err(e) => format!("an unreadable file ({e})"),
                    };
                    return Err(offline_corrupt("cached blob", &path, &digest, &actual));
                }
                tracing::warn!("cached blob {digest} is corrupted; fetching it again");
                Ok(None)
            }
        }
    }

    /// A writer for a blob being downloaded; [`BlobWriter::commit`] makes it
    /// visible once its digest has been verified. `None` (with a warning)
    /// when the cache cannot take a new entry.
    pub fn blob_writer(&self, digest: &Digest) -> Option<BlobWriter> {
        let dest = self.layout.blob_path(digest);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        match shared_file::temp_file_in(&dir) {
            Ok(file) => Some(BlobWriter {
                file,
                dest,
                cache: self.layout.root().to_path_buf(),
                failed: false,
            }),
            Err(e) => {
                self.warn_unwritable(&e);
                None
            }
        }
    }

    fn warn_unwritable(&self, e: &Error) {
        warn_unwritable(self.layout.root(), e);
    }

    /// The `--offline` error for an entry the cache does not hold.
    fn offline_missing(&self, what: &str, path: &Path) -> Error {
        Error::NotFound(format!(
            "{what} is not in the cache ({}) and --offline forbids asking the registry; pull once without --offline to cache it",
            path.display()
        ))
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

/// The `--offline` error for a corrupted entry (removed already).
fn offline_corrupt(what: &str, path: &Path, expected: &Digest, actual: &str) -> Error {
    Error::DigestMismatch {
        what: format!(
            "{what} {} (the corrupted entry was removed; --offline forbids fetching it again, so pull once without --offline)",
            path.display()
        ),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

/// Warns that the cache at `root` cannot be written and the run goes on
/// without caching.
fn warn_unwritable(root: &Path, e: &Error) {
    tracing::warn!(
        "the cache {} cannot be written ({e}); going on without caching (free space there, or pass another --cache-dir)",
        root.display()
    );
}

/// A blob on its way into the cache. A write that fails (a full disk)
/// gets a warning and the entry is dropped: the download goes on.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
    cache: PathBuf,
    failed: bool,
}

impl BlobWriter {
    /// Appends a chunk.
    pub fn write(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.file.write_all(chunk) {
            self.failed = true;
            warn_unwritable(
                &self.cache,
                &Error::io("writing cache entry", self.file.path(), e),
            );
            // Gives the space back now rather than at the end.
            let _ = self.file.as_file().set_len(0);
        }
    }

    /// Renames the verified blob into place (another run may have won the
    /// race: fine); nothing when a write failed.
    pub fn commit(self) {
        if self.failed {
            return;
        }
        if let Err(e) = self.file.persist(&self.dest) {
            warn_unwritable(
                &self.cache,
                &Error::io("storing cache entry", &self.dest, e.error),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::OCI_LAYER_GZIP;

    #[test]
    fn corrupted_entries_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), false).unwrap();
        let data = b"blob content";
        let digest = Digest::of(data);
        let mut w = cache.blob_writer(&digest).unwrap();
        w.write(data);
        w.commit();
        let desc = Descriptor::new(OCI_LAYER_GZIP, &digest, data.len() as u64);
        assert!(cache.verified_blob(&desc).unwrap().is_some());
        std::fs::write(cache.layout.blob_path(&digest), b"blob c0ntent").unwrap();
        assert!(cache.verified_blob(&desc).unwrap().is_none());
        assert!(!cache.layout.blob_path(&digest).exists());

        let offline = Cache::open(dir.path(), true).unwrap();
        let e = offline.verified_blob(&desc).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::NotFound, "{e}");
        std::fs::write(cache.layout.blob_path(&digest), b"blob c0ntent").unwrap();
        let e = offline.verified_blob(&desc).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::DigestMismatch, "{e}");
        assert!(e.to_string().contains("without --offline"), "{e}");
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
        cache.put_manifest(&m, Some("reg.example/app:v1"));
        assert_eq!(cache.manifest(&m.digest).unwrap().bytes, m.bytes);
        assert_eq!(
            cache.manifest_for_tag("reg.example/app:v1").unwrap().digest,
            m.digest
        );
        assert!(cache.manifest_for_tag("reg.example/app:v2").is_none());
    }
}
