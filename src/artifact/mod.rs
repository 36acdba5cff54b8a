//! Generic OCI artifacts: files and directories as layers with their own
//! media types, an `artifactType`, and either a config of their own or the
//! OCI 1.1 empty config. The conventions are ORAS's, so artifacts move
//! between ocistep and `oras` in both directions:
//!
//! - every layer is titled with `org.opencontainers.image.title`, which is
//!   the file name it is written to on pull;
//! - a directory is one tar+gzip layer (tar+zstd with `--compression zstd`,
//!   which ORAS does not unpack) whose entries sit under a top-level
//!   directory named like the title, annotated with
//!   `io.deis.oras.content.unpack: "true"` and `io.deis.oras.content.digest`
//!   (the digest of the uncompressed tar);
//! - with no config of its own, the manifest names the empty config
//!   (`application/vnd.oci.empty.v1+json`, content `{}`) and must carry an
//!   `artifactType`.
//!
//! ocistep adds `dev.ocistep.file.mode` (`0755` or `0644`) to file layers,
//! so an executable (a CLI binary) keeps its exec bit through a pull.

pub mod download;
pub mod pull;
pub mod push;
pub mod title;

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Media type of the OCI 1.1 empty descriptor (config of artifacts without one).
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Content of the empty config.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Media type of a file layer given without one.
pub const DEFAULT_FILE_MEDIA_TYPE: &str = "application/octet-stream";
/// Annotation marking a tar+gzip layer to be unpacked into a directory (ORAS).
pub const ANNOTATION_UNPACK: &str = "io.deis.oras.content.unpack";
/// Annotation with the digest of a directory layer's uncompressed tar (ORAS).
pub const ANNOTATION_CONTENT_DIGEST: &str = "io.deis.oras.content.digest";
/// Annotation with a file layer's permission bits (`0755` or `0644`).
pub const ANNOTATION_FILE_MODE: &str = "dev.ocistep.file.mode";

/// A `--file PATH[:MEDIATYPE]` or `--config PATH:MEDIATYPE` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file or directory.
    pub path: PathBuf,
    /// The media type given after the last `:`, if any.
    pub media_type: Option<String>,
}

impl FileSpec {
    /// Parses `PATH[:MEDIATYPE]`. The value is split at its last `:` when
    /// what follows contains a `/` (every media type is `type/subtype`), so
    /// a path with a colon in its name still works on its own; `PATH:`
    /// means "no media type".
    pub fn parse(value: &str) -> Result<Self> {
        let (path, media_type) = match value.rsplit_once(':') {
            Some((path, mt)) if mt.contains('/') => (path, Some(mt.to_string())),
            Some((path, "")) => (path, None),
            _ => (value, None),
        };
        if path.is_empty() {
            return Err(Error::Usage(format!(
                "{value:?} names no file: expected PATH[:MEDIATYPE]"
            )));
        }
        if let Some(mt) = &media_type {
            check_media_type(mt, value)?;
        }
        Ok(FileSpec {
            path: PathBuf::from(path),
            media_type,
        })
    }
}

/// Checks that `mt` looks like a media type (`type/subtype`, printable),
/// naming `flag` in the error.
pub fn check_media_type(mt: &str, flag: &str) -> Result<()> {
    let valid = match mt.split_once('/') {
        Some((t, s)) => {
            !t.is_empty() && !s.is_empty() && !mt.chars().any(|c| c.is_control() || c == ' ')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid media type {mt:?} in {flag}: expected type/subtype, e.g. application/vnd.example.v1+json"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Digest;

    #[test]
    fn empty_config_digest_is_the_one_oci_defines() {
        assert_eq!(
            Digest::of(EMPTY_CONFIG).to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn file_specs_split_at_the_last_colon_before_a_media_type() {
        let s = FileSpec::parse("app.wasm:application/vnd.wasm.content.layer.v1+wasm").unwrap();
        assert_eq!(s.path, PathBuf::from("app.wasm"));
        assert_eq!(
            s.media_type.as_deref(),
            Some("application/vnd.wasm.content.layer.v1+wasm")
        );
        let s = FileSpec::parse("dir/a:b.txt").unwrap();
        assert_eq!(s.path, PathBuf::from("dir/a:b.txt"));
        assert_eq!(s.media_type, None);
        let s = FileSpec::parse("a:b:text/plain").unwrap();
        assert_eq!(s.path, PathBuf::from("a:b"));
        assert_eq!(s.media_type.as_deref(), Some("text/plain"));
        let s = FileSpec::parse("x:").unwrap();
        assert_eq!((s.path, s.media_type), (PathBuf::from("x"), None));
        assert!(FileSpec::parse(":text/plain").is_err());
        assert!(FileSpec::parse("x:text/").is_err());
        assert!(FileSpec::parse("x:te xt/plain").is_err());
    }
}
