//! Per-platform container images for the index tests, made with `umoci`
//! and pushed with `skopeo`.
//!
//! [`platform_layout`] builds a one-layer image in an OCI layout: the layer
//! holds `/platform`, a small file whose content names the platform and the
//! tag (so every image has its own digests), and the config carries the
//! platform. umoci sets `os` and `architecture`; `variant` and `os.version`,
//! which umoci cannot set, are patched in by rewriting the config blob and
//! the manifest in the layout. [`push_layout`] copies such a layout to a
//! registry and [`push_platform_image`] does both.

use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::{Descriptor, DOCKER_MANIFEST, OCI_MANIFEST};
use ocistep::store::layout::Layout;

use super::tree::write;
use super::{run_ok, tool, Registry, Run};

/// A platform to build an image for, exactly as it goes into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPlatform {
    /// `os` of the config, e.g. `linux`.
    pub os: String,
    /// `architecture` of the config, e.g. `arm64`.
    pub architecture: String,
    /// `variant` of the config, e.g. `v8`.
    pub variant: Option<String>,
    /// `os.version` of the config, e.g. `10.0.17763.1234`.
    pub os_version: Option<String>,
}

impl TestPlatform {
    /// Parses `os/arch[/variant]` without any normalisation (`linux/arm64/v8`
    /// keeps its `v8`).
    pub fn parse(s: &str) -> Self {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
                os_version: None,
            },
            [os, arch, variant] => Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
                os_version: None,
            },
            _ => panic!("test platform {s:?} is not os/arch[/variant]"),
        }
    }

    /// The same platform with `os.version` set.
    pub fn with_os_version(mut self, version: &str) -> Self {
        self.os_version = Some(version.to_string());
        self
    }

    /// `os/arch[/variant]` as given (no `os.version`).
    pub fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// `os-arch[-variant]`, usable in repository names and tags.
    pub fn slug(&self) -> String {
        self.label().replace('/', "-")
    }
}

/// The manifest format an image is pushed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// As umoci wrote it: an OCI image manifest.
    Oci,
    /// Converted by skopeo to a Docker schema 2 manifest
    /// (`application/vnd.docker.distribution.manifest.v2+json`).
    DockerV2S2,
}

impl PushFormat {
    /// The media type of the pushed manifest.
    pub fn media_type(self) -> &'static str {
        match self {
            PushFormat::Oci => OCI_MANIFEST,
            PushFormat::DockerV2S2 => DOCKER_MANIFEST,
        }
    }
}

