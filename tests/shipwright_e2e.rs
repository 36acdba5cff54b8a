//! A Shipwright BuildRun end to end, with ocistep in place of Shipwright's
//! bundle and image-processing images: every step gets the argument list
//! Shipwright's controller builds for it (`sources/bundle.go`,
//! `image_processing.go`, and the multi-arch `multiarch.go` of its pull
//! request 2170), against a registry with basic auth and the push secret
//! mounted as Kubernetes mounts a `dockerconfigjson` secret. Result files go
//! where Tekton reads the step results the controller names.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::http_request_with;
use support::images::{platform_layout, TestPlatform};
use support::shipwright::{config_plus_layers, Entry};
use support::tree::{sample_tree, snapshot};
use support::{http_get, Registry, RegistryOptions, Run};

/// `/tekton/results` of one task.
struct Results(PathBuf);

impl Results {
    fn new(dir: &Path, task: &str) -> Results {
        let path = dir.join(task).join("tekton-results");
        std::fs::create_dir_all(&path).unwrap();
        Results(path)
    }

    /// `$(results.NAME.path)`.
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_else(|e| panic!("result {name}: {e}"))
    }
}

/// A registry with basic auth, a scratch directory for the pods, and the
/// push secret's volume in it.
fn cluster(password: &str) -> (Registry, tempfile::TempDir, String) {
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("shp", password));
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_volume(&registry, tmp.path());
    (registry, tmp, secret)
}

