//! The source bundle format: one OCI image manifest with one tar+gzip (or,
//! when asked, tar+zstd) layer and a minimal OCI image config, marked with an
//! OCI 1.1 `artifactType`.
//!
//! The image config keeps generic image tools (skopeo, umoci, crane, the
//! Shipwright bundle puller) working; `artifactType` lets OCI 1.1 artifact
//! tools (ORAS, referrers filters) recognise a source bundle.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::{
    Descriptor, ImageManifest, ANNOTATION_CREATED, ANNOTATION_TITLE, DOCKER_LAYER_GZIP, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};
use crate::timestamp;

/// The `artifactType` of a source bundle manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.ocistep.source-bundle.v1";
/// The title of the single layer (what `oras pull` names the file).
pub const LAYER_TITLE: &str = "source.tar.gz";
/// The title of a zstd-compressed layer.
pub const LAYER_TITLE_ZSTD: &str = "source.tar.zst";
/// Media type of an OCI tar+zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The bundle's manifest and config, ready to push.
pub struct BundleDocuments {
    /// Config bytes.
    pub config: Vec<u8>,
    /// Config descriptor.
    pub config_desc: Descriptor,
    /// Layer descriptor.
    pub layer_desc: Descriptor,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
}

/// What a bundle says about itself.
pub struct BundleInfo {
    /// The single layer.
    pub layer: Descriptor,
    /// How the layer is compressed.
    pub compression: Compression,
    /// The source timestamp, when the bundle carries one.
    pub source_timestamp: Option<u64>,
}

#[derive(Serialize)]
struct Config<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    architecture: &'a str,
    os: &'a str,
    config: Empty,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

/// Builds the config and manifest for a packed tar+gzip layer. The same
/// inputs give the same bytes.
pub fn build(
    layer_digest: &Digest,
    layer_size: u64,
    diff_id: &Digest,
    source_timestamp: Option<u64>,
    annotations: &BTreeMap<String, String>,
) -> BundleDocuments {
    build_compressed(
        Compression::Gzip,
        layer_digest,
        layer_size,
        diff_id,
        source_timestamp,
        annotations,
    )
}

/// The media type and title of a bundle layer compressed with `compression`.
pub fn layer_kind(compression: Compression) -> (&'static str, &'static str) {
    match compression {
        Compression::None => (OCI_LAYER_TAR, "source.tar"),
        Compression::Gzip => (OCI_LAYER_GZIP, LAYER_TITLE),
        Compression::Zstd => (OCI_LAYER_ZSTD, LAYER_TITLE_ZSTD),
    }
}

/// Builds the config of a bundle whose tar has the digest `diff_id`, and
/// its descriptor: it depends on nothing else, so it can be uploaded before
/// the layer is compressed to its end.
pub fn build_config(diff_id: &Digest, source_timestamp: Option<u64>) -> (Vec<u8>, Descriptor) {
    let config = serde_json::to_vec(&Config {
        created: source_timestamp.map(timestamp::to_rfc3339),
        // A source tree runs nowhere by itself; "unknown" is what OCI
        // tooling uses for platform-less content (e.g. attestations).
        architecture: "unknown",
        os: "unknown",
        config: Empty {},
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![diff_id.as_str()],
        },
    })
    .expect("config serialises");
    let desc = Descriptor::new(OCI_CONFIG, &Digest::of(&config), config.len() as u64);
    (config, desc)
}

/// Builds the config and manifest for a layer packed with `compression`;
/// `diff_id` is the digest of the uncompressed tar whatever the compression.
/// The same inputs give the same bytes.
pub fn build_compressed(
    compression: Compression,
    layer_digest: &Digest,
    layer_size: u64,
    diff_id: &Digest,
    source_timestamp: Option<u64>,
    annotations: &BTreeMap<String, String>,
) -> BundleDocuments {
    let (config, config_desc) = build_config(diff_id, source_timestamp);
    let created = source_timestamp.map(timestamp::to_rfc3339);
    let (media_type, title) = layer_kind(compression);
    let mut layer_desc = Descriptor::new(media_type, layer_digest, layer_size);
    layer_desc
        .annotations
        .insert(ANNOTATION_TITLE.to_string(), title.to_string());
    let mut manifest_annotations = annotations.clone();
    if let Some(created) = created {
        manifest_annotations.insert(ANNOTATION_CREATED.to_string(), created);
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: config_desc.clone(),
        layers: vec![layer_desc.clone()],
        subject: None,
        annotations: manifest_annotations,
    }
    .to_bytes();
    BundleDocuments {
        config,
        config_desc,
        layer_desc,
        manifest,
    }
}

