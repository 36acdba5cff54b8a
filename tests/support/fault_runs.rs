//! What the fault tests share: a status fault, bundles pushed straight to
//! the registry, the layer a manifest names, and the proxy's requests
//! labelled by what they were for.

use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;

use super::faults::{Fault, FaultProxy};
use super::tree::sample_tree;
use super::{http_request_with, Registry, Run};

/// The manifest media type the fault tests ask the registry for.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes in the fault tests carry a fixed source timestamp, so their
/// digests can be compared.
pub const STAMP: [&str; 2] = ["--source-timestamp", "1700000000"];

pub fn status(code: u16) -> Fault {
    Fault::Status {
        code,
        retry_after: None,
    }
}

/// The layer digest of the bundle at `repo:tag`, read from the registry.
pub fn layer_digest(reg: &Registry, repo: &str, tag: &str) -> Digest {
    let manifest = http_request_with(
        "GET",
        &reg.host(),
        &format!("/v2/{repo}/manifests/{tag}"),
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    Digest::parse(manifest["layers"][0]["digest"].as_str().unwrap()).unwrap()
}

/// The status of a HEAD of the manifest `repo:tag` in the registry: 404
/// when a failed push left no tag.
pub fn tag_status(reg: &Registry, repo: &str, tag: &str) -> u16 {
    http_request_with(
        "HEAD",
        &reg.host(),
        &format!("/v2/{repo}/manifests/{tag}"),
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap()
    .status
}

/// Pushes the sample tree straight to the registry as `app:v1`; returns
/// the source directory.
pub fn pushed_sample(reg: &Registry, dir: &Path) -> PathBuf {
    let src = dir.join("src");
    sample_tree(&src);
    Run::push_bundle(&src)
        .image(format!("{}/app:v1", reg.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(dir.join("d"))
        .assert()
        .success();
    src
}

/// Pushes a one-file tree straight to the registry as `{repo}:base`, so the
/// repository exists.
pub fn existing_repository(reg: &Registry, dir: &Path, repo: &str) {
    let base = dir.join(format!("{repo}-base"));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("base.txt"), repo).unwrap();
    let digest = dir.join(format!("{repo}-base.digest"));
    Run::push_bundle(&base)
        .image(format!("{}/{repo}:base", reg.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest)
        .assert()
        .success();
}

/// The proxy's requests as `METHOD what`, without their faults (see
/// [`labelled`]).
pub fn request_labels(proxy: &FaultProxy, layer: &Digest) -> Vec<String> {
    labelled(proxy, layer).into_iter().map(|(r, _)| r).collect()
}

/// The proxy's requests as (`METHOD what`, fault): `what` is `layer` for
/// the layer (by digest), `manifest`, `upload` for opening, streaming and
/// cancelling an upload session, and `config` for the rest (the config
/// blob).
pub fn labelled(proxy: &FaultProxy, layer: &Digest) -> Vec<(String, String)> {
    proxy
        .hits()
        .into_iter()
        .map(|(method, target, fault)| {
            let what = if target.contains("/tags/list") {
                "tags"
            } else if target.contains(layer.hex()) {
                "layer"
            } else if target.contains("/manifests/") {
                "manifest"
            } else if method == "POST" || method == "PATCH" || method == "DELETE" {
                "upload"
            } else {
                "config"
            };
            (format!("{method} {what}"), fault.unwrap_or_default())
        })
        .collect()
}