/// An image in an OCI layout made by [`platform_layout`].
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`) naming the image.
    pub tag: String,
    /// The manifest digest.
    pub digest: Digest,
}

impl LayoutImage {
    /// `oci:LAYOUT:TAG`, the image for skopeo and ocistep.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// An image pushed to a registry by [`push_platform_image`].
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// `HOST/REPO`.
    pub name: String,
    /// The platform in its config.
    pub platform: TestPlatform,
    /// The manifest digest the registry holds.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The exact manifest bytes the registry holds.
    pub manifest: Vec<u8>,
}

impl PushedImage {
    /// `HOST/REPO@sha256:…`.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }

    /// The digests of the config and the layers.
    pub fn blobs(&self) -> Vec<String> {
        blobs_of(&self.manifest)
    }
}

/// The digests of the config and the layers of an image manifest.
pub fn blobs_of(manifest: &[u8]) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).expect("the manifest is JSON");
    std::iter::once(&value["config"])
        .chain(value["layers"].as_array().into_iter().flatten())
        .map(|d| {
            d["digest"]
                .as_str()
                .expect("descriptor has a digest")
                .to_string()
        })
        .collect()
}

/// Creates an OCI layout at `layout` (made if missing) holding, under `tag`,
/// one image for `platform`: one layer with `/platform`, whose content names
/// the platform and the tag, and a config with `os`, `architecture` and,
/// when set, `variant` and `os.version`.
pub fn platform_layout(layout: &Path, tag: &str, platform: &TestPlatform) -> LayoutImage {
    if !layout.join("index.json").is_file() {
        run_ok(tool("umoci").arg("init").arg("--layout").arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run_ok(tool("umoci").args(["new", "--image", &image]));

    let content_dir = tempfile::tempdir().expect("create a directory for the platform file");
    let file = content_dir.path().join("platform");
    std::fs::write(&file, format!("{} {tag}\n", platform.label())).expect("write platform file");
    run_ok(
        tool("umoci")
            .args(["insert", "--rootless", "--image", &image])
            .arg(&file)
            .arg("/platform"),
    );
    run_ok(tool("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        &platform.os,
        "--architecture",
        &platform.architecture,
    ]));

    let digest = patch_config(layout, tag, |config| {
        if let Some(variant) = &platform.variant {
            config["variant"] = variant.as_str().into();
        }
        if let Some(version) = &platform.os_version {
            config["os.version"] = version.as_str().into();
        }
    });
    LayoutImage {
        layout: layout.to_path_buf(),
        tag: tag.to_string(),
        digest,
    }
}

/// Rewrites the config of the image `tag` in `layout` with `edit`, stores
/// the new config and manifest, points `tag` at the new manifest and
/// returns its digest. The manifest is left alone when `edit` changes
/// nothing.
pub fn patch_config(layout: &Path, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Digest {
    let layout = Layout::open(layout).expect("open the layout");
    let desc = layout.resolve(Some(tag), None).expect("find the tag");
    let fetched = layout.read_manifest(&desc).expect("read the manifest");
    let mut manifest = fetched.image_manifest().expect("an image manifest");

    let config_digest = manifest.config.parsed_digest().expect("config digest");
    let config_bytes =
        std::fs::read(layout.blob_path(&config_digest)).expect("read the config blob");
    let mut config: serde_json::Value =
        serde_json::from_slice(&config_bytes).expect("the config is JSON");
    let before = config.clone();
    edit(&mut config);
    if config == before {
        return fetched.digest;
    }

    let config_bytes = serde_json::to_vec(&config).expect("serialise the config");
    let config_digest = Digest::of(&config_bytes);
    layout
        .put_blob_bytes(&config_digest, &config_bytes)
        .expect("store the config");
    manifest.config.digest = config_digest.to_string();
    manifest.config.size = config_bytes.len() as u64;
    manifest.media_type = Some(OCI_MANIFEST.to_string());

    let manifest_bytes = manifest.to_bytes();
    let digest = Digest::of(&manifest_bytes);
    layout
        .put_blob_bytes(&digest, &manifest_bytes)
        .expect("store the manifest");
    layout
        .set_tag(
            tag,
            Descriptor::new(OCI_MANIFEST, &digest, manifest_bytes.len() as u64),
        )
        .expect("retag the layout");
    digest
}

/// Copies the image `tag` of `layout` to `dest` (`HOST/REPO:TAG`, plain
/// HTTP or unverified TLS) with skopeo, in `format`, and returns the
/// digest of the manifest the registry now holds.
pub fn push_layout(layout: &Path, tag: &str, dest: &str, format: PushFormat) -> String {
    let scratch = tempfile::tempdir().expect("create a directory for the digest file");
    let digest_file = scratch.path().join("digest");
    let mut cmd = tool("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg("--digestfile")
        .arg(&digest_file);
    if format == PushFormat::DockerV2S2 {
        cmd.args(["--format", "v2s2"]);
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"));
    run_ok(&mut cmd);
    std::fs::read_to_string(&digest_file)
        .expect("skopeo wrote the digest file")
        .trim()
        .to_string()
}

/// Builds an image for `platform` (see [`platform_layout`]) and pushes it to
/// `host/repo:tag` in `format`. The result carries the digest and the exact
/// manifest bytes the registry serves.
pub fn push_platform_image(
    host: &str,
    repo: &str,
    tag: &str,
    platform: &TestPlatform,
    format: PushFormat,
) -> PushedImage {
    let scratch = tempfile::tempdir().expect("create a directory for the layout");
    let layout = scratch.path().join("layout");
    platform_layout(&layout, tag, platform);
    let reference = format!("{host}/{repo}:{tag}");
    let digest = push_layout(&layout, tag, &reference, format);
    let manifest = inspect_raw(&format!("docker://{reference}"));
    assert_eq!(
        Digest::of(&manifest).to_string(),
        digest,
        "skopeo reported the digest of what {reference} holds"
    );
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    assert_eq!(media_type, format.media_type(), "{reference} media type");
    PushedImage {
        reference,
        name: format!("{host}/{repo}"),
        platform: platform.clone(),
        digest,
        media_type,
        manifest,
    }
}

/// `skopeo inspect --raw` of `image` (with its transport, e.g.
/// `docker://HOST/REPO:TAG` or `oci:DIR:TAG`; TLS not verified): the exact
/// manifest or index bytes. Panics when skopeo fails.
pub fn inspect_raw(image: &str) -> Vec<u8> {
    try_inspect_raw(image).unwrap_or_else(|e| panic!("skopeo inspect --raw {image}: {e}"))
}

/// Like [`inspect_raw`], with skopeo's stderr as the error.
pub fn try_inspect_raw(image: &str) -> Result<Vec<u8>, String> {
    let mut cmd = tool("skopeo");
    cmd.args(["inspect", "--raw"]);
    if image.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    let output = cmd
        .arg(image)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo: {e}"));
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Pushes four single-file bundles to `reg` and assembles them into the
/// index `src:v1`; returns its reference.
pub fn four_bundle_index(reg: &Registry, dir: &Path) -> String {
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64", "ppc64le", "s390x"] {
        write(&dir.join(arch), "arch", arch.as_bytes());
        Run::push_bundle(dir.join(arch))
            .image(format!("{}/src:{arch}", reg.host()))
            .assert()
            .success();
        entries.push(format!("linux/{arch}={}/src:{arch}", reg.host()));
    }
    let index = format!("{}/src:v1", reg.host());
    Run::assemble_index()
        .image(&index)
        .arg("--platform-image")
        .args(&entries)
        .assert()
        .success();
    index
}
