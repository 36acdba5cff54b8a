//! Stop signals in the middle of a transfer: a pull removes its staging
//! directory (and the target it created), a push cancels its upload
//! session, and both exit with 128 + the signal's number. A pull killed
//! outright leaves its staging directory to the next pull into the same
//! directory, which removes it and says so, without touching the staging
//! directory of a pull still running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use support::faults::{Fault, FaultProxy, Rule};
use support::tree::{pseudo_random, sample_tree, snapshot, write};
use support::{Registry, Run};

const STAGING_PREFIX: &str = ".ocistep-staging-";

/// Sends `signal` to `child` and returns its exit code (within 20 s).
fn signal_and_wait(child: &mut Child, signal: i32) -> Option<i32> {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    wait_for_exit(child)
}

fn wait_for_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ocistep did not exit within 20 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 30 s) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The staging directories in `dir`.
fn stagings(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(STAGING_PREFIX)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True once some staging directory in `dir` holds a file with content:
/// the pull is extracting.
fn extracting(dir: &Path) -> bool {
    fn has_file(dir: &Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let path = e.path();
                path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) || has_file(&path)
            })
        })
    }
    stagings(dir).iter().any(|s| has_file(s))
}

/// The sample tree with 3 MB of incompressible data, pushed as
/// `repo:v1` to `reg`; returns the tree.
fn pushed_tree(reg: &Registry, dir: &Path, repo: &str, seed: u64) -> PathBuf {
    let src = dir.join(format!("src-{repo}"));
    sample_tree(&src);
    write(&src, "noise.bin", &pseudo_random(3 << 20, seed));
    Run::push_bundle(&src)
        .image(format!("{}/{repo}:v1", reg.host()))
        .assert()
        .success();
    src
}

/// A proxy whose blob downloads deliver 2 MiB, then stall for 30 s.
fn stalling_downloads(reg: &Registry) -> FaultProxy {
    FaultProxy::start(
        &reg.host(),
        vec![Rule::every(
            "/blobs/sha256:",
            Fault::StallMidBody {
                after_bytes: 2 << 20,
                millis: 30_000,
            },
        )],
    )
}

#[test]
fn sigterm_mid_pull_removes_the_staging_and_the_directory_it_made() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    pushed_tree(&reg, tmp.path(), "term", 1);
    let proxy = stalling_downloads(&reg);
    let target = tmp.path().join("new/out");
    let log = tmp.path().join("log");
    let mut child = Run::pull_bundle(&target)
        .image(format!("{}/term:v1", proxy.host()))
        .spawn_logged(&log);
    wait_until("extraction under way", || extracting(&target));
    let code = signal_and_wait(&mut child, libc::SIGTERM);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(!target.exists(), "the directory the pull made is gone");
    // Its parent existed before the pull only as far as `new`: that one
    // was made by create_dir_all for the path and may stay, empty.
    assert_eq!(
        support::tree::all_paths(&tmp.path().join("new")),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn sigint_mid_pull_leaves_an_existing_directory_as_it_was() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    pushed_tree(&reg, tmp.path(), "int", 2);
    let proxy = stalling_downloads(&reg);
    let target = tmp.path().join("out");
    write(&target, "keep/me.txt", b"already here\n");
    let before = snapshot(&target);
    let log = tmp.path().join("log");
    let mut child = Run::pull_bundle(&target)
        .image(format!("{}/int:v1", proxy.host()))
        .spawn_logged(&log);
    wait_until("extraction under way", || extracting(&target));
    let code = signal_and_wait(&mut child, libc::SIGINT);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(stagings(&target), Vec::<PathBuf>::new());
    assert_eq!(snapshot(&target), before);
}

