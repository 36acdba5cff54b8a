//! What the `--assemble-index` tests share: per-platform images pushed with
//! skopeo (the [`Fleet`] of four), result files, reading an index back, the
//! registry's writes, and the exit codes the tests expect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use ocistep::oci::digest::Digest;
use serde_json::{json, Value};

use super::images::{
    blobs_of, inspect_raw, push_platform_image, try_inspect_raw, PushFormat, PushedImage,
    TestPlatform,
};
use super::{http_request, run_ok, tool, AccessLogEntry, Registry, Run};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const WINDOWS_VERSION: &str = "10.0.17763.1234";

/// Exit codes from the README.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PLATFORM_NOT_FOUND: i32 = 7;
pub const EXIT_INVALID_INPUT: i32 = 9;
pub const EXIT_MISSING_INPUTS: i32 = 12;

/// Pushes an image for `platform` (`os/arch[/variant]`) to
/// `host/builds/<slug>:<tag>`, one repository per platform.
pub fn image(host: &str, platform: TestPlatform, tag: &str, format: PushFormat) -> PushedImage {
    let repo = format!("builds/{}", platform.slug());
    push_platform_image(host, &repo, tag, &platform, format)
}

/// An OCI linux/amd64 and linux/arm64/v8 image, tagged `v1`, each in its
/// own repository.
pub fn amd64_and_arm64(host: &str) -> (PushedImage, PushedImage) {
    let one = |p: &str| image(host, TestPlatform::parse(p), "v1", PushFormat::Oci);
    (one("linux/amd64"), one("linux/arm64/v8"))
}

/// The four per-platform images, each in its own repository of one registry.
/// The arm/v7 image is a Docker schema 2 manifest, the others OCI manifests.
pub struct Fleet {
    pub amd64: PushedImage,
    pub arm64: PushedImage,
    pub armv7: PushedImage,
    pub windows: PushedImage,
}

impl Fleet {
    pub fn push(host: &str) -> Fleet {
        Fleet {
            amd64: image(
                host,
                TestPlatform::parse("linux/amd64"),
                "v1",
                PushFormat::Oci,
            ),
            arm64: image(
                host,
                TestPlatform::parse("linux/arm64/v8"),
                "v1",
                PushFormat::Oci,
            ),
            armv7: image(
                host,
                TestPlatform::parse("linux/arm/v7"),
                "v1",
                PushFormat::DockerV2S2,
            ),
            windows: image(
                host,
                TestPlatform::parse("windows/amd64").with_os_version(WINDOWS_VERSION),
                "v1",
                PushFormat::Oci,
            ),
        }
    }

    pub fn all(&self) -> [&PushedImage; 4] {
        [&self.amd64, &self.arm64, &self.armv7, &self.windows]
    }

    pub fn digests(&self) -> BTreeSet<String> {
        self.all().iter().map(|i| i.digest.clone()).collect()
    }

    /// Entries in every accepted form: declared slash form, declared dash
    /// form, and two bare references (platform from the config) in one
    /// newline-separated value.
    pub fn mixed_entries(&self) -> Vec<String> {
        vec![
            format!("linux/amd64={}", self.amd64.reference),
            format!("linux-arm64={}", self.arm64.reference),
            format!("{}\n{}", self.armv7.reference, self.windows.reference),
        ]
    }

    /// What the index must say about each child: the platform object, in
    /// normal form (arm64 without its default variant).
    pub fn expected_platforms(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            (
                self.amd64.digest.clone(),
                json!({"architecture": "amd64", "os": "linux"}),
            ),
            (
                self.arm64.digest.clone(),
                json!({"architecture": "arm64", "os": "linux"}),
            ),
            (
                self.armv7.digest.clone(),
                json!({"architecture": "arm", "os": "linux", "variant": "v7"}),
            ),
            (
                self.windows.digest.clone(),
                json!({"architecture": "amd64", "os": "windows", "os.version": WINDOWS_VERSION}),
            ),
        ])
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("ocistep exited normally")
}

/// Result files in `dir` and the flags naming them.
pub struct ResultFiles {
    pub dir: PathBuf,
}

impl ResultFiles {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        ResultFiles {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn args(&self) -> Vec<String> {
        [
            ("--result-file-image-digest", "digest"),
            ("--result-file-image-size", "size"),
            ("--result-file-image-ref", "ref"),
            ("--result-file-platform-results", "platforms.json"),
        ]
        .into_iter()
        .flat_map(|(flag, name)| [flag.to_string(), self.path(name)])
        .collect()
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("result file {name}: {e}"))
    }

    pub fn digest(&self) -> String {
        self.read("digest")
    }

    pub fn platforms(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.read("platforms.json"))
            .expect("platform results are JSON")
            .as_array()
            .expect("platform results are an array")
            .clone()
    }
}

/// The raw bytes and the parsed document of `image` (with transport).
pub fn fetch_index(image: &str) -> (Vec<u8>, Value) {
    let raw = inspect_raw(image);
    let value = serde_json::from_slice(&raw).expect("the index is JSON");
    (raw, value)
}

pub fn children(index: &Value) -> &Vec<Value> {
    index["manifests"]
        .as_array()
        .expect("the index has a manifests array")
}

pub fn child_digests(index: &Value) -> BTreeSet<String> {
    children(index)
        .iter()
        .map(|c| c["digest"].as_str().unwrap().to_string())
        .collect()
}

pub fn child_by_digest<'a>(index: &'a Value, digest: &str) -> &'a Value {
    children(index)
        .iter()
        .find(|c| c["digest"] == digest)
        .unwrap_or_else(|| panic!("index has no child {digest}: {index:#}"))
}

/// The `os/arch[/variant]` of an index entry's platform.
pub fn short_platform(platform: &Value) -> String {
    let os = platform["os"].as_str().unwrap();
    let arch = platform["architecture"].as_str().unwrap();
    match platform["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// Requests that ocistep sent to repository `repo` which could change it.
pub fn writes_to(reg: &Registry, repo: &str) -> Vec<AccessLogEntry> {
    writes_since(reg, repo, 0)
}

/// Like [`writes_to`], leaving out the first `skip` requests of the log.
pub fn writes_since(reg: &Registry, repo: &str, skip: usize) -> Vec<AccessLogEntry> {
    let prefix = format!("/v2/{repo}/");
    reg.requests()
        .into_iter()
        .skip(skip)
        .filter(|r| r.user_agent.starts_with("ocistep/"))
        .filter(|r| matches!(r.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
        .filter(|r| r.uri.starts_with(&prefix))
        .collect()
}

/// Asserts that `host/repo:tag` does not exist.
pub fn assert_no_tag(host: &str, repo: &str, tag: &str) {
    let image = format!("docker://{host}/{repo}:{tag}");
    if let Ok(raw) = try_inspect_raw(&image) {
        panic!(
            "{image} exists after a failed run: {}",
            String::from_utf8_lossy(&raw)
        );
    }
}

/// Copies `image` with skopeo (`overrides` are skopeo's global
/// `--override-*` flags) into a `dir:` directory and returns the digest of
/// the manifest it fetched.
pub fn copy_for_platform(image: &str, overrides: &[&str]) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    run_ok(
        tool("skopeo")
            .args(overrides)
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", out.display())),
    );
    let manifest = std::fs::read(out.join("manifest.json")).expect("skopeo wrote manifest.json");
    Digest::of(&manifest).to_string()
}
