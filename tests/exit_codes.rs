//! Failures that used to exit 1 or ask the registry, each with the exit
//! code and message it has now: `--offline` with a corrupted cache entry,
//! two pulls racing into one directory, an entry name too long for the
//! file system, a cache on a full disk, a failing credential helper.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::faults::FaultProxy;
use support::tree::{gzip, layout_with_layer, pseudo_random, sample_tree, snapshot, write};
use support::{Registry, Run};

use ocistep::oci::manifest::OCI_LAYER_GZIP;

/// The blob files of the cache at `cache`.
fn cached_blobs(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("blobs/sha256");
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort();
    blobs
}

#[test]
fn offline_with_a_corrupted_cached_blob_asks_nothing_and_exits_5() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let pinned = Run::push_bundle(&src)
        .image(format!("{}/app:v1", reg.host()))
        .result("--result-file-image-ref");
    let cache = tmp.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    Run::pull_bundle(tmp.path().join("w1"))
        .image(&pinned)
        .cache_dir(cache_arg)
        .assert()
        .success();

    // Every request now goes through a proxy that counts them.
    let proxy = FaultProxy::start(&reg.host(), Vec::new());
    let through_proxy = pinned.replacen(&reg.host(), &proxy.host(), 1);
    let mut corrupted = Vec::new();
    for blob in cached_blobs(&cache) {
        let bytes = std::fs::read(&blob).unwrap();
        // The layer: the one blob that is not JSON.
        if bytes.first() != Some(&b'{') {
            std::fs::write(&blob, b"not the layer").unwrap();
            corrupted.push(blob);
        }
    }
    assert_eq!(corrupted.len(), 1);
    let target = tmp.path().join("w2");
    let offline = |code: i32| {
        let out = Run::pull_bundle(&target)
            .image(&through_proxy)
            .args(["--cache-dir", cache_arg, "--offline"])
            .assert()
            .code(code);
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let stderr = offline(5);
    assert!(
        stderr.contains(&corrupted[0].display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("without --offline"), "{stderr}");
    assert_eq!(proxy.hits(), Vec::new(), "no request at all");
    assert!(!target.exists());

    // Its manifest corrupted instead (the layer entry is gone now).
    let digest = pinned.rsplit_once('@').unwrap().1.replace("sha256:", "");
    let manifest = cache.join("blobs/sha256").join(&digest);
    std::fs::write(&manifest, b"{}").unwrap();
    let stderr = offline(5);
    assert!(stderr.contains(&manifest.display().to_string()), "{stderr}");
    // Missing altogether now: not found.
    offline(4);
    assert_eq!(proxy.hits(), Vec::new(), "no request at all");
}

#[test]
fn of_two_pulls_racing_into_one_directory_the_loser_exits_10() {
    let tmp = tempfile::tempdir().unwrap();
    // Two small bundles from layouts, with the same top-level directory and
    // different content: both pulls end at nearly the same time, so both
    // may find the target free before either moves its entries in.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let layout = tmp.path().join("layout");
    for (src, seed) in [(&a, 1), (&b, 2)] {
        write(src, "x/f", format!("{seed}\n").as_bytes());
    }
    let images = [
        Run::push_bundle(&a)
            .image(format!("oci:{}:a", layout.display()))
            .result("--result-file-image-ref"),
        Run::push_bundle(&b)
            .image(format!("oci:{}:b", layout.display()))
            .result("--result-file-image-ref"),
    ];
    let trees = [snapshot(&a), snapshot(&b)];
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 150 && started.elapsed() < Duration::from_secs(40) {
        rounds += 1;
        let target = tmp.path().join(format!("out{rounds}"));
        // Half of the rounds into a directory that exists, empty.
        if rounds % 2 == 0 {
            std::fs::create_dir(&target).unwrap();
        }
        let children = [
            Run::pull_bundle(&target)
                .image(&images[0])
                .arg("-q")
                .spawn(),
            Run::pull_bundle(&target)
                .image(&images[1])
                .arg("-q")
                .spawn(),
        ];
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
        let stderr: Vec<String> = outputs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        assert!(
            codes.iter().all(|c| matches!(c, Some(0 | 10))),
            "round {rounds}: {codes:?} {stderr:#?}"
        );
        let winners = codes.iter().filter(|c| **c == Some(0)).count();
        assert_eq!(winners, 1, "round {rounds}: {codes:?} {stderr:#?}");
        let loser = codes.iter().position(|c| *c == Some(10)).unwrap();
        assert!(
            stderr[loser].contains("already holds"),
            "round {rounds}: {}",
            stderr[loser]
        );
        let got = snapshot(&target);
        assert!(
            got == trees[0] || got == trees[1],
            "round {rounds}: the directory holds one bundle's tree"
        );
        assert_eq!(got, trees[1 - loser], "round {rounds}: the winner's tree");
    }
}

#[test]
fn an_entry_name_too_long_for_the_file_system_is_an_unsafe_archive() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["n".repeat(5000), vec!["d".repeat(250); 20].join("/")]
        .iter()
        .enumerate()
    {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, &b"abc"[..]).unwrap();
        let layer = gzip(&builder.into_inner().unwrap());
        let layout = tmp.path().join(format!("layout{i}"));
        layout_with_layer(&layout, "v1", &layer, OCI_LAYER_GZIP);
        let target = tmp.path().join(format!("out{i}"));
        let out = Run::pull_bundle(&target)
            .image(format!("oci:{}:v1", layout.display()))
            .assert()
            .code(6);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("too long"), "{stderr}");
        assert!(stderr.len() < 2000, "the name is shortened: {stderr}");
        assert!(!target.exists());
    }
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        support::run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_cache_on_a_full_disk_gives_a_warning_and_the_pull_goes_on() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    write(&src, "noise.bin", &pseudo_random(256 << 10, 9));
    let pinned = Run::push_bundle(&src)
        .image(format!("{}/full:v1", reg.host()))
        .result("--result-file-image-ref");
    let cache = tmp.path().join("cache");
    let _tmpfs = Tmpfs::mount(&cache, "64k");
    let target = tmp.path().join("out");
    let out = Run::pull_bundle(&target)
        .image(&pinned)
        .cache_dir(cache.to_str().unwrap())
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("the cache {} cannot be written", cache.display())),
        "{stderr}"
    );
    assert_eq!(snapshot(&target), snapshot(&src));
}

#[test]
fn a_failing_credential_helper_is_named_once() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    write(
        &bin,
        "docker-credential-broken",
        b"#!/bin/sh\ncat >/dev/null\necho nope >&2\nexit 1\n",
    );
    support::tree::set_mode(&bin.join("docker-credential-broken"), 0o755);
    let secret = tmp.path().join("secret");
    write(
        &secret,
        "config.json",
        serde_json::json!({ "credHelpers": { reg.host(): "broken" } })
            .to_string()
            .as_bytes(),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Run::pull_bundle(tmp.path().join("out"))
        .image(format!("{}/app:v1", reg.host()))
        .secret_path(&secret)
        .env("PATH", path)
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("credential helper docker-credential-broken failed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("docker-credential-docker-credential"),
        "{stderr}"
    );
}
