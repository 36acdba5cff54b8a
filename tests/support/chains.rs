//! What Tekton Chains reads from a TaskRun's results, read the way it
//! reads them (tektoncd/chains `pkg/artifacts/signable.go` and
//! `structured.go`, which parse image references with go-containerregistry's
//! `name.NewDigest`):
//!
//! * results named `<prefix>IMAGE_URL` and `<prefix>IMAGE_DIGEST` pair up by
//!   prefix; a pair with both values is joined as `URL@DIGEST`, which must
//!   parse as a digest reference, else Chains logs an error and signs
//!   nothing for it;
//! * an object result named `<prefix>ARTIFACT_OUTPUTS` with a `uri` and a
//!   `digest` of the form `algorithm:hex` is a provenance subject; with
//!   `isBuildArtifact: "true"` it is also an image to sign;
//! * `IMAGES` lists pinned references.

use std::collections::{BTreeMap, BTreeSet};

/// A result's value: Tekton's string or object.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultValue {
    Str(String),
    Object(BTreeMap<String, String>),
}

/// What Chains makes of one run's results.
#[derive(Debug, Default)]
pub struct Reading {
    /// Images it signs, as `repository@digest` with the repository named as
    /// go-containerregistry names it.
    pub images: BTreeSet<String>,
    /// `ARTIFACT_OUTPUTS` subjects, `(uri, digest)`.
    pub outputs: BTreeSet<(String, String)>,
    /// Every result whose name Chains type-hints on.
    pub hinted: BTreeSet<String>,
    /// What it would log as an error and skip.
    pub errors: Vec<String>,
}

/// Name endings Chains looks for; `IMAGES` is matched whole.
const HINTS: [&str; 6] = [
    "IMAGE_URL",
    "IMAGE_DIGEST",
    "ARTIFACT_URI",
    "ARTIFACT_DIGEST",
    "ARTIFACT_OUTPUTS",
    "ARTIFACT_INPUTS",
];

/// Reads `results` as Chains does.
pub fn read(results: &BTreeMap<String, ResultValue>) -> Reading {
    let mut reading = Reading::default();
    let mut pairs: BTreeMap<&str, (Option<String>, Option<String>)> = BTreeMap::new();
    for (name, value) in results {
        if name == "IMAGES" || HINTS.iter().any(|h| name.ends_with(h)) {
            reading.hinted.insert(name.clone());
        }
        match value {
            ResultValue::Str(s) => {
                let s = s.trim().to_string();
                if s.is_empty() {
                    continue;
                }
                if let Some(prefix) = name.strip_suffix("IMAGE_URL") {
                    pairs.entry(prefix).or_default().0 = Some(s);
                } else if let Some(prefix) = name.strip_suffix("IMAGE_DIGEST") {
                    pairs.entry(prefix).or_default().1 = Some(s);
                } else if name == "IMAGES" {
                    for image in s
                        .split([',', '\n'])
                        .map(str::trim)
                        .filter(|i| !i.is_empty())
                    {
                        reading.sign(image);
                    }
                }
            }
            ResultValue::Object(fields) if name.ends_with("ARTIFACT_OUTPUTS") => {
                let uri = fields.get("uri").cloned().unwrap_or_default();
                let digest = fields.get("digest").cloned().unwrap_or_default();
                if uri.is_empty() || parse_digest(&digest).is_err() {
                    reading.errors.push(format!(
                        "{name}: no uri, or digest {digest:?} not algorithm:hex"
                    ));
                    continue;
                }
                if fields.get("isBuildArtifact").map(String::as_str) == Some("true") {
                    reading.sign(&format!("{uri}@{digest}"));
                }
                reading.outputs.insert((uri, digest));
            }
            ResultValue::Object(_) => {}
        }
    }
    for (url, digest) in pairs.into_values() {
        if let (Some(url), Some(digest)) = (url, digest) {
            reading.sign(&format!("{url}@{digest}"));
        }
    }
    reading
}

impl Reading {
    fn sign(&mut self, reference: &str) {
        match new_digest(reference) {
            Ok(name) => {
                self.images.insert(name);
            }
            Err(e) => self.errors.push(format!("error getting digest: {e}")),
        }
    }
}

/// Chains' `ParseDigest`: `algorithm:hex`, sha256 (64) or sha512 (128) hex.
fn parse_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').ok_or("not algorithm:hex")?;
    let len = match algorithm.trim().to_ascii_lowercase().as_str() {
        "sha256" => 64,
        "sha512" => 128,
        "sha1" => 40,
        other => return Err(format!("unsupported digest algorithm {other}")),
    };
    let hex = hex.trim();
    let lower_hex = hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    (hex.len() == len && lower_hex)
        .then_some(())
        .ok_or_else(|| format!("invalid {algorithm} digest {hex}"))
}

/// go-containerregistry's `name.NewDigest`: exactly one `@`, a sha256
/// digest, and a repository (a tag before the `@` is dropped). Returns the
/// reference as `Digest.Name()` gives it.
pub fn new_digest(reference: &str) -> Result<String, String> {
    let parts: Vec<&str> = reference.split('@').collect();
    let [base, digest] = parts[..] else {
        return Err(format!(
            "a digest must contain exactly one '@' separator (e.g. registry/repository@digest) saw: {reference}"
        ));
    };
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest algorithm: {digest}"))?;
    parse_digest(&format!("sha256:{hex}"))?;
    let repository = new_tag(base).or_else(|_| new_repository(base))?;
    Ok(format!("{repository}@{digest}"))
}

/// `name.NewTag(...).Repository.Name()`: the tag after the last `:` that
/// has no `/` after it.
fn new_tag(name: &str) -> Result<String, String> {
    let (base, tag) = match name.rsplit_once(':') {
        Some((base, tag)) if !tag.contains('/') => (base, tag),
        _ => (name, ""),
    };
    if !tag.is_empty() {
        let valid = tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !valid {
            return Err(format!("invalid tag {tag:?}"));
        }
    } else if base.len() != name.len() {
        return Err(format!("{name} must specify a tag name after the colon"));
    }
    new_repository(base)
}

/// `name.NewRepository(...).Name()`: registry (the first component when it
/// is `localhost` or has a `.` or `:`; else Docker Hub) and repository.
fn new_repository(name: &str) -> Result<String, String> {
    let (registry, repository) = match name.split_once('/') {
        Some((r, rest)) if r == "localhost" || r.contains(['.', ':']) => (r, rest),
        _ => ("", name),
    };
    let valid = (1..=255).contains(&repository.len())
        && repository
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-./".contains(c));
    if !valid {
        return Err(format!("invalid repository {repository:?} in {name:?}"));
    }
    let authority = registry
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !authority {
        return Err(format!("registry {registry:?} is no URI authority"));
    }
    Ok(match registry {
        "" | "docker.io" | "index.docker.io" if !repository.contains('/') => {
            format!("index.docker.io/library/{repository}")
        }
        "" | "docker.io" => format!("index.docker.io/{repository}"),
        _ => format!("{registry}/{repository}"),
    })
}
