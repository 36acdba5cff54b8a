//! Images shaped exactly as buildx (0.10 and later) pushes them: an OCI
//! index holding the image and its attestation manifest. The attestation
//! has platform `unknown/unknown`, the annotations
//! `vnd.docker.reference.type: attestation-manifest` and
//! `vnd.docker.reference.digest: <image digest>`, an image config for
//! `unknown/unknown` and one in-toto layer (an SLSA provenance statement
//! about the image). The image is built with umoci; the whole index is
//! written into an OCI layout and pushed with `skopeo copy --all`.

use ocistep::oci::digest::Digest;
use ocistep::store::layout::Layout;
use serde_json::{json, Value};

use super::assembly::OCI_INDEX;
use super::images::{inspect_raw, platform_layout, TestPlatform};
use super::{run_ok, tool};

/// The media type of an in-toto statement layer.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A buildx-shaped index pushed to a registry.
#[derive(Debug, Clone)]
pub struct BuildxImage {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// `HOST/REPO`.
    pub name: String,
    /// The index digest.
    pub index: String,
    /// The image manifest's digest.
    pub image: String,
    /// The attestation manifest's digest.
    pub attestation: String,
}

/// Builds an image for `platform` (`os/arch[/variant]`) and pushes it,
/// with its attestation, as one buildx-shaped index to `host/repo:tag`.
pub fn push_buildx_image(host: &str, repo: &str, tag: &str, platform: &str) -> BuildxImage {
    let scratch = tempfile::tempdir().expect("a directory for the layout");
    let dir = scratch.path().join("layout");
    let platform = TestPlatform::parse(platform);
    let built = platform_layout(&dir, "image", &platform);
    let layout = Layout::open(&dir).expect("open the layout");
    let image_bytes = std::fs::read(layout.blob_path(&built.digest)).expect("the image manifest");

    let put = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        layout.put_blob_bytes(&digest, bytes).expect("store a blob");
        json!({"digest": digest.to_string(), "size": bytes.len()})
    };
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": format!("pkg:docker/{repo}@{tag}?platform={}", platform.label().replace('/', "%2F")),
                     "digest": {"sha256": built.digest.hex()}}],
        "predicate": {"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1"},
    }))
    .unwrap();
    let layer = put(&statement);
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }))
    .unwrap();
    let config = put(&config);
    let attestation = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config["digest"], "size": config["size"]},
        "layers": [{"mediaType": IN_TOTO, "digest": layer["digest"], "size": layer["size"],
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
    }))
    .unwrap();
    let attestation_desc = put(&attestation);
    let mut image_platform = json!({"architecture": platform.architecture, "os": platform.os});
    if let Some(v) = &platform.variant {
        image_platform["variant"] = v.as_str().into();
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": built.digest.to_string(), "size": image_bytes.len(),
             "platform": image_platform},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": attestation_desc["digest"], "size": attestation_desc["size"],
             "annotations": {"vnd.docker.reference.digest": built.digest.to_string(),
                             "vnd.docker.reference.type": "attestation-manifest"},
             "platform": {"architecture": "unknown", "os": "unknown"}},
        ],
    }))
    .unwrap();
    let index_digest = Digest::of(&index);
    layout
        .put_blob_bytes(&index_digest, &index)
        .expect("store the index");
    layout
        .set_tag(
            tag,
            ocistep::oci::manifest::Descriptor::new(OCI_INDEX, &index_digest, index.len() as u64),
        )
        .expect("tag the index");
    let reference = format!("{host}/{repo}:{tag}");
    copy_all(
        &format!("oci:{}:{tag}", dir.display()),
        &format!("docker://{reference}"),
    );
    assert_eq!(
        Digest::of(&inspect_raw(&format!("docker://{reference}"))),
        index_digest,
        "{reference} holds the index as built"
    );
    BuildxImage {
        reference,
        name: format!("{host}/{repo}"),
        index: index_digest.to_string(),
        image: built.digest.to_string(),
        attestation: attestation_desc["digest"].as_str().unwrap().to_string(),
    }
}

/// Copies `image` (`docker://…` or `oci:…`) with `skopeo copy --all` into a
/// fresh OCI layout and returns the digest of the top manifest copied.
pub fn skopeo_copy_all(image: &str) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:copy", scratch.path().join("l").display());
    copy_all(image, &dest);
    Digest::of(&inspect_raw(&dest)).to_string()
}

/// `skopeo copy --all --preserve-digests SRC DEST`, TLS not verified.
fn copy_all(src: &str, dest: &str) {
    run_ok(tool("skopeo").args([
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dest,
    ]));
}

/// The entries of an index document that are attestations.
pub fn attestations(index: &Value) -> Vec<&Value> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .filter(|c| c["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .collect()
}
