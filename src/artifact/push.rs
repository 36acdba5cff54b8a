//! Building an artifact from files on disk: each `--file` becomes a layer
//! (a directory is packed into one deterministic tar+gzip or tar+zstd layer), the
//! config is given or empty, and the manifest is the same for the same
//! inputs. Files are hashed and later uploaded straight from disk.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::archive::pack::{self, PackOptions, PackedLayer};
use crate::archive::walk::{self, SourceEntry, SourceKind, SourceTree, WalkOptions};
use crate::artifact::title::{self, Title};
use crate::artifact::{
    FileSpec, ANNOTATION_CONTENT_DIGEST, ANNOTATION_FILE_MODE, ANNOTATION_UNPACK,
    DEFAULT_FILE_MEDIA_TYPE, EMPTY_CONFIG, EMPTY_CONFIG_MEDIA_TYPE,
};
use crate::bundle::format;
use crate::error::{Error, Result};
use crate::oci::digest::{Digest, HashingReader};
use crate::oci::manifest::{Descriptor, ImageManifest, ANNOTATION_TITLE, OCI_MANIFEST};

/// A blob ready to upload: its descriptor and where its bytes are.
#[derive(Debug)]
pub struct Blob {
    /// The descriptor as it appears in the manifest.
    pub desc: Descriptor,
    /// Where the bytes are.
    pub content: Content,
}

/// The bytes of a [`Blob`].
#[derive(Debug)]
pub enum Content {
    /// A file given by the user, streamed from disk.
    File(PathBuf),
    /// A packed directory, in a spool file removed when dropped.
    Packed(PackedLayer),
    /// Small bytes in memory (the empty config).
    Bytes(&'static [u8]),
}

impl Blob {
    /// The file to stream, when the bytes are on disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.content {
            Content::File(p) => Some(p),
            Content::Packed(l) => Some(l.file.path()),
            Content::Bytes(_) => None,
        }
    }
}

/// How directories are packed.
#[derive(Debug, Clone, Default)]
pub struct DirOptions {
    /// What to leave out (ignore files, excludes, symlink handling).
    pub walk: WalkOptions,
    /// mtime and gzip level.
    pub pack: PackOptions,
}

/// Turns each `--file` into a layer, in the order given. Titles are the
/// base names of the paths; two inputs with the same base name are a usage
/// error, since they would be written to the same file on pull.
pub fn layers(files: &[FileSpec], dir_opts: &DirOptions) -> Result<Vec<Blob>> {
    let mut titled: Vec<(Title, &FileSpec)> = Vec::new();
    for spec in files {
        titled.push((title_of(&spec.path)?, spec));
    }
    let titles: Vec<&Title> = titled.iter().map(|(t, _)| t).collect();
    title::check_distinct(&titles).map_err(|_| duplicate_error(&titled))?;
    titled
        .iter()
        .map(|(title, spec)| layer(spec, title, dir_opts))
        .collect()
}

/// One layer: a directory packed, or a file hashed.
fn layer(spec: &FileSpec, title: &Title, dir_opts: &DirOptions) -> Result<Blob> {
    let meta = std::fs::metadata(&spec.path).map_err(|e| missing(&spec.path, e))?;
    let name = title.as_str();
    let mut annotations = BTreeMap::from([(ANNOTATION_TITLE.to_string(), name.clone())]);
    if meta.is_dir() {
        let packed = pack_dir(&spec.path, &name, dir_opts)?;
        annotations.insert(ANNOTATION_UNPACK.to_string(), "true".to_string());
        annotations.insert(
            ANNOTATION_CONTENT_DIGEST.to_string(),
            packed.diff_id.to_string(),
        );
        let mut desc = Descriptor::new(
            spec.media_type
                .as_deref()
                .unwrap_or(format::layer_kind(dir_opts.pack.compression).0),
            &packed.digest,
            packed.size,
        );
        desc.annotations = annotations;
        tracing::info!(
            "{name}: directory, {} entries packed into {} bytes",
            packed.entries,
            packed.size
        );
        return Ok(Blob {
            desc,
            content: Content::Packed(packed),
        });
    }
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "{} is neither a file nor a directory; --file takes files and directories",
            spec.path.display()
        )));
    }
    let (digest, size) = hash_file(&spec.path)?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        "0755"
    } else {
        "0644"
    };
    annotations.insert(ANNOTATION_FILE_MODE.to_string(), mode.to_string());
    let mut desc = Descriptor::new(
        spec.media_type
            .as_deref()
            .unwrap_or(DEFAULT_FILE_MEDIA_TYPE),
        &digest,
        size,
    );
    desc.annotations = annotations;
    Ok(Blob {
        desc,
        content: Content::File(spec.path.clone()),
    })
}

