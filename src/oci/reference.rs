//! Image references: docker-style registry names and `oci:PATH[:tag]` layouts.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;

mod syntax;

/// Where an image lives: a registry repository or an OCI layout on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A registry reference such as `localhost:5000/app:v1`.
    Registry(ImageRef),
    /// An OCI image layout such as `oci:./layout:v1`.
    Layout(LayoutRef),
}

/// A parsed registry reference. A missing tag means `latest` unless a digest is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), e.g. `ghcr.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `o/app`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any (takes precedence over the tag when fetching).
    pub digest: Option<Digest>,
}

/// A reference into an OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// The layout directory.
    pub path: PathBuf,
    /// Tag (`org.opencontainers.image.ref.name`); `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

impl Target {
    /// Parses `oci:PATH[:tag|@digest]` or a docker-style reference.
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix("oci:") {
            Some(rest) => LayoutRef::parse(rest).map(Target::Layout),
            None => ImageRef::parse(s).map(Target::Registry),
        }
    }
}

impl Target {
    /// The tag the reference names, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Target::Registry(r) => r.tag.as_deref(),
            Target::Layout(l) => l.tag.as_deref(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Registry(r) => r.fmt(f),
            Target::Layout(l) => l.fmt(f),
        }
    }
}

impl ImageRef {
    /// Parses a docker-style reference (`name[:tag][@digest]`), normalising
    /// Docker Hub names like the docker CLI does.
    pub fn parse(s: &str) -> Result<Self> {
        let parts = syntax::parse(s).map_err(|e| {
            Error::Usage(format!(
                "invalid image reference {s:?}: {e}; expected e.g. registry.example.com/org/app:tag"
            ))
        })?;
        let digest = parts.digest.map(Digest::parse).transpose()?;
        check_name(s, &parts.registry, &parts.repository, parts.tag)?;
        let tag = match (parts.tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(ImageRef {
            registry: parts.registry,
            repository: parts.repository,
            tag,
            digest,
        })
    }

    /// What to put in a manifest URL: the digest if known, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository@digest`.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{}", self.name(), digest)
    }

    /// The host requests go to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "index.docker.io"
        } else {
            &self.registry
        }
    }

    /// A copy with a tag derived by suffix: `app:v1` + `-linux-arm64` -> `app:v1-linux-arm64`.
    pub fn with_tag_suffix(&self, suffix: &str) -> ImageRef {
        let base = self.tag.clone().unwrap_or_else(|| "latest".to_string());
        ImageRef {
            tag: Some(format!("{base}{suffix}")),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl LayoutRef {
    /// Parses `PATH[:tag][@digest]` (the part after `oci:`).
    pub fn parse(s: &str) -> Result<Self> {
        let (rest, digest) = match s.rsplit_once('@') {
            Some((p, d)) if Digest::parse(d).is_ok() => (p, Some(Digest::parse(d)?)),
            _ => (s, None),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && is_valid_tag(t) => (p, Some(t.to_string())),
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(Error::Usage(format!(
                "invalid layout reference oci:{s}: expected oci:PATH[:tag]"
            )));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(LayoutRef {
            path: PathBuf::from(path),
            tag,
            digest,
        })
    }
}

impl fmt::Display for LayoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci:{}", self.path.display())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Enforces the distribution grammar that the parser underneath is lenient
/// about, so every accepted reference prints as one that parses back the
/// same: lowercase path components, a plain host name, a valid tag.
fn check_name(input: &str, registry: &str, repository: &str, tag: Option<&str>) -> Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
            && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
            && b.iter().all(|&x| {
                x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
            })
            && !c.contains("..")
            && !c.contains("___")
    };
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host_ok = if host.starts_with('[') {
        host.ends_with(']')
    } else {
        host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    let problem = if !host_ok {
        Some("the registry host is not a valid host name")
    } else if !repository.split('/').all(component_ok) {
        Some("repository names are lowercase letters, digits and separators (. _ -) between them")
    } else if tag.is_some_and(|t| !is_valid_tag(t)) {
        Some("tags are up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`")
    } else {
        None
    };
    match problem {
        Some(why) => Err(Error::Usage(format!(
            "invalid image reference {input:?}: {why}"
        ))),
        None => Ok(()),
    }
}

/// True for a valid OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && t.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tag_means_latest() {
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn digest_reference_has_no_implied_tag() {
        let d = Digest::of(b"x");
        let r = ImageRef::parse(&format!("127.0.0.1:5000/o/app@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d.to_string());
        assert_eq!(r.with_digest(&d), format!("127.0.0.1:5000/o/app@{d}"));
    }

    #[test]
    fn docker_hub_names_normalise() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.api_host(), "index.docker.io");
    }

    #[test]
    fn tag_suffix_goes_on_the_tag_not_the_repository() {
        let r = ImageRef::parse("reg.io/app")
            .unwrap()
            .with_tag_suffix("-linux-arm64");
        assert_eq!(r.to_string(), "reg.io/app:latest-linux-arm64");
    }

    #[test]
    fn layout_references() {
        let l = LayoutRef::parse("./out:v1").unwrap();
        assert_eq!(
            (l.path.to_str().unwrap(), l.tag.as_deref()),
            ("./out", Some("v1"))
        );
        let l = LayoutRef::parse("/tmp/a/b").unwrap();
        assert_eq!(l.tag.as_deref(), Some("latest"));
        let d = Digest::of(b"y");
        let l = LayoutRef::parse(&format!("dir@{d}")).unwrap();
        assert_eq!((l.tag, l.digest), (None, Some(d)));
        assert!(matches!(
            Target::parse("oci:x:t").unwrap(),
            Target::Layout(_)
        ));
    }

    #[test]
    fn accepted_references_print_back_the_same() {
        for s in [
            "aFaiao/45",
            "a/b/c:tac17e078d",
            "Reg.IO:5000/x",
            "ghcr.io/o/app:v1",
            "localhost:5000/a__b/c-d.e:t_1",
        ] {
            if let Ok(t) = Target::parse(s) {
                assert_eq!(Target::parse(&t.to_string()).unwrap(), t, "{s}");
            }
        }
        assert!(ImageRef::parse("ghcr.io/Org/app").is_err());
        assert!(ImageRef::parse("ghcr.io/org/app:-bad").is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/org/app:v1").is_ok());
    }

    #[test]
    fn bad_references_are_usage_errors() {
        let e = ImageRef::parse("UPPER/Case:tag").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    }
}
