//! OCI 1.1 referrers: artifacts (signatures, SBOMs, provenance) whose
//! manifest names another manifest as its `subject`.
//!
//! A registry that serves the referrers API (and answers a push with
//! `OCI-Subject`) keeps the list itself. Elsewhere (distribution 2.8, a
//! layout) the tag schema keeps it: the tag `<alg>-<hex>` of the subject's
//! digest holds an OCI index of its referrers, which every attach updates
//! ([`tag_schema`]). [`discover`] lists referrers either way, [`attach`]
//! pushes one, and [`copy`] moves them (and cosign's tags) with an image.

pub mod attach;
pub mod copy;
pub mod discover;
pub mod tag_schema;

use crate::oci::digest::Digest;
use crate::oci::manifest::{parse_object, Descriptor, FetchedManifest, OCI_INDEX};

/// The tag of the tag schema for `subject`: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// How a referrer is listed: its media type, digest and size, its
/// `artifactType` (the config's media type when it has none) and the
/// annotations of its manifest.
pub fn descriptor_of(manifest: &FetchedManifest) -> Descriptor {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "artifactType", default)]
        artifact_type: Option<String>,
        #[serde(default)]
        config: Option<Descriptor>,
        #[serde(default)]
        annotations: std::collections::BTreeMap<String, String>,
    }
    let probe: Option<Probe> = parse_object(&manifest.bytes).ok();
    let mut desc = manifest.descriptor();
    if let Some(probe) = probe {
        desc.artifact_type = probe
            .artifact_type
            .or_else(|| probe.config.map(|c| c.media_type));
        desc.annotations = probe.annotations;
    }
    desc
}

/// An OCI index listing `referrers`, as the API and the tag schema hold them.
pub fn referrers_index(referrers: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": referrers,
    }))
    .expect("an index serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tag_replaces_the_colon() {
        let d = Digest::of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn descriptor_takes_artifact_type_from_config_when_absent() {
        let m = FetchedManifest::new(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.dev.cosign","digest":"sha256:aa","size":1},"layers":[],"annotations":{"a":"b"}}"#.to_vec(),
            None,
        );
        let d = descriptor_of(&m);
        assert_eq!(
            d.artifact_type.as_deref(),
            Some("application/vnd.dev.cosign")
        );
        assert_eq!(d.annotations["a"], "b");
    }
}
