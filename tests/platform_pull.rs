//! `--platform` on pulls: a multi-platform index of source bundles gives
//! each node its own tree; a missing platform is exit 7 with the list.

mod support;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::tree::{snapshot, write};
use support::{Registry, Run};

#[test]
fn pulls_pick_the_child_for_the_platform() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (amd, arm) = (tmp.path().join("amd64"), tmp.path().join("arm64"));
    write(&amd, "arch.txt", b"amd64\n");
    write(&arm, "arch.txt", b"arm64\n");
    Run::push_bundle(&amd)
        .image(format!("{}/src:v1-linux-amd64", reg.host()))
        .assert()
        .success();
    Run::push_bundle(&arm)
        .image(format!("{}/src:v1-linux-arm64", reg.host()))
        .assert()
        .success();
    let index = format!("{}/src:v1", reg.host());
    Run::assemble_index()
        .image(&index)
        .args([
            "--platform-image",
            &format!("linux/amd64={}/src:v1-linux-amd64", reg.host()),
        ])
        .args([
            "--platform-image",
            &format!("linux-arm64={}/src:v1-linux-arm64", reg.host()),
        ])
        .assert()
        .success();

    for (platform, expected) in [
        ("linux/arm64/v8", &arm),
        ("aarch64", &arm),
        ("linux-amd64", &amd),
    ] {
        let work = tmp
            .path()
            .join(format!("work-{}", platform.replace('/', "_")));
        Run::pull_bundle(&work)
            .image(&index)
            .args(["--platform", platform])
            .assert()
            .success();
        assert_eq!(snapshot(expected), snapshot(&work), "{platform}");
    }
    // Without --platform: this machine's platform.
    let host = if cfg!(target_arch = "aarch64") {
        &arm
    } else {
        &amd
    };
    let work = tmp.path().join("work-host");
    Run::pull_bundle(&work).image(&index).assert().success();
    assert_eq!(snapshot(host), snapshot(&work));

    // --prune never deletes an index other platforms may still need.
    Run::pull_bundle(tmp.path().join("work-prune"))
        .image(&index)
        .args(["--platform", "linux/arm64", "--prune"])
        .assert()
        .success()
        .stderr(contains("--prune skipped"));
    let again = tmp.path().join("work-after-prune");
    Run::pull_bundle(&again)
        .image(&index)
        .args(["--platform", "linux/amd64"])
        .assert()
        .success();
    assert_eq!(snapshot(&amd), snapshot(&again));

    let missing = tmp.path().join("work-s390x");
    Run::pull_bundle(&missing)
        .image(&index)
        .args(["--platform", "linux/s390x"])
        .assert()
        .code(7)
        .stderr(
            contains("linux/s390x")
                .and(contains("linux/amd64"))
                .and(contains("linux/arm64")),
        );
    assert!(!missing.exists());
    Run::pull_bundle(&missing)
        .image(&index)
        .args(["--platform", "linux/"])
        .assert()
        .code(2);
}
