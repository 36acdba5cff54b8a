//! `--assemble-index` inputs and formats: missing and mislabelled children,
//! a second assembly, two images for one platform, an index as input, the
//! Docker manifest list, annotations, required platforms and an OCI layout
//! as the target.

mod support;

use std::collections::BTreeSet;

use ocistep::oci::digest::Digest;
use serde_json::json;
use support::assembly::*;
use support::images::{blobs_of, push_platform_image, PushFormat, PushedImage, TestPlatform};
use support::{run_ok, tool, Registry, Run};

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

/// Pushes a linux/amd64 and a linux/arm/v7 image to `host`; returns the
/// amd64 one and entries that declare it linux/arm64 (the arm/v7 one
/// labelled by its config).
fn mislabelled_entries(host: &str) -> (PushedImage, Vec<String>) {
    let amd64 = image(
        host,
        TestPlatform::parse("linux/amd64"),
        "v1",
        PushFormat::Oci,
    );
    let armv7 = image(
        host,
        TestPlatform::parse("linux/arm/v7"),
        "v1",
        PushFormat::Oci,
    );
    let entries = vec![format!("linux/arm64={}", amd64.reference), armv7.reference];
    (amd64, entries)
}

#[test]
fn mislabelled_child_is_refused_naming_both_platforms() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd64, entries) = mislabelled_entries(&host);

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
    let (_, entries) = mislabelled_entries(&host);

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