/// The config: `--config PATH:MEDIATYPE`, or the empty config.
pub fn config(spec: Option<&FileSpec>) -> Result<Blob> {
    let Some(spec) = spec else {
        return Ok(Blob {
            desc: Descriptor::new(
                EMPTY_CONFIG_MEDIA_TYPE,
                &Digest::of(EMPTY_CONFIG),
                EMPTY_CONFIG.len() as u64,
            ),
            content: Content::Bytes(EMPTY_CONFIG),
        });
    };
    let Some(media_type) = &spec.media_type else {
        return Err(Error::Usage(format!(
            "--config {} needs a media type: --config {}:application/vnd.example.config.v1+json",
            spec.path.display(),
            spec.path.display()
        )));
    };
    let meta = std::fs::metadata(&spec.path).map_err(|e| missing(&spec.path, e))?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "--config {} is not a file",
            spec.path.display()
        )));
    }
    let (digest, size) = hash_file(&spec.path)?;
    Ok(Blob {
        desc: Descriptor::new(media_type, &digest, size),
        content: Content::File(spec.path.clone()),
    })
}

/// The manifest: OCI image manifest with the artifact type, config and
/// layers as given, and the annotations sorted. No timestamps are added.
pub fn manifest(
    artifact_type: Option<&str>,
    config: &Blob,
    layers: &[Blob],
    annotations: &BTreeMap<String, String>,
) -> Result<ImageManifest> {
    if artifact_type.is_none() && config.desc.media_type == EMPTY_CONFIG_MEDIA_TYPE {
        return Err(Error::Usage(
            "an artifact with the empty config needs --artifact-type TYPE \
             (e.g. application/vnd.example.app.v1), or give --config PATH:MEDIATYPE"
                .to_string(),
        ));
    }
    Ok(ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        artifact_type: artifact_type.map(str::to_string),
        config: config.desc.clone(),
        layers: layers.iter().map(|l| l.desc.clone()).collect(),
        subject: None,
        annotations: annotations.clone(),
    })
}

/// The title of a path: its base name (`.` and `..` resolved first).
fn title_of(path: &Path) -> Result<Title> {
    let name = match path.file_name() {
        Some(n) => n.to_os_string(),
        None => std::fs::canonicalize(path)
            .map_err(|e| missing(path, e))?
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{} has no name to title a layer with; name a directory below /",
                    path.display()
                ))
            })?,
    };
    let name = name.into_string().map_err(|n| {
        Error::InvalidInput(format!(
            "{}: the name {n:?} is not UTF-8 and cannot be a layer title; rename it",
            path.display()
        ))
    })?;
    Title::parse(&name).map_err(|_| {
        Error::InvalidInput(format!(
            "{}: the name {name:?} cannot be a layer title (no backslashes or NUL bytes); rename it",
            path.display()
        ))
    })
}

