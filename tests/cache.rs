//! `--cache-dir`: pulled manifests and blobs are kept by digest and reused
//! across runs and modes; tags are still resolved by the registry unless
//! `--offline`; concurrent runs and corrupted entries are handled.

mod support;

use std::path::Path;

use support::tree::{sample_tree, snapshot, write};
use support::{Registry, Run};

fn blob_gets(reg: &Registry) -> usize {
    reg.request_count("GET", "/blobs/sha256:")
}

fn manifest_gets(reg: &Registry) -> usize {
    reg.request_count("GET", "/manifests/")
}

fn pushed(reg: &Registry, tmp: &Path) -> (String, String) {
    let src = tmp.join("src");
    sample_tree(&src);
    let image = format!("{}/app:v1", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .arg("--result-file-image-ref")
        .arg(tmp.join("ref"))
        .assert()
        .success();
    (image, std::fs::read_to_string(tmp.join("ref")).unwrap())
}

#[test]
fn second_pull_by_digest_makes_no_requests_and_by_tag_only_asks_the_manifest() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (tag_ref, pinned) = pushed(&reg, tmp.path());
    let cache = tmp.path().join("cache");

    Run::pull_bundle(tmp.path().join("w1"))
        .image(&pinned)
        .cache_dir(&cache)
        .assert()
        .success();
    let (blobs, manifests) = (blob_gets(&reg), manifest_gets(&reg));
    assert!(blobs >= 1);
    Run::pull_bundle(tmp.path().join("w2"))
        .image(&pinned)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(
        (blob_gets(&reg), manifest_gets(&reg)),
        (blobs, manifests),
        "nothing asked of the registry"
    );
    assert_eq!(
        snapshot(&tmp.path().join("src")),
        snapshot(&tmp.path().join("w2"))
    );

    Run::pull_bundle(tmp.path().join("w3"))
        .image(&tag_ref)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(blob_gets(&reg), blobs, "blobs come from the cache");
    assert_eq!(
        manifest_gets(&reg),
        manifests + 1,
        "the tag is resolved by the registry"
    );

    // --offline: the tag resolves from the cache, even with the registry gone.
    drop(reg);
    Run::pull_bundle(tmp.path().join("w4"))
        .image(&tag_ref)
        .cache_dir(&cache)
        .arg("--offline")
        .assert()
        .success();
    assert_eq!(
        snapshot(&tmp.path().join("src")),
        snapshot(&tmp.path().join("w4"))
    );
    let other = tag_ref.replace(":v1", ":v2");
    Run::pull_bundle(tmp.path().join("w5"))
        .image(&other)
        .cache_dir(&cache)
        .arg("--offline")
        .assert()
        .code(4);
}

#[test]
fn the_cache_is_shared_between_modes_and_set_by_environment() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (_, pinned) = pushed(&reg, tmp.path());
    let cache = tmp.path().join("cache");
    Run::new()
        .args([
            "--copy",
            &pinned,
            &format!("oci:{}:x", tmp.path().join("layout").display()),
        ])
        .env("OCISTEP_CACHE_DIR", &cache)
        .assert()
        .success();
    let blobs = blob_gets(&reg);
    Run::pull_bundle(tmp.path().join("w"))
        .image(&pinned)
        .env("OCISTEP_CACHE_DIR", &cache)
        .assert()
        .success();
    assert_eq!(blob_gets(&reg), blobs, "the pull used what the copy cached");
}

#[test]
fn a_corrupted_cache_entry_is_fetched_again() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (_, pinned) = pushed(&reg, tmp.path());
    let cache = tmp.path().join("cache");
    Run::pull_bundle(tmp.path().join("w1"))
        .image(&pinned)
        .cache_dir(&cache)
        .assert()
        .success();
    let blobs = blob_gets(&reg);
    // Flip a byte in every cached gzip blob (the layer).
    let mut corrupted = 0;
    for entry in std::fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1);
    Run::pull_bundle(tmp.path().join("w2"))
        .image(&pinned)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(blob_gets(&reg), blobs + 1, "the layer was fetched again");
    assert_eq!(
        snapshot(&tmp.path().join("src")),
        snapshot(&tmp.path().join("w2"))
    );
    Run::pull_bundle(tmp.path().join("w3"))
        .image(&pinned)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(blob_gets(&reg), blobs + 1, "and the repaired entry is used");
}

#[test]
fn concurrent_pulls_share_one_cache() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "big.bin", &support::tree::pseudo_random(8 << 20, 3));
    let image = format!("{}/app:big", reg.host());
    Run::push_bundle(&src).image(&image).assert().success();
    let cache = tmp.path().join("cache");
    let children: Vec<_> = (0..4)
        .map(|i| {
            Run::pull_bundle(tmp.path().join(format!("w{i}")))
                .image(&image)
                .arg("-q")
                .cache_dir(&cache)
                .command()
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    for i in 0..4 {
        assert_eq!(snapshot(&src), snapshot(&tmp.path().join(format!("w{i}"))));
    }
    // Every cache entry is complete and named by its digest; no temporary files remain.
    for entry in std::fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name.len(), 64, "stray file {name}");
        assert_eq!(
            ocistep::oci::digest::Digest::of(&std::fs::read(&path).unwrap()).hex(),
            name
        );
    }
    let blobs = blob_gets(&reg);
    Run::pull_bundle(tmp.path().join("after"))
        .image(&image)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(blob_gets(&reg), blobs);
}

#[test]
fn an_unchanged_tree_is_not_packed_again_with_a_cache() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let cache = tmp.path().join("cache");
    let push = |tag: &str| {
        let out = Run::push_bundle(&src)
            .image(format!("{}/app:{tag}", reg.host()))
            .cache_dir(&cache)
            .digest_to(tmp.path().join("d"))
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        (
            std::fs::read_to_string(tmp.path().join("d")).unwrap(),
            stderr,
        )
    };
    let (first, log) = push("v1");
    assert!(log.contains("bytes gzip"), "{log}");
    let uploads = reg.request_count("POST", "/blobs/uploads/");
    let (second, log) = push("v2");
    assert_eq!(second, first);
    assert!(
        !log.contains("bytes gzip"),
        "the tree was not packed again: {log}"
    );
    assert!(log.contains("nothing to upload"), "{log}");
    assert_eq!(reg.request_count("POST", "/blobs/uploads/"), uploads);

    // Same size, other content: packed again, new digest.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(src.join("README.md"), b"# SAMPLE\n").unwrap();
    let (third, log) = push("v3");
    assert!(log.contains("bytes gzip"), "{log}");
    assert_ne!(third, first);
}
