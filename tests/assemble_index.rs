//! `--assemble-index`: per-platform images made with umoci, pushed to a real
//! registry with skopeo, assembled by ocistep into one image index, and read
//! back with skopeo, buildah and umoci.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use ocistep::oci::digest::Digest;
use serde_json::{json, Value};
use support::images::{
    blobs_of, inspect_raw, push_platform_image, try_inspect_raw, PushFormat, PushedImage,
    TestPlatform,
};
use support::{http_request, run_ok, tool, AccessLogEntry, Registry, Run};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const WINDOWS_VERSION: &str = "10.0.17763.1234";

/// Exit codes from the README.
const EXIT_USAGE: i32 = 2;
const EXIT_PLATFORM_NOT_FOUND: i32 = 7;
const EXIT_INVALID_INPUT: i32 = 9;
const EXIT_MISSING_INPUTS: i32 = 12;

/// Pushes an image for `platform` (`os/arch[/variant]`) to
/// `host/builds/<slug>:<tag>`, one repository per platform.
fn image(host: &str, platform: TestPlatform, tag: &str, format: PushFormat) -> PushedImage {
    let repo = format!("builds/{}", platform.slug());
    push_platform_image(host, &repo, tag, &platform, format)
}

/// An OCI linux/amd64 and linux/arm64/v8 image, tagged `v1`, each in its
/// own repository.
fn amd64_and_arm64(host: &str) -> (PushedImage, PushedImage) {
    let one = |p: &str| image(host, TestPlatform::parse(p), "v1", PushFormat::Oci);
    (one("linux/amd64"), one("linux/arm64/v8"))
}

/// The four per-platform images, each in its own repository of one registry.
/// The arm/v7 image is a Docker schema 2 manifest, the others OCI manifests.
struct Fleet {
    amd64: PushedImage,
    arm64: PushedImage,
    armv7: PushedImage,
    windows: PushedImage,
}

impl Fleet {
    fn push(host: &str) -> Fleet {
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

    fn all(&self) -> [&PushedImage; 4] {
        [&self.amd64, &self.arm64, &self.armv7, &self.windows]
    }

    fn digests(&self) -> BTreeSet<String> {
        self.all().iter().map(|i| i.digest.clone()).collect()
    }

    /// Entries in every accepted form: declared slash form, declared dash
    /// form, and two bare references (platform from the config) in one
    /// newline-separated value.
    fn mixed_entries(&self) -> Vec<String> {
        vec![
            format!("linux/amd64={}", self.amd64.reference),
            format!("linux-arm64={}", self.arm64.reference),
            format!("{}\n{}", self.armv7.reference, self.windows.reference),
        ]
    }

    /// What the index must say about each child: the platform object, in
    /// normal form (arm64 without its default variant).
    fn expected_platforms(&self) -> BTreeMap<String, Value> {
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("ocistep exited normally")
}

/// Result files in `dir` and the flags naming them.
struct ResultFiles {
    dir: PathBuf,
}

impl ResultFiles {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        ResultFiles {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn args(&self) -> Vec<String> {
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

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("result file {name}: {e}"))
    }

    fn digest(&self) -> String {
        self.read("digest")
    }

    fn platforms(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.read("platforms.json"))
            .expect("platform results are JSON")
            .as_array()
            .expect("platform results are an array")
            .clone()
    }
}

/// The raw bytes and the parsed document of `image` (with transport).
fn fetch_index(image: &str) -> (Vec<u8>, Value) {
    let raw = inspect_raw(image);
    let value = serde_json::from_slice(&raw).expect("the index is JSON");
    (raw, value)
}

fn children(index: &Value) -> &Vec<Value> {
    index["manifests"]
        .as_array()
        .expect("the index has a manifests array")
}

fn child_digests(index: &Value) -> BTreeSet<String> {
    children(index)
        .iter()
        .map(|c| c["digest"].as_str().unwrap().to_string())
        .collect()
}

fn child_by_digest<'a>(index: &'a Value, digest: &str) -> &'a Value {
    children(index)
        .iter()
        .find(|c| c["digest"] == digest)
        .unwrap_or_else(|| panic!("index has no child {digest}: {index:#}"))
}