/// Checks that a manifest is a source bundle (one tar layer: gzip, zstd or plain)
/// and reads what the pull needs from it.
pub fn inspect(manifest: &ImageManifest, what: &str) -> Result<BundleInfo> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(Error::BadContent(format!(
            "{what} is not a source bundle: it has {} layers, a bundle has exactly one",
            manifest.layers.len()
        )));
    };
    let compression = match layer.media_type.as_str() {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Compression::Gzip,
        OCI_LAYER_ZSTD => Compression::Zstd,
        OCI_LAYER_TAR => Compression::None,
        other => {
            return Err(Error::BadContent(format!(
                "{what} is not a source bundle: its layer has media type {other}, expected {OCI_LAYER_GZIP} or {OCI_LAYER_ZSTD}"
            )))
        }
    };
    layer.parsed_digest()?;
    let source_timestamp = manifest
        .annotations
        .get(ANNOTATION_CREATED)
        .and_then(|s| timestamp::parse_rfc3339(s));
    Ok(BundleInfo {
        layer: layer.clone(),
        compression,
        source_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_is_deterministic_and_inspectable() {
        let l = Digest::of(b"layer");
        let d = Digest::of(b"tar");
        let mut ann = BTreeMap::new();
        ann.insert("b".to_string(), "2".to_string());
        ann.insert("a".to_string(), "1".to_string());
        let one = build(&l, 5, &d, Some(1_700_000_000), &ann);
        let two = build(&l, 5, &d, Some(1_700_000_000), &ann);
        assert_eq!(one.manifest, two.manifest);
        let m: ImageManifest = serde_json::from_slice(&one.manifest).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        let info = inspect(&m, "x").unwrap();
        assert_eq!(info.source_timestamp, Some(1_700_000_000));
        assert_eq!(info.compression, Compression::Gzip);
        let config: serde_json::Value = serde_json::from_slice(&one.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], d.as_str());
        assert_ne!(build(&l, 5, &d, Some(1), &ann).manifest, one.manifest);
    }

    #[test]
    fn zstd_bundles_name_their_layer_so_and_keep_the_diff_id() {
        let l = Digest::of(b"layer");
        let d = Digest::of(b"tar");
        let docs = build_compressed(Compression::Zstd, &l, 5, &d, None, &BTreeMap::new());
        let m: ImageManifest = serde_json::from_slice(&docs.manifest).unwrap();
        assert_eq!(m.layers[0].media_type, OCI_LAYER_ZSTD);
        assert_eq!(m.layers[0].annotations[ANNOTATION_TITLE], LAYER_TITLE_ZSTD);
        assert_eq!(inspect(&m, "x").unwrap().compression, Compression::Zstd);
        let config: serde_json::Value = serde_json::from_slice(&docs.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], d.as_str());
        let gzip = build(&l, 5, &d, None, &BTreeMap::new());
        assert_eq!(
            gzip.config, docs.config,
            "the config does not depend on the compression"
        );
        assert_ne!(gzip.manifest, docs.manifest);
        let m: ImageManifest = serde_json::from_slice(&gzip.manifest).unwrap();
        assert_eq!(m.layers[0].media_type, OCI_LAYER_GZIP);
    }

    #[test]
    fn unknown_layer_media_types_are_refused() {
        let l = Digest::of(b"layer");
        let docs = build(&l, 5, &l, None, &BTreeMap::new());
        let mut m: ImageManifest = serde_json::from_slice(&docs.manifest).unwrap();
        m.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+lz4".to_string();
        let err = inspect(&m, "x").err().unwrap();
        assert_eq!(err.exit_code(), crate::ExitCode::BadContent);
        assert!(err.to_string().contains(OCI_LAYER_ZSTD), "{err}");
    }

    #[test]
    fn multi_layer_images_are_not_bundles() {
        let l = Digest::of(b"layer");
        let docs = build(&l, 5, &l, None, &BTreeMap::new());
        let mut m: ImageManifest = serde_json::from_slice(&docs.manifest).unwrap();
        m.layers.push(m.layers[0].clone());
        assert_eq!(
            inspect(&m, "x").err().unwrap().exit_code(),
            crate::ExitCode::BadContent
        );
    }
}
