//! Concurrent runs writing one `oci:` layout or one `--cache-dir`: every
//! run's tag is kept in `index.json`, and the layout reads back with
//! independent clients (skopeo, umoci) for each tag.

mod support;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use support::tree::write;
use support::{require_tool, run_ok, tool, Registry, Run};

/// Processes started at once in each round.
const WRITERS: usize = 8;
/// Rounds, each into a fresh layout or cache: a lost update shows within a
/// few (3 of 10 before `index.json` updates were serialised).
const ROUNDS: usize = 4;
/// How long one round may take before the test fails (no run may hang on
/// the lock).
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// Waits for every child, failing the test if one fails or the round takes
/// longer than [`ROUND_LIMIT`] (the children are then killed).
fn wait_all(mut children: Vec<(String, Child)>) {
    let deadline = Instant::now() + ROUND_LIMIT;
    while !children.is_empty() {
        let mut pending = Vec::new();
        for (name, mut child) in children {
            match child.try_wait().expect("poll child") {
                Some(status) => {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
                    }
                    assert!(status.success(), "{name} failed ({status}):\n{stderr}");
                }
                None => pending.push((name, child)),
            }
        }
        children = pending;
        if Instant::now() > deadline {
            for (_, child) in &mut children {
                let _ = child.kill();
            }
            panic!(
                "{} runs still going after {ROUND_LIMIT:?}: {:?}",
                children.len(),
                children.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `org.opencontainers.image.ref.name` of every entry of `index.json`.
fn tags_in(layout: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

#[test]
fn concurrent_pushes_into_one_layout_keep_every_tag() {
    require_tool("skopeo");
    require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..ROUNDS {
        let layout = tmp.path().join(format!("layout-{round}"));
        let mut expected = Vec::new();
        let mut children = Vec::new();
        for writer in 0..WRITERS {
            let tag = format!("t{writer}");
            let file = tmp.path().join(format!("in-{round}-{writer}.txt"));
            std::fs::write(&file, format!("round {round} writer {writer}\n")).unwrap();
            let child = Run::push_artifact()
                .args(["--artifact-type", "application/vnd.example.test", "--file"])
                .arg(&file)
                .image(format!("oci:{}:{tag}", layout.display()))
                .spawn();
            children.push((format!("round {round} push {tag}"), child));
            expected.push(tag);
        }
        wait_all(children);
        expected.sort();
        assert_eq!(
            tags_in(&layout),
            expected,
            "round {round}: tags in index.json"
        );
        for tag in &expected {
            run_ok(
                tool("skopeo")
                    .arg("inspect")
                    .arg("--raw")
                    .arg(format!("oci:{}:{tag}", layout.display())),
            );
        }
        let listed = run_ok(tool("umoci").arg("ls").arg("--layout").arg(&layout));
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort();
        assert_eq!(listed, expected, "round {round}: umoci ls");
    }
}

#[test]
fn concurrent_pulls_into_one_cache_keep_every_tag() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for writer in 0..WRITERS {
        let src = tmp.path().join(format!("src-{writer}"));
        write(&src, "file.txt", format!("writer {writer}\n").as_bytes());
        let image = format!("{}/app:t{writer}", reg.host());
        Run::push_bundle(&src).image(&image).assert().success();
        images.push(image);
    }
    let mut expected = images.clone();
    expected.sort();
    for round in 0..ROUNDS {
        let cache = tmp.path().join(format!("cache-{round}"));
        let children = images
            .iter()
            .enumerate()
            .map(|(writer, image)| {
                let child = Run::pull_bundle(tmp.path().join(format!("work-{round}-{writer}")))
                    .image(image)
                    .cache_dir(&cache)
                    .spawn();
                (format!("round {round} pull {image}"), child)
            })
            .collect();
        wait_all(children);
        assert_eq!(
            tags_in(&cache),
            expected,
            "round {round}: tags in the cache"
        );
    }
    // Every tag resolves from the cache alone.
    drop(reg);
    for (writer, image) in images.iter().enumerate() {
        let work = tmp.path().join(format!("offline-{writer}"));
        Run::pull_bundle(&work)
            .image(image)
            .arg("--offline")
            .cache_dir(tmp.path().join(format!("cache-{}", ROUNDS - 1)))
            .assert()
            .success();
        assert_eq!(
            std::fs::read_to_string(work.join("file.txt")).unwrap(),
            format!("writer {writer}\n")
        );
    }
}