/// The secret volume `/workspace/shp-push-secret`: `.dockerconfigjson`.
fn secret_volume(registry: &Registry, dir: &Path) -> String {
    let volume = dir.join("shp-push-secret");
    std::fs::create_dir_all(&volume).unwrap();
    let config = registry.docker_config_dir().unwrap().join("config.json");
    std::fs::copy(config, volume.join(".dockerconfigjson")).unwrap();
    volume.display().to_string()
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The exact bytes of `repo`'s manifest `reference` (a tag or digest) in
/// the registry, read with its credentials.
fn manifest_bytes(registry: &Registry, repo: &str, reference: &str) -> Vec<u8> {
    let (user, password) = registry.credentials().unwrap();
    let resp = http_request_with(
        "GET",
        &registry.host(),
        &format!("/v2/{repo}/manifests/{reference}"),
        Some((&user, &password)),
        &[("Accept", ACCEPT)],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{repo}:{reference}: {}", resp.text());
    resp.body
}

fn run(args: &[String]) -> Run {
    Run::with(args)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_multi_arch_buildrun_in_shipwrights_shape() {
    let (registry, tmp, secret) = cluster("build-pass-5");
    // $(params.shp-output-image) and $(params.shp-output-insecure)
    let output_image = format!("{}/team/app:v1", registry.host());
    let insecure = "--insecure=false".to_string();

    // source-acquisition: the cloned source, pushed as a bundle.
    let source_root = tmp.path().join("source-acquisition/source");
    sample_tree(&source_root);
    run(&[
        "--push-source-bundle".into(),
        source_root.display().to_string(),
        "--source-bundle-image".into(),
        format!("{output_image}-src"),
        insecure.clone(),
        "--secret-path".into(),
        secret.clone(),
    ])
    .assert()
    .success();

    // build-<os>-<arch>: pull the bundle, "build", image-processing.
    let mut platform_args = Vec::new();
    for (os, arch) in [("linux", "amd64"), ("linux", "arm64")] {
        let task = format!("build-{os}-{arch}");
        let results = Results::new(tmp.path(), &task);
        let source = tmp.path().join(&task).join("source");
        run(&[
            "--image".into(),
            format!("{output_image}-src"),
            "--target".into(),
            source.display().to_string(),
            "--secret-path".into(),
            secret.clone(),
        ])
        .assert()
        .success();
        assert_eq!(
            snapshot(&source),
            snapshot(&source_root),
            "{task}: the source"
        );
        // The strategy writes its image to $(params.shp-output-directory).
        let output_directory = tmp.path().join(&task).join("output-image");
        platform_layout(
            &output_directory,
            "latest",
            &TestPlatform::parse(&format!("{os}/{arch}")),
        );
        let platform_image = format!("{output_image}-{os}-{arch}");
        let mut args = strings(&["--push", output_directory.to_str().unwrap()]);
        args.extend(strings(&[
            "--label",
            "org.opencontainers.image.source=https://example.com/app",
        ]));
        args.extend(strings(&["--image", &platform_image]));
        args.push(insecure.clone());
        args.extend(strings(&[
            "--result-file-image-digest",
            &results.path("shp-image-digest"),
            "--result-file-image-size",
            &results.path("shp-image-size"),
            "--result-file-image-vulnerabilities",
            &results.path("shp-image-vulnerabilities"),
            "--image-timestamp",
            "1700000000",
            "--secret-path",
            &secret,
        ]));
        run(&args).assert().success();
        let digest = results.read("shp-image-digest");
        let manifest: Value =
            serde_json::from_slice(&manifest_bytes(&registry, "team/app", &digest)).unwrap();
        let size: u64 = config_plus_layers(&manifest);
        assert_eq!(results.read("shp-image-size"), size.to_string(), "{task}");
        platform_args.push("--platform-image".to_string());
        platform_args.push(format!("{os}/{arch}={platform_image}@{digest}"));
    }

    // assemble-index
    let results = Results::new(tmp.path(), "assemble-index");
    let mut args = vec!["--assemble-index".to_string()];
    args.extend(platform_args.clone());
    args.extend(strings(&["--image", &output_image]));
    args.push(insecure.clone());
    args.extend(strings(&[
        "--result-file-image-digest",
        &results.path("shp-image-digest"),
        "--secret-path",
        &secret,
    ]));
    run(&args).assert().success();
    let index_raw = manifest_bytes(&registry, "team/app", "v1");
    assert_eq!(
        results.read("shp-image-digest"),
        ocistep::oci::digest::Digest::of(&index_raw).to_string()
    );
    let index: Value = serde_json::from_slice(&index_raw).unwrap();
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["platform"]["os"].as_str().unwrap(),
                c["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(children, ["linux/amd64", "linux/arm64"]);
    for (i, entry) in platform_args.iter().skip(1).step_by(2).enumerate() {
        let digest = entry.rsplit_once('@').unwrap().1;
        assert_eq!(index["manifests"][i]["digest"], digest);
    }
}

#[test]
fn a_single_arch_buildrun_in_shipwrights_shape() {
    let (registry, tmp, secret) = cluster("build-pass-6");
    // A Build whose source is an OCI artifact Shipwright's CLI pushed.
    let bundle = format!("{}/team/app-source:latest", registry.host());
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    support::shipwright::bundle_layout(
        &layout,
        "v1",
        &[
            Entry {
                name: "main.go",
                content: Some(b"package main\n"),
                mtime: 1_690_000_000,
            },
            Entry {
                name: "go.mod",
                content: Some(b"module app\n"),
                mtime: 1_690_000_042,
            },
        ],
    );
    Run::copy(format!("oci:{}:v1", layout.display()), &bundle)
        .arg("--secret-path")
        .arg(&secret)
        .assert()
        .success();
    let results = Results::new(tmp.path(), "buildrun");
    let source_root = tmp.path().join("workspace/source");
    // sources/bundle.go: the source step, with the pull secret and prune.
    run(&strings(&[
        "--image",
        &bundle,
        "--target",
        source_root.to_str().unwrap(),
        "--result-file-image-digest",
        &results.path("shp-source-default-image-digest"),
        "--result-file-source-timestamp",
        &results.path("shp-source-default-source-timestamp"),
        "--secret-path",
        &secret,
        "--prune",
    ]))
    .assert()
    .success();
    assert_eq!(
        results.read("shp-source-default-source-timestamp"),
        "1690000042"
    );
    assert!(results
        .read("shp-source-default-image-digest")
        .starts_with("sha256:"));
    assert_eq!(
        std::fs::read(source_root.join("go.mod")).unwrap(),
        b"module app\n"
    );

    // image_processing.go: output directory, annotations, labels, the
    // SourceTimestamp setting, then image, insecure and result files.
    let output_directory = tmp.path().join("workspace/output-image");
    platform_layout(
        &output_directory,
        "latest",
        &TestPlatform::parse("linux/amd64"),
    );
    let output_image = format!("{}/team/app:v1", registry.host());
    run(&strings(&[
        "--push",
        output_directory.to_str().unwrap(),
        "--annotation",
        "org.opencontainers.image.url=https://example.com",
        "--label",
        "maintainer=team@example.com",
        "--image-timestamp-file",
        &results.path("shp-source-default-source-timestamp"),
        "--image",
        &output_image,
        "--insecure=false",
        "--result-file-image-digest",
        &results.path("shp-image-digest"),
        "--result-file-image-size",
        &results.path("shp-image-size"),
        "--result-file-image-vulnerabilities",
        &results.path("shp-image-vulnerabilities"),
        "--secret-path",
        &secret,
    ]))
    .assert()
    .success();
    let raw = manifest_bytes(&registry, "team/app", "v1");
    assert_eq!(
        results.read("shp-image-digest"),
        ocistep::oci::digest::Digest::of(&raw).to_string()
    );
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.url"],
        "https://example.com"
    );
    let config = http_get(
        &registry.host(),
        &format!(
            "/v2/team/app/blobs/{}",
            manifest["config"]["digest"].as_str().unwrap()
        ),
        Some(("shp", "build-pass-6")),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(config["created"], "2023-07-22T04:27:22Z");
    assert_eq!(config["config"]["Labels"]["maintainer"], "team@example.com");
    let size: u64 = config_plus_layers(&manifest);
    assert_eq!(results.read("shp-image-size"), size.to_string());
    assert!(!Path::new(&results.path("shp-image-vulnerabilities")).exists());
}