fn duplicate_error(titled: &[(Title, &FileSpec)]) -> Error {
    let mut seen: BTreeMap<&Title, &Path> = BTreeMap::new();
    for (title, spec) in titled {
        if let Some(first) = seen.insert(title, &spec.path) {
            return Error::Usage(format!(
                "--file {} and --file {} would both be pulled as {:?}: titles are base names; \
                 rename one or put both in a directory and push that",
                first.display(),
                spec.path.display(),
                title.as_str()
            ));
        }
    }
    Error::Usage("two --file values have the same title".to_string())
}

fn missing(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!(
            "{} does not exist; --file and --config take existing paths",
            path.display()
        )),
        _ => Error::io("reading", path, e),
    }
}

/// Packs a directory with its entries under `title/`, the way ORAS does,
/// so `oras pull` recreates it under its name.
fn pack_dir(dir: &Path, title: &str, opts: &DirOptions) -> Result<PackedLayer> {
    let tree = walk::walk(dir, &opts.walk, &mut |w| tracing::warn!("{w}"))?;
    crate::archive::secrets::warn(&tree);
    let mut prefixed = Vec::with_capacity(tree.entries.len() + 1);
    prefixed.push(SourceEntry {
        rel: title.to_string(),
        kind: SourceKind::Dir,
    });
    prefixed.extend(tree.entries.into_iter().map(|e| SourceEntry {
        rel: format!("{title}/{}", e.rel),
        kind: e.kind,
    }));
    let prefixed = SourceTree {
        root: tree.root,
        entries: prefixed,
    };
    pack::pack(&prefixed, &opts.pack, &std::env::temp_dir(), &mut |_| {})
}

/// sha256 and size of a file, read in a stream.
fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    HashingReader::new(std::io::BufReader::with_capacity(256 * 1024, file))
        .drain_and_finish()
        .map_err(|e| Error::io("reading", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::OCI_LAYER_GZIP;

    fn spec(p: &Path, mt: Option<&str>) -> FileSpec {
        FileSpec {
            path: p.to_path_buf(),
            media_type: mt.map(str::to_string),
        }
    }

    #[test]
    fn same_files_give_the_same_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("tool");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("static");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("index.html"), b"<p>hi</p>").unwrap();
        let files = [spec(&bin, Some("application/x-tool")), spec(&dir, None)];
        let build = || {
            let layers = layers(&files, &DirOptions::default()).unwrap();
            let config = config(None).unwrap();
            manifest(
                Some("application/x-app"),
                &config,
                &layers,
                &BTreeMap::new(),
            )
            .unwrap()
            .to_bytes()
        };
        let first = build();
        let m: ImageManifest = serde_json::from_slice(&first).unwrap();
        assert_eq!(m.layers[0].annotations[ANNOTATION_FILE_MODE], "0755");
        assert_eq!(m.layers[0].annotations[ANNOTATION_TITLE], "tool");
        assert_eq!(m.layers[1].annotations[ANNOTATION_TITLE], "static");
        assert_eq!(m.layers[1].annotations[ANNOTATION_UNPACK], "true");
        assert_eq!(m.layers[1].media_type, OCI_LAYER_GZIP);
        assert_eq!(m.config.size, 2);
        std::fs::write(dir.join("later"), b"").unwrap();
        std::fs::remove_file(dir.join("later")).unwrap();
        assert_eq!(first, build());
    }

    #[test]
    fn empty_config_needs_an_artifact_type_and_titles_must_differ() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        std::fs::write(tmp.path().join("a/x"), b"1").unwrap();
        std::fs::write(tmp.path().join("x"), b"2").unwrap();
        let config = config(None).unwrap();
        let e = manifest(None, &config, &[], &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("--artifact-type"));
        let e = layers(
            &[
                spec(&tmp.path().join("a/x"), None),
                spec(&tmp.path().join("x"), None),
            ],
            &DirOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        let e = super::config(Some(&spec(&tmp.path().join("x"), None))).unwrap_err();
        assert!(e.to_string().contains("needs a media type"));
    }
}
