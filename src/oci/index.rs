//! Building image indexes: children sorted by platform so the digest does
//! not depend on argument order, OCI or Docker manifest-list format.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::attestation;
use crate::oci::manifest::{Descriptor, FetchedManifest, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::oci::platform::Platform;

/// Which kind of index to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexFormat {
    /// `application/vnd.oci.image.index.v1+json` (the default).
    Oci,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`, for old clients.
    Docker,
}

impl IndexFormat {
    /// The index's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            IndexFormat::Oci => OCI_INDEX,
            IndexFormat::Docker => DOCKER_MANIFEST_LIST,
        }
    }
}

/// One child of the index: the manifest descriptor and its platform.
#[derive(Debug, Clone)]
pub struct IndexChild {
    /// The child's platform (`unknown/unknown` for an attestation).
    pub platform: Platform,
    /// The child manifest (its own media type, digest, size) with the
    /// annotations of its entry.
    pub descriptor: Descriptor,
}

impl IndexChild {
    /// The child an existing index entry describes: its platform as
    /// written (`unknown/unknown` when it names none), its annotations kept.
    pub fn from_entry(desc: &Descriptor) -> IndexChild {
        let platform = desc
            .platform
            .as_ref()
            .and_then(|v| serde_json::from_value::<Platform>(v.clone()).ok())
            .map(Platform::normalized)
            .unwrap_or_else(Platform::unknown);
        IndexChild {
            platform,
            descriptor: Descriptor {
                platform: None,
                ..desc.clone()
            },
        }
    }

    /// True for an attestation manifest (never a platform).
    pub fn is_attestation(&self) -> bool {
        attestation::is_attestation(&self.descriptor)
    }

    /// The digest of the image this attestation is about, if it is one.
    pub fn attests(&self) -> Option<&str> {
        attestation::attested_digest(&self.descriptor)
    }
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// Sorts `children` into the index order (os, architecture, variant,
/// os.version, digest; attestations last) and returns the index bytes.
/// Entries keep their annotations, except in a Docker manifest list.
pub fn build(
    children: &mut [IndexChild],
    format: IndexFormat,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    children.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let manifests = children
        .iter()
        .map(|c| {
            let mut entry = Descriptor {
                platform: Some(serde_json::to_value(&c.platform).expect("platform serialises")),
                ..c.descriptor.clone()
            };
            // A Docker manifest list has no place for them.
            if format == IndexFormat::Docker {
                entry.annotations.clear();
                entry.artifact_type = None;
            }
            entry
        })
        .collect();
    let empty = BTreeMap::new();
    let index = Index {
        schema_version: 2,
        media_type: format.media_type(),
        manifests,
        annotations: if format == IndexFormat::Oci {
            annotations
        } else {
            &empty
        },
    };
    serde_json::to_vec(&index).expect("index serialises")
}

/// The platform an index entry declares, normalised; none for an
/// attestation manifest, which is never a platform.
pub fn child_platform(desc: &Descriptor) -> Option<Platform> {
    if attestation::is_attestation(desc) {
        return None;
    }
    desc.platform
        .as_ref()
        .and_then(|v| serde_json::from_value::<Platform>(v.clone()).ok())
        .map(Platform::normalized)
}

fn sort_key(c: &IndexChild) -> (bool, &str, &str, &str, &str, &str) {
    let p = &c.platform;
    (
        p.is_unknown(),
        p.os.as_str(),
        p.architecture.as_str(),
        p.variant.as_deref().unwrap_or(""),
        p.os_version.as_deref().unwrap_or(""),
        c.descriptor.digest.as_str(),
    )
}

/// The index's own annotations.
pub fn index_annotations(manifest: &FetchedManifest) -> Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let index: Index = crate::oci::manifest::parse_object(&manifest.bytes)
        .map_err(|e| Error::BadContent(format!("index {} is not valid: {e}", manifest.digest)))?;
    Ok(index.annotations)
}

/// The format an existing index is written in.
pub fn format_of(manifest: &FetchedManifest) -> IndexFormat {
    if manifest.media_type == DOCKER_MANIFEST_LIST {
        IndexFormat::Docker
    } else {
        IndexFormat::Oci
    }
}

/// The `manifests` of an index or manifest list.
pub fn index_children(manifest: &FetchedManifest) -> Result<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let index: Index = crate::oci::manifest::parse_object(&manifest.bytes)
        .map_err(|e| Error::BadContent(format!("index {} is not valid: {e}", manifest.digest)))?;
    Ok(index.manifests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Digest;
    use crate::oci::manifest::OCI_MANIFEST;

    fn child(p: &str, seed: &[u8]) -> IndexChild {
        IndexChild {
            platform: Platform::parse(p).unwrap(),
            descriptor: Descriptor::new(OCI_MANIFEST, &Digest::of(seed), 10),
        }
    }

    #[test]
    fn order_of_children_does_not_change_the_bytes() {
        let mut a = vec![
            child("linux/arm64", b"1"),
            child("linux/amd64", b"2"),
            child("linux/arm/v7", b"3"),
        ];
        let mut b = vec![
            child("linux/arm/v7", b"3"),
            child("linux/arm64", b"1"),
            child("linux/amd64", b"2"),
        ];
        let ann = BTreeMap::new();
        assert_eq!(
            build(&mut a, IndexFormat::Oci, &ann),
            build(&mut b, IndexFormat::Oci, &ann)
        );
        assert_eq!(a[0].platform.architecture, "amd64");
    }

    #[test]
    fn docker_format_has_its_media_type_and_no_annotations() {
        let mut c = vec![child("linux/amd64", b"1")];
        let mut ann = BTreeMap::new();
        ann.insert("k".to_string(), "v".to_string());
        let v: serde_json::Value =
            serde_json::from_slice(&build(&mut c, IndexFormat::Docker, &ann)).unwrap();
        assert_eq!(v["mediaType"], DOCKER_MANIFEST_LIST);
        assert!(v.get("annotations").is_none());
        let v: serde_json::Value =
            serde_json::from_slice(&build(&mut c, IndexFormat::Oci, &ann)).unwrap();
        assert_eq!(v["annotations"]["k"], "v");
        assert_eq!(v["manifests"][0]["platform"]["os"], "linux");
    }
}