/// The `os/arch[/variant]` of an index entry's platform.
fn short_platform(platform: &Value) -> String {
    let os = platform["os"].as_str().unwrap();
    let arch = platform["architecture"].as_str().unwrap();
    match platform["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// Requests that ocistep sent to repository `repo` which could change it.
fn writes_to(reg: &Registry, repo: &str) -> Vec<AccessLogEntry> {
    writes_since(reg, repo, 0)
}

/// Like [`writes_to`], leaving out the first `skip` requests of the log.
fn writes_since(reg: &Registry, repo: &str, skip: usize) -> Vec<AccessLogEntry> {
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
fn assert_no_tag(host: &str, repo: &str, tag: &str) {
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
fn copy_for_platform(image: &str, overrides: &[&str]) -> String {
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

#[test]
fn four_platforms_from_separate_repositories_become_one_index() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));
    let before = reg.requests().len();

    let target = format!("{host}/app:v1");
    Run::assemble_index()
        .image(&target)
        .platform_images(fleet.mixed_entries())
        .args(results.args())
        .output_ok();

    let (raw, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(index["mediaType"], OCI_INDEX, "{index:#}");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(children(&index).len(), 4, "{index:#}");
    assert_eq!(child_digests(&index), fleet.digests());
    let expected = fleet.expected_platforms();
    for image in fleet.all() {
        let child = child_by_digest(&index, &image.digest);
        assert_eq!(
            child["platform"], expected[&image.digest],
            "platform of {}",
            image.reference
        );
        assert_eq!(
            child["mediaType"], image.media_type,
            "{} keeps its media type",
            image.reference
        );
        assert_eq!(child["size"], image.manifest.len());
    }
    assert_eq!(fleet.armv7.media_type, DOCKER_MANIFEST);
    assert_eq!(fleet.amd64.media_type, OCI_MANIFEST);

    // Result files describe exactly what the registry serves.
    let digest = results.digest();
    assert_eq!(digest, Digest::of(&raw).to_string());
    assert_eq!(results.read("ref"), format!("{host}/app@{digest}"));
    let size: usize = results.read("size").parse().expect("size is a number");
    assert!(size >= raw.len(), "size {size} < index of {}", raw.len());
    let platforms = results.platforms();
    assert_eq!(platforms.len(), 4, "{platforms:#?}");
    for (result, child) in platforms.iter().zip(children(&index)) {
        let child_digest = child["digest"].as_str().unwrap();
        assert_eq!(result["platform"], short_platform(&child["platform"]));
        assert_eq!(result["digest"], child_digest);
        assert_eq!(result["size"], child["size"]);
        assert_eq!(result["reference"], format!("{host}/app@{child_digest}"));
    }
    let listed: BTreeSet<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "windows/amd64"
        ])
    );

    // Clients resolve the index to the right child.
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-arch", "arm", "--override-variant", "v7"]
        ),
        fleet.armv7.digest
    );
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-os", "linux", "--override-arch", "arm64"]
        ),
        fleet.arm64.digest
    );
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-os", "linux", "--override-arch", "amd64"]
        ),
        fleet.amd64.digest
    );
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-os", "windows", "--override-arch", "amd64"]
        ),
        fleet.windows.digest
    );

    // Every child is in the target repository, byte for byte.
    for image in fleet.all() {
        let raw = inspect_raw(&format!("docker://{host}/app@{}", image.digest));
        assert_eq!(raw, image.manifest, "{} in app", image.reference);
    }

    // Blobs were mounted from the source repositories, never uploaded.
    let requests: Vec<AccessLogEntry> = reg.requests().split_off(before);
    assert!(reg.request_count("POST", "mount=") > 0);
    let blob_count: usize = fleet.all().iter().map(|i| i.blobs().len()).sum();
    let mounted = requests
        .iter()
        .filter(|r| r.method == "POST" && r.uri.starts_with("/v2/app/blobs/uploads/"))
        .filter(|r| r.uri.contains("mount=") && r.status == 201)
        .count();
    assert!(
        mounted >= blob_count,
        "{mounted} of {blob_count} blobs mounted: {requests:#?}"
    );
    let uploads: Vec<&AccessLogEntry> = requests
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH"))
        .filter(|r| r.uri.starts_with("/v2/app/blobs/"))
        .collect();
    assert!(uploads.is_empty(), "blobs uploaded again: {uploads:#?}");

    // Children are stored by digest before the tag names the index.
    let manifest_puts: Vec<&AccessLogEntry> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.starts_with("/v2/app/manifests/"))
        .collect();
    let by_digest: BTreeSet<String> = manifest_puts
        .iter()
        .filter_map(|r| r.uri.strip_prefix("/v2/app/manifests/"))
        .filter(|reference| reference.starts_with("sha256:"))
        .map(str::to_string)
        .collect();
    assert_eq!(by_digest, fleet.digests(), "{manifest_puts:#?}");
    let last = manifest_puts.last().expect("manifests were pushed");
    assert_eq!(last.uri, "/v2/app/manifests/v1", "{manifest_puts:#?}");
    assert_eq!(
        manifest_puts
            .iter()
            .filter(|r| r.uri == "/v2/app/manifests/v1")
            .count(),
        1
    );
}

