//! Shipwright's invocations of its bundle puller and image-processing step,
//! as its controller writes them, run against ocistep and a real registry:
//! bundles pushed the way Shipwright pushes them, `--target`,
//! `BUNDLE_SHOW_LISTING`, `=value` booleans, images changed where they are,
//! Shipwright's size result and exit codes, and `--secret-path` naming the
//! config file with its `HttpHeaders`.

mod support;

use serde_json::Value;
use support::assembly::{amd64_and_arm64, EXIT_USAGE};
use support::faults::FaultProxy;
use support::images::{blobs_of, inspect_raw, platform_layout, TestPlatform};
use support::shipwright::{config_plus_layers, push_bundle, Entry, EXIT_IMAGE_MISSING};
use support::{http_get, Registry, RegistryOptions, Run};

const EXIT_NOT_FOUND: i32 = 4;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// A Shipwright bundle: two files with their own mtimes, in a directory
/// with a later mtime than either (only regular files count).
fn entries() -> Vec<Entry<'static>> {
    vec![
        Entry {
            name: "src",
            content: None,
            mtime: 1_800_000_000,
        },
        Entry {
            name: "src/main.go",
            content: Some(b"package main\n"),
            mtime: 1_600_000_000,
        },
        Entry {
            name: "README.md",
            content: Some(b"# app\n"),
            mtime: 1_700_000_123,
        },
    ]
}

#[test]
fn the_bundle_pullers_invocation_pulls_a_shipwright_bundle() {
    let registry = Registry::start();
    let image = format!("{}/source/app:bundle", registry.host());
    let digest = push_bundle(&image, &entries());
    let tmp = tempfile::tempdir().unwrap();
    let (work, results) = (tmp.path().join("source"), tmp.path().join("results"));
    // bundle.go: --image, --target, the two result files, then --prune.
    let (stdout, _) = Run::with(["--image", &image, "--target"])
        .arg(&work)
        .arg("--result-file-image-digest")
        .arg(results.join("shp-source-default-image-digest"))
        .arg("--result-file-source-timestamp")
        .arg(results.join("shp-source-default-source-timestamp"))
        .arg("--prune")
        .env("BUNDLE_SHOW_LISTING", "true")
        .printed_ok();
    let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap();
    assert_eq!(read("shp-source-default-image-digest"), digest);
    assert_eq!(
        read("shp-source-default-source-timestamp"),
        "1700000123",
        "the newest regular file's mtime, as Shipwright reports it"
    );
    assert_eq!(
        std::fs::read(work.join("src/main.go")).unwrap(),
        b"package main\n"
    );
    assert!(
        stdout.contains("src/main.go") && stdout.contains("README.md"),
        "{stdout}"
    );
    // Pruned by digest: the manifest is gone.
    let gone = http_get(
        &registry.host(),
        &format!("/v2/source/app/manifests/{digest}"),
        None,
    )
    .unwrap();
    assert_eq!(gone.status, 404, "{}", gone.text());
}

#[test]
fn bundle_show_listing_decides_over_the_flag() {
    let registry = Registry::start();
    let image = format!("{}/source/app:listing", registry.host());
    push_bundle(&image, &entries());
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, _) = Run::with(["--image", &image, "--show-listing=true", "--target"])
        .arg(tmp.path().join("off"))
        .env("BUNDLE_SHOW_LISTING", "false")
        .printed_ok();
    assert!(!stdout.contains("main.go"), "{stdout}");
    let (stdout, _) = Run::with(["--image", &image, "--show-listing=false", "--target"])
        .arg(tmp.path().join("on"))
        .env("BUNDLE_SHOW_LISTING", "1")
        .printed_ok();
    assert!(stdout.contains("src/main.go"), "{stdout}");
}

#[test]
fn a_bundle_without_files_writes_no_timestamp() {
    let registry = Registry::start();
    let image = format!("{}/source/empty:v1", registry.host());
    let dirs_only = [Entry {
        name: "src",
        content: None,
        mtime: 1_700_000_000,
    }];
    push_bundle(&image, &dirs_only);
    let tmp = tempfile::tempdir().unwrap();
    let ts = tmp.path().join("ts");
    let (_, stderr) = Run::with(["--image", &image, "--target"])
        .arg(tmp.path().join("w"))
        .arg("--result-file-source-timestamp")
        .arg(&ts)
        .printed_ok();
    assert!(!ts.exists(), "no timestamp file, as Shipwright");
    assert!(
        stderr.contains("unable to determine the source timestamp"),
        "{stderr}"
    );
}

