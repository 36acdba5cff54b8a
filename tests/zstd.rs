//! `--compression zstd`: tar+zstd layers pushed to a real registry, read
//! back by ocistep, skopeo and umoci, refused when hostile, and the level
//! checked per algorithm.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::jail::Jail;
use support::tree::{layout_with_layer, raw_tar, sample_tree, snapshot};
use support::{require_tool, run_ok, tool, Registry, Run};

const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The manifest of `image` as skopeo reads it.
fn manifest(image: &str) -> serde_json::Value {
    let raw = run_ok(tool("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    serde_json::from_str(&raw).unwrap()
}

/// Copies `image` with skopeo into an OCI layout at `dir` under tag `x`.
fn skopeo_copy(image: &str, dir: &Path) {
    run_ok(tool("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:x", dir.display()),
    ]));
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(&digest["sha256:".len()..])
}

fn zstd(data: &[u8], level: i32) -> Vec<u8> {
    zstd::encode_all(data, level).unwrap()
}

#[test]
fn zstd_bundle_round_trips_and_is_deterministic() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/team/app:v1-src", reg.host());
    let digest = Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .args(["--compression", "zstd"])
        .digest();

    let m = manifest(&image);
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(m["layers"][0]["mediaType"], ZSTD_LAYER);
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "source.tar.zst"
    );

    // The layer is a zstd frame whose content is the tar the config names.
    let layout = tmp.path().join("layout");
    skopeo_copy(&image, &layout);
    let layer = std::fs::read(blob(&layout, m["layers"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(&layer[..4], &ZSTD_MAGIC);
    let tar = zstd::decode_all(&layer[..]).unwrap();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(&layout, m["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        ocistep::oci::digest::Digest::of(&tar).as_str(),
        "diff_id is the digest of the uncompressed tar"
    );

    // ocistep pulls it back, from the registry and from skopeo's layout.
    let sources = [
        format!("{}/team/app@{digest}", reg.host()),
        format!("oci:{}:x", layout.display()),
    ];
    for (i, image) in sources.iter().enumerate() {
        let work = tmp.path().join(format!("work{i}"));
        Run::pull_bundle(&work).image(image).assert().success();
        assert_eq!(snapshot(&src), snapshot(&work), "{image}");
    }

    // Same tree and flags, same digest; the default level is 3.
    let again = format!("{}/team/app:v2-src", reg.host());
    assert_eq!(
        Run::push_bundle(&src)
            .image(&again)
            .args(["--source-timestamp", "1700000000"])
            .args(["--compression", "zstd"])
            .digest(),
        digest
    );
    let level3 = format!("{}/team/app:v3-src", reg.host());
    assert_eq!(
        Run::push_bundle(&src)
            .image(&level3)
            .args(["--source-timestamp", "1700000000"])
            .args(["--compression", "zstd", "--compression-level", "3"])
            .digest(),
        digest
    );
    let level19 = format!("{}/team/app:v4-src", reg.host());
    assert_ne!(
        Run::push_bundle(&src)
            .image(&level19)
            .args(["--source-timestamp", "1700000000"])
            .args(["--compression", "zstd", "--compression-level", "19"])
            .digest(),
        digest
    );
    // gzip stays the default.
    let gz = format!("{}/team/app:v5-src", reg.host());
    assert_ne!(
        Run::push_bundle(&src)
            .image(&gz)
            .args(["--source-timestamp", "1700000000"])
            .digest(),
        digest
    );
    assert_eq!(manifest(&gz)["layers"][0]["mediaType"], GZIP_LAYER);
}

#[test]
fn umoci_unpacks_the_skopeo_copy() {
    require_tool("skopeo");
    require_tool("umoci");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/app:v1-src", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .args(["--compression", "zstd"])
        .digest();
    let layout = tmp.path().join("layout");
    skopeo_copy(&image, &layout);

    let rootfs = tmp.path().join("rootfs");
    let out = Command::new(require_tool("umoci"))
        .args(["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:x", layout.display()))
        .arg(&rootfs)
        .output()
        .unwrap();
    let version = run_ok(tool("umoci").arg("--version"));
    if out.status.success() {
        assert_eq!(snapshot(&src), snapshot(&rootfs), "{version}");
    } else {
        // umoci 0.4.7 (the Debian package) does not read tar+zstd layers:
        // it refuses them by media type, which is all that is checked here
        // (the tree is compared only with an umoci that unpacks them).
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(ZSTD_LAYER) || stderr.contains("zstd"),
            "{version}: {stderr}"
        );
    }
}

#[test]
fn zstd_artifact_directories_round_trip_and_the_cache_keys_on_the_compression() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("site");
    sample_tree(&src);
    let image = format!("{}/app:v1-site", reg.host());
    Run::push_artifact()
        .image(&image)
        .args(["--artifact-type", "application/vnd.example.site.v1"])
        .args(["--compression", "zstd", "--file"])
        .arg(&src)
        .assert()
        .success();
    assert_eq!(manifest(&image)["layers"][0]["mediaType"], ZSTD_LAYER);
    let out = tmp.path().join("out");
    Run::pull_artifact(&out).image(&image).assert().success();
    assert_eq!(snapshot(&src), snapshot(&out.join("site")));

    // A packed-layer cache filled by a zstd push is not reused for gzip.
    let cache = tmp.path().join("cache");
    let bundle = format!("{}/app:zstd-src", reg.host());
    Run::push_bundle(&src)
        .image(&bundle)
        .args(["--compression", "zstd", "--cache-dir"])
        .arg(&cache)
        .assert()
        .success();
    let bundle_gz = format!("{}/app:gzip-src", reg.host());
    Run::push_bundle(&src)
        .image(&bundle_gz)
        .cache_dir(&cache)
        .assert()
        .success();
    assert_eq!(manifest(&bundle)["layers"][0]["mediaType"], ZSTD_LAYER);
    let gz = manifest(&bundle_gz);
    assert_eq!(gz["layers"][0]["mediaType"], GZIP_LAYER);
    assert_ne!(
        gz["layers"][0]["digest"],
        manifest(&bundle)["layers"][0]["digest"]
    );
    // And the zstd push again, with the cache, still gives the zstd bundle.
    let bundle2 = format!("{}/app:zstd2-src", reg.host());
    Run::push_bundle(&src)
        .image(&bundle2)
        .args(["--compression", "zstd", "--cache-dir"])
        .arg(&cache)
        .assert()
        .success();
    assert_eq!(manifest(&bundle2)["layers"], manifest(&bundle)["layers"]);
}

/// Stores `layer` as a tar+zstd bundle and pulls it into a jail with `extra`.
fn pull_layer(layer: &[u8], extra: &[&str]) -> (assert_cmd::assert::Assert, Jail) {
    let layouts = tempfile::tempdir().unwrap();
    layout_with_layer(layouts.path(), "t", layer, ZSTD_LAYER);
    let jail = Jail::new();
    let assert = Run::pull_bundle(&jail.target)
        .image(format!("oci:{}:t", layouts.path().display()))
        .args(extra)
        .assert();
    (assert, jail)
}

#[test]
fn a_zstd_bomb_stops_at_the_size_limit() {
    let zeros = vec![0u8; 256 << 20];
    let layer = zstd(&raw_tar(&[("bomb", b'0', "", &zeros)]), 19);
    assert!(layer.len() < 64 << 10, "the bomb is small: {}", layer.len());
    let (assert, jail) = pull_layer(&layer, &["--max-extract-size", "4M"]);
    assert
        .code(6)
        .stderr(contains("unsafe archive").and(contains("--max-extract-size")));
    jail.assert_untouched();
}

#[test]
fn garbage_after_the_zstd_frame_is_refused() {
    let tar = raw_tar(&[("a.txt", b'0', "", b"hello\n")]);
    let good = zstd(&tar, 3);
    let (assert, _) = pull_layer(&good, &[]);
    assert.success();

    let mut junk = good.clone();
    junk.extend_from_slice(b"appended, not zstd");
    let (assert, jail) = pull_layer(&junk, &[]);
    assert.code(11).stderr(contains("tar+zstd"));
    jail.assert_untouched();

    let cut = &good[..good.len() - 3];
    let (assert, jail) = pull_layer(cut, &[]);
    assert.code(11).stderr(contains("tar+zstd"));
    jail.assert_untouched();
}

#[test]
fn levels_are_checked_per_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let image = format!("oci:{}:x", tmp.path().join("l").display());
    let bad = |args: &[&str], range: &str| {
        Run::push_bundle(".")
            .image(&image)
            .args(args)
            .assert()
            .code(2)
            .stderr(contains(range));
    };
    bad(
        &["--compression", "zstd", "--compression-level", "20"],
        "1 (fastest) to 19",
    );
    bad(
        &["--compression", "zstd", "--compression-level", "0"],
        "1 (fastest) to 19",
    );
    bad(&["--compression-level", "10"], "1 (fastest) to 9");
    bad(
        &["--compression", "gzip", "--compression-level", "12"],
        "1 (fastest) to 9",
    );
    bad(&["--compression", "lz4"], "gzip");
    bad(&["--compression", "none"], "zstd");
    assert!(
        !tmp.path().join("l").exists(),
        "nothing written on a usage error"
    );

    let help = Run::new().arg("--help").assert().success();
    let help = String::from_utf8(help.get_output().stdout.clone()).unwrap();
    assert!(help.contains("--compression <ALGORITHM>"), "{help}");
    assert!(help.contains("zstd 1 to 19, default 3"), "{help}");
}