#[test]
fn buildah_manifest_inspect_reads_the_index() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    let target = format!("{host}/app:v1");
    Run::assemble_index()
        .image(&target)
        .platform_images(fleet.mixed_entries())
        .output_ok();

    let scratch = tempfile::tempdir().unwrap();
    let conf = scratch.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"),
    )
    .unwrap();
    let out = run_ok(
        tool("buildah")
            .arg("--registries-conf")
            .arg(&conf)
            .arg("--root")
            .arg(scratch.path().join("root"))
            .arg("--runroot")
            .arg(scratch.path().join("runroot"))
            .args(["--storage-driver", "vfs", "manifest", "inspect", &target]),
    );
    let index: Value = serde_json::from_str(&out).expect("buildah prints JSON");
    assert_eq!(child_digests(&index), fleet.digests(), "{out}");
    let expected = fleet.expected_platforms();
    for image in fleet.all() {
        let child = child_by_digest(&index, &image.digest);
        let want = &expected[&image.digest];
        for field in ["os", "architecture", "variant", "os.version"] {
            assert_eq!(
                child["platform"][field], want[field],
                "{field} of {} as buildah reads it",
                image.reference
            );
        }
    }
}

#[test]
fn index_on_another_registry_gets_every_manifest_and_blob() {
    let source = Registry::start();
    let dest = Registry::start();
    let fleet = Fleet::push(&source.host());
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));

    let target = format!("{}/app:v1", dest.host());
    Run::assemble_index()
        .image(&target)
        .platform_images(fleet.mixed_entries())
        .args(results.args())
        .output_ok();

    let (raw, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(child_digests(&index), fleet.digests());
    assert_eq!(results.digest(), Digest::of(&raw).to_string());
    for image in fleet.all() {
        let on_dest = inspect_raw(&format!("docker://{}/app@{}", dest.host(), image.digest));
        assert_eq!(
            on_dest, image.manifest,
            "{} on the second registry",
            image.reference
        );
        for blob in image.blobs() {
            let resp =
                http_request("HEAD", &dest.host(), &format!("/v2/app/blobs/{blob}"), None).unwrap();
            assert_eq!(resp.status, 200, "blob {blob} of {} on B", image.reference);
        }
        let copied = copy_for_platform(&format!("{}/app@{}", dest.host(), image.digest), &[]);
        assert_eq!(copied, image.digest);
    }
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-arch", "arm", "--override-variant", "v7"]
        ),
        fleet.armv7.digest
    );
    let source_writes: Vec<AccessLogEntry> = source
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("ocistep/") && r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(source_writes.is_empty(), "{source_writes:#?}");
}