#[test]
fn booleans_take_go_values_and_refuse_others() {
    let registry = Registry::start();
    let image = format!("{}/source/app:bool", registry.host());
    push_bundle(&image, &entries());
    let tmp = tempfile::tempdir().unwrap();
    Run::with([
        "--image",
        &image,
        "--insecure=false",
        "--prune=False",
        "--target",
    ])
    .arg(tmp.path().join("w"))
    .assert()
    .success();
    let (code, stderr) = Run::with(["--image", &image, "--insecure=maybe", "--target"])
        .arg(tmp.path().join("w2"))
        .code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("not a boolean"), "{stderr}");
}

#[test]
fn image_processing_changes_an_index_where_it_is() {
    let registry = Registry::start();
    let host = registry.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let index = format!("{host}/app/multi:v1");
    Run::assemble_index()
        .image(&index)
        .platform_images([
            format!("linux/amd64={}", amd64.pinned()),
            format!("linux/arm64={}", arm64.pinned()),
        ])
        .assert()
        .success();
    let tmp = tempfile::tempdir().unwrap();
    let r = |name: &str| tmp.path().join(name);
    // image_processing.go without an output directory: the changes, then
    // --image, --insecure=VALUE and the result files.
    Run::with([
        "--annotation",
        "org.opencontainers.image.url=https://example.com",
    ])
    .args(["--label", "maintainer=team@example.com"])
    .args(["--image-timestamp", "1700000000"])
    .args(["--image", &index, "--insecure=false"])
    .arg("--result-file-image-digest")
    .arg(r("shp-image-digest"))
    .arg("--result-file-image-size")
    .arg(r("shp-image-size"))
    .arg("--result-file-image-vulnerabilities")
    .arg(r("shp-image-vulnerabilities"))
    .assert()
    .success();
    let raw = inspect_raw(&format!("docker://{index}"));
    let digest = std::fs::read_to_string(r("shp-image-digest")).unwrap();
    assert_eq!(ocistep::oci::digest::Digest::of(&raw).to_string(), digest);
    assert!(
        !r("shp-image-size").exists(),
        "Shipwright writes no size for an index"
    );
    assert!(
        !r("shp-image-vulnerabilities").exists(),
        "no scan was asked for"
    );
    let doc = json(&raw);
    assert_eq!(
        doc["annotations"]["org.opencontainers.image.url"],
        "https://example.com"
    );
    let children = doc["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        let pinned = format!(
            "docker://{host}/app/multi@{}",
            child["digest"].as_str().unwrap()
        );
        let manifest = json(&inspect_raw(&pinned));
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.url"],
            "https://example.com"
        );
        let config = inspect_config(&host, "app/multi", &manifest);
        assert_eq!(config["config"]["Labels"]["maintainer"], "team@example.com");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_ne!(child["digest"], amd64.digest.as_str());
        assert_ne!(child["digest"], arm64.digest.as_str());
    }
}

/// The config blob a manifest names, read from the registry.
fn inspect_config(host: &str, repo: &str, manifest: &Value) -> Value {
    let digest = manifest["config"]["digest"].as_str().unwrap();
    let blob = http_get(host, &format!("/v2/{repo}/blobs/{digest}"), None).unwrap();
    assert_eq!(blob.status, 200);
    serde_json::from_slice(&blob.body).unwrap()
}

#[test]
fn shipwright_sizes_are_config_plus_layers() {
    let registry = Registry::start();
    let host = registry.host();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("output-image");
    platform_layout(&dir, "latest", &TestPlatform::parse("linux/arm64"));
    let image = format!("{host}/app/one:v1-linux-arm64");
    let size_file = tmp.path().join("shp-image-size");
    let digest = Run::with(["--push"])
        .arg(&dir)
        .args([
            "--image",
            &image,
            "--insecure=true",
            "--result-file-image-size",
        ])
        .arg(&size_file)
        .digest();
    let manifest = json(&inspect_raw(&format!("docker://{host}/app/one@{digest}")));
    let expected = config_plus_layers(&manifest);
    assert_eq!(
        std::fs::read_to_string(&size_file).unwrap(),
        expected.to_string()
    );
    assert_eq!(blobs_of(&serde_json::to_vec(&manifest).unwrap()).len(), 2);
    // --push-image keeps ocistep's own size: the manifest's.
    let own = Run::push_image(&dir).image(&image).results();
    assert_ne!(own.size, expected.to_string());
    // Processing the image where it is, unchanged, reports the same.
    let again = tmp.path().join("again");
    Run::with(["--image", &image, "--result-file-image-size"])
        .arg(&again)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        expected.to_string()
    );
}

