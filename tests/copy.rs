//! `--copy`: an index with its children from a registry to a layout and on
//! to another registry, digests unchanged, blobs moved once.

mod support;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::faults::FaultProxy;
use support::http::http_request_with;
use support::images::four_bundle_index;
use support::tree::write;
use support::{require_tool, run_ok, Registry, Run};

#[test]
fn index_copies_registry_to_layout_to_registry_unchanged() {
    require_tool("skopeo");
    let (a, b) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        write(&tmp.path().join(arch), "arch", arch.as_bytes());
        Run::push_bundle(tmp.path().join(arch))
            .image(format!("{}/src:{arch}", a.host()))
            .assert()
            .success();
    }
    let index = format!("{}/src:v1", a.host());
    Run::assemble_index()
        .image(&index)
        .arg("--platform-image")
        .arg(format!(
            "linux/amd64={0}/src:amd64,linux/arm64={0}/src:arm64",
            a.host()
        ))
        .digest_to(tmp.path().join("index-digest"))
        .assert()
        .success();
    let digest = std::fs::read_to_string(tmp.path().join("index-digest")).unwrap();

    let layout = format!("oci:{}:v1", tmp.path().join("layout").display());
    let copied = tmp.path().join("copied");
    Run::copy(&index, &layout)
        .digest_to(&copied)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), digest);
    let raw = run_ok(support::tool("skopeo").args(["inspect", "--raw", &layout]));
    assert_eq!(
        ocistep::oci::digest::Digest::of(raw.as_bytes()).to_string(),
        digest
    );

    let target = format!("{}/mirror/src:v1", b.host());
    Run::copy(&layout, &target)
        .digest_to(&copied)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), digest);
    // Two children, each with a config and a layer: four blobs, each uploaded once.
    assert_eq!(b.request_count("POST", "/blobs/uploads/"), 4);
    // Each manifest is stored once: the children by digest, the index
    // under its tag only.
    assert_eq!(b.request_count("PUT", "/manifests/sha256:"), 2);
    assert_eq!(b.request_count("PUT", "/manifests/v1"), 1);
    // Both children can be fetched from the mirror by platform.
    for arch in ["amd64", "arm64"] {
        let work = tmp.path().join(format!("w-{arch}"));
        Run::pull_bundle(&work)
            .image(&target)
            .args(["--platform", &format!("linux/{arch}")])
            .assert()
            .success();
        assert_eq!(std::fs::read_to_string(work.join("arch")).unwrap(), arch);
    }
    // Copying again moves no blob.
    Run::copy(&layout, &target).assert().success();
    assert_eq!(b.request_count("POST", "/blobs/uploads/"), 4);
}

#[test]
fn copy_of_a_missing_source_is_not_found() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:x", tmp.path().join("l").display());
    Run::copy(format!("{}/nope:v1", reg.host()), &dst)
        .assert()
        .code(4);
    assert!(
        !tmp.path().join("l").exists(),
        "no layout is created for a failed copy"
    );
}

#[test]
fn blobs_move_in_parallel_up_to_max_transfers_per_registry() {
    let (a, b) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    let index = four_bundle_index(&a, tmp.path());
    let index = index.replacen(&a.host(), "PROXY", 1);
    // Each run copies into a repository of its own, so every blob moves:
    // eight blobs, four configs and four layers.
    let in_flight = |extra: &[&str], tag: &str| {
        let proxy = FaultProxy::slow_blobs(&a.host());
        Run::copy(
            index.replacen("PROXY", &proxy.host(), 1),
            format!("{}/mirror-{tag}:v1", b.host()),
        )
        .args(extra)
        .assert()
        .success();
        proxy.blobs_at_once(8)
    };
    assert_eq!(in_flight(&["--max-transfers", "1"], "one"), 1);
    assert_eq!(in_flight(&["--max-transfers", "3"], "three"), 3);
    let default = in_flight(&[], "default");
    assert!(
        (5..=8).contains(&default),
        "{default} blob downloads at once with the default of 8"
    );
}

/// A source registry that serves a layer whose bytes do not match its
/// digest (same size, one byte changed): the copy fails as a digest
/// mismatch naming the layer, and the destination is never sent the whole
/// blob, so it neither stores the blob nor gets the tag.
#[test]
fn a_corrupt_blob_in_the_source_never_reaches_the_destination() {
    let (a, b) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible, so the layer spans many chunks on the wire.
    write(
        tmp.path(),
        "src/data",
        &support::tree::pseudo_random(3 << 20, 7),
    );
    let image = format!("{}/app:v1", a.host());
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .assert()
        .success();
    let mut layer = None;
    for path in support::tree::all_paths(&a.storage_dir()) {
        if path.file_name().is_some_and(|n| n == "data")
            && std::fs::metadata(&path).unwrap().len() > 1 << 20
        {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            let digest_dir = path.parent().unwrap().file_name().unwrap();
            layer = Some(format!("sha256:{}", digest_dir.to_str().unwrap()));
        }
    }
    let layer = layer.expect("the layer is in the source registry's storage");

    let target = format!("{}/mirror/app:v1", b.host());
    Run::copy(&image, &target)
        .assert()
        .code(5)
        .stderr(contains("digest mismatch").and(contains(layer.as_str())));
    let head = |path: String| {
        let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
        let path = format!("/v2/mirror/app/{path}");
        http_request_with("HEAD", &b.host(), &path, None, &accept)
            .unwrap()
            .status
    };
    assert_eq!(head(format!("blobs/{layer}")), 404, "the blob was stored");
    assert_eq!(head("manifests/v1".into()), 404, "the tag was set");
    // The upload of the layer was cut short: the destination never had the
    // whole blob to judge, so it never answered that upload's PUT.
    let puts: Vec<_> = b
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.uri.contains(&layer))
        .collect();
    assert!(
        puts.iter().all(|r| r.status != 201 && r.status != 400),
        "the destination judged the whole corrupt blob: {puts:?}"
    );
}