#[test]
fn argument_order_does_not_change_the_index() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    let tmp = tempfile::tempdir().unwrap();
    let forward = ResultFiles::new(&tmp.path().join("forward"));
    let reverse = ResultFiles::new(&tmp.path().join("reverse"));

    let entries = vec![
        format!("linux/amd64={}", fleet.amd64.reference),
        format!("linux-arm64={}", fleet.arm64.reference),
        fleet.armv7.reference.clone(),
        fleet.windows.reference.clone(),
    ];
    let mut reversed = entries.clone();
    reversed.reverse();
    Run::assemble_index()
        .image(format!("{host}/app:forward"))
        .platform_images(&entries)
        .args(forward.args())
        .output_ok();
    Run::assemble_index()
        .image(format!("{host}/app:reverse"))
        .platform_images(&reversed)
        .args(reverse.args())
        .output_ok();

    assert_eq!(forward.digest(), reverse.digest());
    assert_eq!(
        inspect_raw(&format!("docker://{host}/app:forward")),
        inspect_raw(&format!("docker://{host}/app:reverse"))
    );
    assert_eq!(
        forward.read("platforms.json"),
        reverse.read("platforms.json")
    );
}

#[test]
fn missing_children_are_all_reported_and_nothing_is_pushed() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let missing_tag = format!("{}:no-such-tag", amd64.name);
    let missing_repo = format!("{host}/no-such-repository:v1");
    let entries = vec![
        format!("linux/amd64={}", amd64.reference),
        format!("linux/arm/v7={missing_tag}"),
        format!("linux/arm64={}", arm64.reference),
        format!("windows/amd64={missing_repo}"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));

    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .args(results.args())
        .output();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), EXIT_MISSING_INPUTS, "{err}");
    assert!(err.contains(&missing_tag), "names the missing tag: {err}");
    assert!(
        err.contains(&missing_repo),
        "names the missing repository: {err}"
    );
    assert_no_tag(&host, "app", "v1");
    let writes = writes_to(&reg, "app");
    assert!(writes.is_empty(), "pushed despite the error: {writes:#?}");
    assert!(
        !tmp.path().join("results/digest").exists(),
        "a failed run writes no result"
    );

    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .arg("--allow-missing")
        .args(results.args())
        .output_ok();
    let err = stderr(&out);
    assert!(err.contains(&missing_tag), "says what was left out: {err}");
    assert!(err.contains(&missing_repo), "says what was left out: {err}");
    let (raw, index) = fetch_index(&format!("docker://{host}/app:v1"));
    assert_eq!(
        child_digests(&index),
        BTreeSet::from([amd64.digest.clone(), arm64.digest.clone()])
    );
    assert_eq!(results.digest(), Digest::of(&raw).to_string());
    assert_eq!(results.platforms().len(), 2);
}

#[test]
fn mislabelled_child_is_refused_naming_both_platforms() {
    let reg = Registry::start();
    let host = reg.host();
    let amd64 = image(
        &host,
        TestPlatform::parse("linux/amd64"),
        "v1",
        PushFormat::Oci,
    );
    let armv7 = image(
        &host,
        TestPlatform::parse("linux/arm/v7"),
        "v1",
        PushFormat::Oci,
    );
    let entries = vec![
        format!("linux/arm64={}", amd64.reference),
        armv7.reference.clone(),
    ];

    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .output();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), EXIT_INVALID_INPUT, "{err}");
    assert!(
        err.contains("linux/arm64"),
        "names the declared platform: {err}"
    );
    assert!(
        err.contains("linux/amd64"),
        "names the config's platform: {err}"
    );
    assert!(err.contains(&amd64.reference), "names the image: {err}");
    assert_no_tag(&host, "app", "v1");
    let writes = writes_to(&reg, "app");
    assert!(writes.is_empty(), "pushed despite the error: {writes:#?}");
}

