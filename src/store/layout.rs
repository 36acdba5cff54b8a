//! OCI image layouts on disk (`oci:PATH[:tag]`): blobs under
//! `blobs/sha256/`, manifests named in `index.json`.
//!
//! Every write goes to a temporary file in the same directory and is renamed
//! into place, so readers never see a partial blob or index; files get the
//! mode the umask allows. Changes to `index.json` are made under an
//! exclusive lock on [`INDEX_LOCK`], so concurrent runs tagging into one
//! layout all keep their tags.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::{Descriptor, FetchedManifest, ANNOTATION_REF_NAME, OCI_INDEX};
use crate::shared_file;

/// The file in a layout that runs lock (`flock`) while they read, change
/// and replace `index.json`. It holds nothing; other tools ignore it.
pub const INDEX_LOCK: &str = "index.json.lock";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<serde_json::Value>,
}

impl Layout {
    /// Opens an existing layout.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            return Err(Error::NotFound(format!(
                "{} is not an OCI image layout (no oci-layout or index.json)",
                root.display()
            )));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Opens a layout, creating an empty one if the directory has none.
    pub fn open_or_create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("blobs").join("sha256"))
            .map_err(|e| Error::io("creating layout", root, e))?;
        let layout = Layout {
            root: root.to_path_buf(),
        };
        // Created only where absent, so a run creating the layout never
        // replaces an index another run has tagged into meanwhile.
        if !root.join("oci-layout").is_file() {
            shared_file::create_atomic(
                &root.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !root.join("index.json").is_file() {
            let empty = Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_string()),
                manifests: Vec::new(),
                annotations: None,
            };
            shared_file::create_atomic(&root.join("index.json"), &index_bytes(&empty)?)?;
        }
        Ok(layout)
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// True when the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores bytes as a blob.
    pub fn put_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if !self.has_blob(digest) {
            shared_file::write_atomic(&self.blob_path(digest), bytes)?;
        }
        Ok(())
    }

    /// Stores a file as a blob (its content copied, then renamed into
    /// place; the blob's mode is the layout's, not the source file's).
    pub fn put_blob_file(&self, digest: &Digest, src: &Path) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let dest = self.blob_path(digest);
        let mut tmp = shared_file::temp_file_in(dest.parent().unwrap_or(&self.root))?;
        let mut from = File::open(src).map_err(|e| Error::io("opening", src, e))?;
        std::io::copy(&mut from, tmp.as_file_mut())
            .map_err(|e| Error::io("copying blob to", tmp.path(), e))?;
        tmp.persist(&dest)
            .map_err(|e| Error::io("storing blob", &dest, e.error))?;
        Ok(())
    }

    /// Reads a manifest blob and checks it against its descriptor.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<FetchedManifest> {
        let digest = desc.parsed_digest()?;
        let path = self.blob_path(&digest);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!(
                "manifest {digest} is missing from layout {}",
                self.root.display()
            )),
            _ => Error::io("reading", &path, e),
        })?;
        let fetched = FetchedManifest::new(bytes, Some(desc.media_type.clone()));
        crate::oci::digest::verify(
            &format!("manifest {} in {}", digest, self.root.display()),
            &digest,
            Some(desc.size),
            &fetched.digest,
            fetched.bytes.len() as u64,
        )?;
        Ok(fetched)
    }

    /// Finds the manifest descriptor for a tag or digest.
    pub fn resolve(&self, tag: Option<&str>, digest: Option<&Digest>) -> Result<Descriptor> {
        let index = self.read_index()?;
        let found = index.manifests.into_iter().find(|d| match (digest, tag) {
            (Some(dg), _) => d.digest == dg.as_str(),
            (None, Some(t)) => {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(t)
            }
            (None, None) => false,
        });
        if let Some(d) = found {
            return Ok(d);
        }
        if let Some(dg) = digest {
            // A digest that is only a blob (e.g. a child of an index) still resolves.
            let path = self.blob_path(dg);
            if let Ok(meta) = std::fs::metadata(&path) {
                let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
                let media_type = FetchedManifest::new(bytes, None).media_type;
                return Ok(Descriptor::new(&media_type, dg, meta.len()));
            }
        }
        Err(Error::NotFound(format!(
            "{} not found in layout {}; check the tag or digest",
            digest
                .map(|d| d.to_string())
                .or(tag.map(str::to_string))
                .unwrap_or_default(),
            self.root.display()
        )))
    }

    /// Every manifest descriptor index.json names, in its order.
    pub fn manifests(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests)
    }

    /// The one manifest index.json names; an error listing them when there
    /// are several.
    pub fn single_manifest(&self) -> Result<Descriptor> {
        let index = self.read_index()?;
        match index.manifests.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!(
                "layout {} holds no image",
                self.root.display()
            ))),
            many => Err(Error::Usage(format!(
                "layout {} holds {} images ({}); it must hold exactly one",
                self.root.display(),
                many.len(),
                many.iter()
                    .map(|d| d
                        .annotations
                        .get(ANNOTATION_REF_NAME)
                        .cloned()
                        .unwrap_or_else(|| d.digest.clone()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Names `desc` with `tag` in index.json, replacing an earlier manifest of that name.
    pub fn set_tag(&self, tag: &str, mut desc: Descriptor) -> Result<()> {
        desc.annotations
            .insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        self.update_index(|index| {
            index.manifests.retain(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(tag)
            });
            index.manifests.push(desc);
        })
    }

    /// Removes every index.json entry for `digest` (blobs stay until garbage-collected).
    pub fn remove_manifest(&self, digest: &Digest) -> Result<()> {
        self.update_index(|index| index.manifests.retain(|d| d.digest != digest.as_str()))
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::BadContent(format!("{} is not a valid OCI index: {e}", path.display()))
        })
    }

    /// Reads index.json, applies `change` and writes it back, holding the
    /// layout's lock throughout, so a concurrent run's change is never
    /// overwritten by one made to an older copy.
    fn update_index(&self, change: impl FnOnce(&mut Index)) -> Result<()> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        change(&mut index);
        shared_file::write_atomic(&self.root.join("index.json"), &index_bytes(&index)?)
    }

    /// Takes the exclusive lock on [`INDEX_LOCK`] (see [`shared_file::lock`]).
    fn lock_index(&self) -> Result<File> {
        shared_file::lock(&self.root.join(INDEX_LOCK))
    }
}

