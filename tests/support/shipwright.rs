//! What the Shipwright tests share: bundles made the way Shipwright's
//! `bundle.PackAndPush` makes them (a Docker schema 2 image, no
//! `artifactType`, a config `created` at the epoch, one tar+gzip layer with
//! the files' real mtimes and owners), the directory of the trivy stand-in,
//! and the exit codes Shipwright's steps use.

use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::Descriptor;
use ocistep::store::layout::Layout;

use super::tree::gzip;
use super::Run;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Exit codes of Shipwright's image-processing step, which ocistep keeps.
pub const EXIT_VULNERABLE: i32 = 22;
pub const EXIT_IMAGE_MISSING: i32 = 100;

/// One entry of a Shipwright bundle: a directory (`None`) or a file, with
/// its mtime.
pub struct Entry<'a> {
    pub name: &'a str,
    pub content: Option<&'a [u8]>,
    pub mtime: u64,
}

/// The tar Shipwright's `bundle.Pack` writes for `entries`: headers from
/// the files' stat (mtime, a uid, gid and user name of the build user).
pub fn bundle_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(e.mtime);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_username("builder").unwrap();
        match e.content {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder.append_data(&mut h, e.name, &[][..]).unwrap();
            }
            Some(content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(content.len() as u64);
                builder.append_data(&mut h, e.name, content).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Stores, under `tag` in the OCI layout `dir`, the image Shipwright's
/// `bundle.PackAndPush` makes of `entries`; returns the manifest digest.
/// `ocistep --copy` then puts it into a registry byte for byte.
pub fn bundle_layout(dir: &Path, tag: &str, entries: &[Entry<'_>]) -> Digest {
    let tar = bundle_tar(entries);
    let layer = gzip(&tar);
    let layer_digest = Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "created": "1970-01-01T00:00:00Z",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&tar).to_string()]},
        "history": [{"created": "1970-01-01T00:00:00Z"}],
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest.to_string()},
        "layers": [{"mediaType": DOCKER_LAYER, "size": layer.len(), "digest": layer_digest.to_string()}],
    }))
    .unwrap();
    let digest = Digest::of(&manifest);
    let layout = Layout::open_or_create(dir).unwrap();
    layout.put_blob_bytes(&layer_digest, &layer).unwrap();
    layout.put_blob_bytes(&config_digest, &config).unwrap();
    layout.put_blob_bytes(&digest, &manifest).unwrap();
    layout
        .set_tag(
            tag,
            Descriptor::new(DOCKER_MANIFEST, &digest, manifest.len() as u64),
        )
        .unwrap();
    digest
}

/// Pushes a Shipwright bundle of `entries` to `reference` (a registry on
/// loopback) with `ocistep --copy`; returns its digest.
pub fn push_bundle(reference: &str, entries: &[Entry<'_>]) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let digest = bundle_layout(&scratch.path().join("layout"), "v1", entries);
    let layout = format!("oci:{}:v1", scratch.path().join("layout").display());
    Run::copy(&layout, reference).assert().success();
    digest.to_string()
}

/// The size Shipwright reports for an image manifest: its config's and
/// layers' sizes added up.
pub fn config_plus_layers(manifest: &serde_json::Value) -> u64 {
    let size = |d: &serde_json::Value| d["size"].as_u64().expect("a descriptor size");
    size(&manifest["config"])
        + manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(size)
            .sum::<u64>()
}

/// The directory holding the trivy stand-in (`tests/fixtures/trivy`).
pub fn standin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `PATH` with the trivy stand-in's directory first.
pub fn path_with_standin() -> std::ffi::OsString {
    let mut paths = vec![standin_dir()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// `PATH` without any directory that holds a `trivy`.
pub fn path_without_trivy() -> std::ffi::OsString {
    let paths: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|dir| !dir.join("trivy").exists())
        .collect();
    std::env::join_paths(paths).unwrap()
}