#[test]
fn allow_missing_does_not_excuse_a_mislabelled_child() {
    let reg = Registry::start();
    let host = reg.host();
    let amd64 = image(
        &host,
        TestPlatform::parse("linux/amd64"),
        "v1",
        PushFormat::Oci,
    );
    let armv7 = image(
        &host,
        TestPlatform::parse("linux/arm/v7"),
        "v1",
        PushFormat::Oci,
    );
    let entries = vec![
        format!("linux/arm64={}", amd64.reference),
        armv7.reference.clone(),
    ];

    // The image exists, so it is not missing: its label is wrong.
    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .arg("--allow-missing")
        .output();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), EXIT_INVALID_INPUT, "{err}");
    assert!(
        err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    assert_no_tag(&host, "app", "v1");
    let writes = writes_to(&reg, "app");
    assert!(writes.is_empty(), "pushed despite the error: {writes:#?}");
}

#[test]
fn a_second_assembly_moves_only_what_the_target_lacks() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    let tmp = tempfile::tempdir().unwrap();
    let first = ResultFiles::new(&tmp.path().join("first"));
    let second = ResultFiles::new(&tmp.path().join("second"));
    Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(fleet.mixed_entries())
        .args(first.args())
        .output_ok();
    let before = reg.requests().len();

    Run::assemble_index()
        .image(format!("{host}/app:v2"))
        .platform_images(fleet.mixed_entries())
        .args(second.args())
        .output_ok();

    assert_eq!(first.digest(), second.digest());
    let writes = writes_since(&reg, "app", before);
    let uris: Vec<&str> = writes.iter().map(|w| w.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["/v2/app/manifests/v2"],
        "only the new tag is written: {writes:#?}"
    );
}

#[test]
fn two_images_for_one_platform_are_a_usage_error() {
    let reg = Registry::start();
    let host = reg.host();
    let first = image(
        &host,
        TestPlatform::parse("linux/amd64"),
        "v1",
        PushFormat::Oci,
    );
    let second = push_platform_image(
        &host,
        "other/amd64",
        "v2",
        &TestPlatform::parse("linux/amd64"),
        PushFormat::Oci,
    );
    let arm64 = image(
        &host,
        TestPlatform::parse("linux/arm64/v8"),
        "v1",
        PushFormat::Oci,
    );
    assert_ne!(first.digest, second.digest);
    let entries = vec![
        format!("linux/amd64={}", first.reference),
        format!("linux/arm64={}", arm64.reference),
        second.reference.clone(),
    ];

    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .output();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), EXIT_USAGE, "{err}");
    assert!(err.contains("linux/amd64"), "{err}");
    assert_no_tag(&host, "app", "v1");
    let writes = writes_to(&reg, "app");
    assert!(writes.is_empty(), "pushed despite the error: {writes:#?}");
}

#[test]
fn an_index_given_as_input_contributes_all_its_children() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(fleet.mixed_entries())
        .output_ok();
    let ppc = image(
        &host,
        TestPlatform::parse("linux/ppc64le"),
        "v1",
        PushFormat::Oci,
    );
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));

    let entries = vec![format!("{host}/app:v1"), ppc.reference.clone()];
    Run::assemble_index()
        .image(format!("{host}/app:v2"))
        .platform_images(&entries)
        .args(results.args())
        .output_ok();

    let (raw, index) = fetch_index(&format!("docker://{host}/app:v2"));
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(children(&index).len(), 5, "{index:#}");
    let mut want = fleet.digests();
    want.insert(ppc.digest.clone());
    assert_eq!(child_digests(&index), want);
    let mut expected = fleet.expected_platforms();
    expected.insert(
        ppc.digest.clone(),
        json!({"architecture": "ppc64le", "os": "linux"}),
    );
    for (digest, platform) in &expected {
        assert_eq!(&child_by_digest(&index, digest)["platform"], platform);
    }
    assert_eq!(results.digest(), Digest::of(&raw).to_string());
    assert_eq!(results.platforms().len(), 5);
    assert_eq!(
        copy_for_platform(
            &format!("{host}/app:v2"),
            &["--override-os", "linux", "--override-arch", "ppc64le"]
        ),
        ppc.digest
    );
}