fn index_bytes(index: &Index) -> Result<Vec<u8>> {
    serde_json::to_vec(index).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::OCI_MANIFEST;

    #[test]
    fn tags_replace_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::open_or_create(dir.path()).unwrap();
        let m1 = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        let d1 = Digest::of(m1);
        l.put_blob_bytes(&d1, m1).unwrap();
        l.set_tag("v1", Descriptor::new(OCI_MANIFEST, &d1, m1.len() as u64))
            .unwrap();
        l.set_tag("v1", Descriptor::new(OCI_MANIFEST, &d1, m1.len() as u64))
            .unwrap();
        let idx = l.read_index().unwrap();
        assert_eq!(idx.manifests.len(), 1);
        let desc = l.resolve(Some("v1"), None).unwrap();
        assert_eq!(l.read_manifest(&desc).unwrap().bytes, m1);
        assert_eq!(
            l.resolve(Some("nope"), None).unwrap_err().exit_code(),
            crate::ExitCode::NotFound
        );
        assert!(Layout::open(dir.path()).is_ok());
    }

    #[test]
    fn concurrent_tags_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let root = &root;
                scope.spawn(move || {
                    for n in 0..20 {
                        let l = Layout::open_or_create(root).unwrap();
                        let m = format!("{{\"schemaVersion\":2,\"n\":\"{thread}-{n}\"}}");
                        let d = Digest::of(m.as_bytes());
                        l.put_blob_bytes(&d, m.as_bytes()).unwrap();
                        l.set_tag(
                            &format!("t{thread}-{n}"),
                            Descriptor::new(OCI_MANIFEST, &d, m.len() as u64),
                        )
                        .unwrap();
                    }
                });
            }
        });
        let l = Layout::open(&root).unwrap();
        assert_eq!(l.manifests().unwrap().len(), 8 * 20);
        for thread in 0..8 {
            for n in 0..20 {
                assert!(l.resolve(Some(&format!("t{thread}-{n}")), None).is_ok());
            }
        }
    }

    #[test]
    fn corrupted_manifest_blob_is_a_digest_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::open_or_create(dir.path()).unwrap();
        let m = b"{\"schemaVersion\":2}";
        let d = Digest::of(m);
        l.put_blob_bytes(&d, b"{\"schemaVersion\":3}").unwrap();
        let e = l
            .read_manifest(&Descriptor::new(OCI_MANIFEST, &d, m.len() as u64))
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::DigestMismatch);
    }
}
