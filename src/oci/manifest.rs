//! OCI manifest, index and descriptor types, serialised canonically.
//!
//! Field order is fixed by the struct definitions and annotations are a
//! `BTreeMap`, so the same values always give the same bytes and digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI tar+gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI uncompressed tar layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker tar+gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Annotation with the creation time (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation with a layer's file name (ORAS convention).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Annotation naming a manifest in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Every manifest media type ocistep asks for, for the `Accept` header.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<serde_json::Value>,
    /// Artifact type of the referenced manifest, for index entries.
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: &str, digest: &Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The digest, validated.
    pub fn parsed_digest(&self) -> Result<Digest> {
        Digest::parse(&self.digest).map_err(|_| {
            Error::BadContent(format!(
                "descriptor has an invalid digest {:?}",
                self.digest
            ))
        })
    }
}

/// An OCI image manifest (also reads Docker schema 2 manifests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    /// OCI 1.1 artifact type.
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// OCI 1.1: the manifest this one refers to (a signature, an SBOM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The canonical JSON bytes of this manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }
}

/// A manifest as fetched: its bytes, media type and verified digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Media type from the response or the document.
    pub media_type: String,
    /// Digest of `bytes`.
    pub digest: Digest,
}

impl FetchedManifest {
    /// Wraps raw bytes; the media type falls back to the document's own field.
    pub fn new(bytes: Vec<u8>, media_type: Option<String>) -> Self {
        let digest = Digest::of(&bytes);
        let media_type = media_type
            .filter(|m| !m.is_empty() && m != "application/json" && m != "text/plain")
            .or_else(|| document_media_type(&bytes))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        FetchedManifest {
            bytes,
            media_type,
            digest,
        }
    }

    /// True for an OCI index or Docker manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// Parses the bytes as an image manifest.
    pub fn image_manifest(&self) -> Result<ImageManifest> {
        if self.is_index() {
            return Err(Error::BadContent(format!(
                "{} is an image index ({}), not an image manifest",
                self.digest, self.media_type
            )));
        }
        if self.media_type != OCI_MANIFEST && self.media_type != DOCKER_MANIFEST {
            return Err(Error::BadContent(format!(
                "manifest {} is not a valid image manifest: its media type is {}, expected {OCI_MANIFEST} or {DOCKER_MANIFEST}",
                self.digest, self.media_type
            )));
        }
        parse_object(&self.bytes).map_err(|e| {
            Error::BadContent(format!(
                "manifest {} is not a valid image manifest: {e}",
                self.digest
            ))
        })
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, &self.digest, self.bytes.len() as u64)
    }
}

/// Parses a JSON document that must be an object: serde would also accept
/// a struct written as an array of its fields, which no registry sends.
pub fn parse_object<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<T, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => Err("the document is not a JSON object".to_string()),
    }
}

fn document_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = parse_object(bytes).ok()?;
    probe
        .media_type
        .filter(|m| !m.is_empty())
        .or_else(|| probe.manifests.map(|_| OCI_INDEX.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialisation_is_canonical() {
        let d = Digest::of(b"x");
        let mut m = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(OCI_CONFIG, &d, 1),
            layers: vec![],
            subject: None,
            annotations: BTreeMap::new(),
        };
        m.annotations.insert("z".into(), "1".into());
        m.annotations.insert("a".into(), "2".into());
        let s = String::from_utf8(m.to_bytes()).unwrap();
        assert!(s.find("\"a\"").unwrap() < s.find("\"z\"").unwrap());
        assert!(s.starts_with("{\"schemaVersion\":2,\"mediaType\""));
    }

    #[test]
    fn arrays_are_not_manifests() {
        let f = FetchedManifest::new(
            br#"[2, null, null, {"mediaType":"x","digest":"d","size":1}, []]"#.to_vec(),
            None,
        );
        assert!(f.image_manifest().is_err());
        assert!(parse_object::<ImageManifest>(b"  [").is_err());
    }

    #[test]
    fn media_type_falls_back_to_document() {
        let f = FetchedManifest::new(br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(), None);
        assert!(f.is_index());
    }
}