#[test]
fn image_timestamps_and_the_image_as_shipwright_checks_them() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    platform_layout(&dir, "latest", &TestPlatform::parse("linux/amd64"));
    let image = format!("{}/app/ts:v1", registry.host());
    let file = tmp.path().join("shp-source-default-source-timestamp");
    std::fs::write(&file, "1700000000").unwrap();
    let (code, stderr) = Run::with(["--push"])
        .arg(&dir)
        .args(["--image", &image, "--image-timestamp", "1"])
        .arg("--image-timestamp-file")
        .arg(&file)
        .code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("mutually exclusive"), "{stderr}");
    // An empty --image-timestamp is unset.
    let digest = Run::with(["--push"])
        .arg(&dir)
        .args(["--image", &image, "--image-timestamp", ""])
        .arg("--image-timestamp-file")
        .arg(&file)
        .digest();
    let manifest = json(&inspect_raw(&format!("docker://{image}")));
    assert_eq!(
        inspect_config(&registry.host(), "app/ts", &manifest)["created"],
        "2023-11-14T22:13:20Z"
    );
    assert!(digest.starts_with("sha256:"));
    // No image to process: Shipwright's exit code 100.
    for args in [
        vec!["--annotation", "a=b"],
        vec!["--image", "", "--label", "a=b"],
    ] {
        let (code, stderr) = Run::with(&args).code_and_stderr();
        assert_eq!(code, EXIT_IMAGE_MISSING, "{args:?}: {stderr}");
        assert!(
            stderr.contains("'image' argument must not be empty"),
            "{stderr}"
        );
    }
    let (code, stderr) = Run::new().code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    let (code, stderr) =
        Run::with(["--image", &format!("{}/app/absent:v1", registry.host())]).code_and_stderr();
    assert_eq!(code, EXIT_NOT_FOUND, "{stderr}");
}

#[test]
fn the_secret_path_may_be_the_config_file_and_its_headers_go_everywhere() {
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("shp", "pull-pass-7"));
    let proxy = FaultProxy::start(&registry.host(), Vec::new());
    let image = format!("{}/source/app:secret", proxy.host());
    let tmp = tempfile::tempdir().unwrap();
    let auth = base64_of("shp:pull-pass-7");
    let config = tmp.path().join("shp-pull-secret.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}},"HttpHeaders":{{"X-Shp-Probe":"hdr-value-9"}}}}"#,
            proxy.host()
        ),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    support::shipwright::bundle_layout(&layout, "v1", &entries());
    let (_, push_err) = Run::copy(format!("oci:{}:v1", layout.display()), &image)
        .arg("--secret-path")
        .arg(&config)
        .printed_ok();
    let (stdout, pull_err) = Run::with(["--image", &image, "--show-listing", "--target"])
        .arg(tmp.path().join("w"))
        .arg("--secret-path")
        .arg(&config)
        .printed_ok();
    assert!(stdout.contains("README.md"));
    let seen = proxy.header_values("X-Shp-Probe");
    assert!(seen.len() > 4, "{seen:?}");
    assert!(
        seen.iter().all(|v| v.as_deref() == Some("hdr-value-9")),
        "every request carries the header: {seen:?}"
    );
    for printed in [push_err, pull_err] {
        assert!(!printed.contains("hdr-value-9") && !printed.contains("pull-pass-7"));
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn the_assemble_step_of_pull_request_2170_with_an_arm_variant() {
    use support::assembly::image;
    use support::images::PushFormat;
    let registry = Registry::start();
    let host = registry.host();
    let arm = image(
        &host,
        TestPlatform::parse("linux/arm/v7"),
        "v1",
        PushFormat::Oci,
    );
    let amd = image(
        &host,
        TestPlatform::parse("linux/amd64"),
        "v1",
        PushFormat::Oci,
    );
    let index = format!("{host}/app/assembled:v1");
    let tmp = tempfile::tempdir().unwrap();
    let digest_file = tmp.path().join("shp-image-digest");
    // multiarch.go: --assemble-index, os/arch=REF@DIGEST entries, then
    // --image, --insecure=VALUE and the digest result.
    Run::assemble_index()
        .args([
            "--platform-image",
            &format!("linux/arm/v7={}", arm.pinned()),
        ])
        .args(["--platform-image", &format!("linux/amd64={}", amd.pinned())])
        .args([
            "--image",
            &index,
            "--insecure=false",
            "--result-file-image-digest",
        ])
        .arg(&digest_file)
        .assert()
        .success();
    let raw = inspect_raw(&format!("docker://{index}"));
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        ocistep::oci::digest::Digest::of(&raw).to_string()
    );
    let doc = json(&raw);
    let arm_entry = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == arm.digest.as_str())
        .expect("the arm image is a child");
    assert_eq!(arm_entry["platform"]["architecture"], "arm");
    assert_eq!(arm_entry["platform"]["variant"], "v7");
}
