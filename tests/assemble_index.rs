//! `--assemble-index`: per-platform images made with umoci, pushed to a real
//! registry with skopeo, assembled by ocistep into one image index, and read
//! back with skopeo, buildah and umoci.
//! This file: the index and its results, read back by other clients, on
//! another registry, and independent of argument order; the inputs and
//! formats are in assemble_index_inputs.rs.

mod support;

use std::collections::BTreeSet;

use ocistep::oci::digest::Digest;
use serde_json::Value;
use support::assembly::*;
use support::images::inspect_raw;
use support::{http_request, run_ok, tool, AccessLogEntry, Registry, Run};

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