#[test]
fn docker_format_writes_a_manifest_list() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));
    let entries = vec![amd64.reference.clone(), arm64.reference.clone()];
    let target = format!("{host}/app:list");

    Run::assemble_index()
        .image(&target)
        .platform_images(&entries)
        .args(["--index-format", "docker"])
        .args(results.args())
        .output_ok();

    let (raw, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(index["mediaType"], DOCKER_LIST, "{index:#}");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        child_digests(&index),
        BTreeSet::from([amd64.digest.clone(), arm64.digest.clone()])
    );
    for image in [&amd64, &arm64] {
        assert_eq!(
            child_by_digest(&index, &image.digest)["mediaType"],
            OCI_MANIFEST
        );
    }
    assert_eq!(results.digest(), Digest::of(&raw).to_string());
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-os", "linux", "--override-arch", "arm64"]
        ),
        arm64.digest
    );
}

#[test]
fn annotations_land_on_the_oci_index() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let entries = vec![amd64.reference.clone(), arm64.reference.clone()];
    let target = format!("{host}/app:v1");

    Run::assemble_index()
        .image(&target)
        .platform_images(&entries)
        .args(["--annotation", "org.opencontainers.image.source=x"])
        .output_ok();

    let (_, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        index["annotations"],
        json!({"org.opencontainers.image.source": "x"})
    );
    for child in children(&index) {
        assert!(child.get("annotations").is_none(), "{child:#}");
    }
}

#[test]
fn required_platforms_are_checked() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let entries = vec![amd64.reference.clone(), arm64.reference.clone()];

    let out = Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .args(["--require-platforms", "linux/amd64,linux/s390x"])
        .output();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), EXIT_PLATFORM_NOT_FOUND, "{err}");
    assert!(err.contains("linux/s390x"), "{err}");
    assert_no_tag(&host, "app", "v1");
    let writes = writes_to(&reg, "app");
    assert!(writes.is_empty(), "pushed despite the error: {writes:#?}");

    Run::assemble_index()
        .image(format!("{host}/app:v1"))
        .platform_images(&entries)
        .args(["--require-platforms", "linux/amd64,linux/arm64/v8"])
        .output_ok();
    let (_, index) = fetch_index(&format!("docker://{host}/app:v1"));
    assert_eq!(children(&index).len(), 2);
}

#[test]
fn index_can_be_written_to_an_oci_layout() {
    let reg = Registry::start();
    let host = reg.host();
    let fleet = Fleet::push(&host);
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));
    let dir = tmp.path().join("layout");
    let target = format!("oci:{}:v1", dir.display());

    Run::assemble_index()
        .image(&target)
        .platform_images(fleet.mixed_entries())
        .args(results.args())
        .output_ok();

    let (raw, index) = fetch_index(&target);
    assert_eq!(index["mediaType"], OCI_INDEX, "{index:#}");
    assert_eq!(child_digests(&index), fleet.digests());
    let expected = fleet.expected_platforms();
    for image in fleet.all() {
        let child = child_by_digest(&index, &image.digest);
        assert_eq!(child["platform"], expected[&image.digest]);
        assert_eq!(child["mediaType"], image.media_type);
    }
    let digest = results.digest();
    assert_eq!(digest, Digest::of(&raw).to_string());
    assert_eq!(
        results.read("ref"),
        format!("oci:{}@{digest}", dir.display())
    );

    let tags = run_ok(tool("umoci").args(["ls", "--layout"]).arg(&dir));
    assert!(tags.lines().any(|l| l.trim() == "v1"), "umoci ls: {tags}");

    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
    };
    for image in fleet.all() {
        assert_eq!(
            std::fs::read(blob(&image.digest)).ok(),
            Some(image.manifest.clone()),
            "manifest of {} in the layout",
            image.reference
        );
        for b in blobs_of(&image.manifest) {
            assert!(
                blob(&b).is_file(),
                "blob {b} of {} in the layout",
                image.reference
            );
        }
    }
}