#[test]
fn sighup_mid_artifact_pull_removes_its_staging() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tool.bin");
    std::fs::write(&file, pseudo_random(3 << 20, 3)).unwrap();
    let site = tmp.path().join("site");
    sample_tree(&site);
    write(&site, "noise.bin", &pseudo_random(3 << 20, 4));
    Run::push_artifact()
        .arg("--image")
        .arg(format!("{}/art:v1", reg.host()))
        .args(["--artifact-type", "application/vnd.example.test"])
        .arg("--file")
        .arg(&file)
        .arg("--file")
        .arg(&site)
        .assert()
        .success();
    let proxy = stalling_downloads(&reg);
    let target = tmp.path().join("out");
    std::fs::create_dir(&target).unwrap();
    let log = tmp.path().join("log");
    let mut child = Run::pull_artifact(&target)
        .image(format!("{}/art:v1", proxy.host()))
        .spawn_logged(&log);
    wait_until("download under way", || extracting(&target));
    let code = signal_and_wait(&mut child, libc::SIGHUP);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(129), "{stderr}");
    assert_eq!(support::tree::all_paths(&target), Vec::<PathBuf>::new());
}

#[test]
fn sigterm_mid_push_cancels_its_upload_session() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    write(&src, "noise.bin", &pseudo_random(4 << 20, 5));
    // The registry takes the streamed PATCH's body only after 2.5 s.
    let proxy = FaultProxy::stalling_first_patch(&reg.host(), 2_500);
    let log = tmp.path().join("log");
    let mut child = Run::push_bundle(&src)
        .image(format!("{}/pushed:v1", proxy.host()))
        .spawn_logged(&log);
    wait_until("the PATCH under way", || {
        proxy.count("PATCH", "/blobs/uploads/") > 0
    });
    std::thread::sleep(Duration::from_millis(200));
    let code = signal_and_wait(&mut child, libc::SIGTERM);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        1,
        "{:#?}",
        proxy.hits()
    );
    assert_eq!(reg.upload_data_left("pushed"), Vec::<PathBuf>::new());
    assert_eq!(proxy.count("PUT", "/manifests/"), 0, "no tag was written");
}

#[test]
fn a_killed_pull_leaves_its_staging_to_the_next_pull_which_removes_it() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_tree(&reg, tmp.path(), "killed", 6);
    let proxy = stalling_downloads(&reg);
    let target = tmp.path().join("out");
    let mut child = Run::pull_bundle(&target)
        .image(format!("{}/killed:v1", proxy.host()))
        .spawn_logged(&tmp.path().join("log"));
    wait_until("extraction under way", || extracting(&target));
    assert_eq!(signal_and_wait(&mut child, libc::SIGKILL), None);
    let left = stagings(&target);
    assert_eq!(left.len(), 1, "SIGKILL leaves the staging directory");

    let out = Run::pull_bundle(&target)
        .image(format!("{}/killed:v1", reg.host()))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("removed {}", left[0].display())),
        "{stderr}"
    );
    assert_eq!(stagings(&target), Vec::<PathBuf>::new());
    assert_eq!(snapshot(&target), snapshot(&src));
}

#[test]
fn a_pull_leaves_the_live_staging_of_another_pull_alone() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    pushed_tree(&reg, tmp.path(), "slow", 7);
    let other = tmp.path().join("other");
    write(&other, "other/file.txt", b"the other bundle\n");
    Run::push_bundle(&other)
        .image(format!("{}/other:v1", reg.host()))
        .assert()
        .success();
    let proxy = stalling_downloads(&reg);
    let target = tmp.path().join("out");
    let mut slow = Run::pull_bundle(&target)
        .image(format!("{}/slow:v1", proxy.host()))
        .spawn_logged(&tmp.path().join("log"));
    wait_until("extraction under way", || extracting(&target));
    let live = stagings(&target);

    let out = Run::pull_bundle(&target)
        .image(format!("{}/other:v1", reg.host()))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("removed"), "{stderr}");
    assert_eq!(stagings(&target), live, "the live staging stays");

    assert_eq!(signal_and_wait(&mut slow, libc::SIGTERM), Some(143));
    assert_eq!(stagings(&target), Vec::<PathBuf>::new());
    assert_eq!(snapshot(&target), snapshot(&other));
}
