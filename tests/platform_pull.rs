//! `--platform` on pulls: a multi-platform index of source bundles gives
//! each node its own tree; a missing platform is exit 7 with the list.

mod support;

use std::path::Path;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::tree::{snapshot, write};
use support::{ocistep, Registry};

fn push(src: &Path, image: &str) {
    ocistep()
        .arg("--push-source-bundle")
        .arg(src)
        .args(["--image", image])
        .assert()
        .success();
}

#[test]
fn pulls_pick_the_child_for_the_platform() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (amd, arm) = (tmp.path().join("amd64"), tmp.path().join("arm64"));
    write(&amd, "arch.txt", b"amd64\n");
    write(&arm, "arch.txt", b"arm64\n");
    push(&amd, &format!("{}/src:v1-linux-amd64", reg.host()));
    push(&arm, &format!("{}/src:v1-linux-arm64", reg.host()));
    let index = format!("{}/src:v1", reg.host());
    ocistep()
        .args(["--assemble-index", "--image", &index])
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
        ocistep()
            .arg("--pull-source-bundle")
            .arg(&work)
            .args(["--image", &index, "--platform", platform])
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
    ocistep()
        .arg("--pull-source-bundle")
        .arg(&work)
        .args(["--image", &index])
        .assert()
        .success();
    assert_eq!(snapshot(host), snapshot(&work));

    // --prune never deletes an index other platforms may still need.
    ocistep()
        .arg("--pull-source-bundle")
        .arg(tmp.path().join("work-prune"))
        .args(["--image", &index, "--platform", "linux/arm64", "--prune"])
        .assert()
        .success()
        .stderr(contains("--prune skipped"));
    let again = tmp.path().join("work-after-prune");
    ocistep()
        .arg("--pull-source-bundle")
        .arg(&again)
        .args(["--image", &index, "--platform", "linux/amd64"])
        .assert()
        .success();
    assert_eq!(snapshot(&amd), snapshot(&again));

    let missing = tmp.path().join("work-s390x");
    ocistep()
        .arg("--pull-source-bundle")
        .arg(&missing)
        .args(["--image", &index, "--platform", "linux/s390x"])
        .assert()
        .code(7)
        .stderr(
            contains("linux/s390x")
                .and(contains("linux/amd64"))
                .and(contains("linux/arm64")),
        );
    assert!(!missing.exists());
    ocistep()
        .arg("--pull-source-bundle")
        .arg(&missing)
        .args(["--image", &index, "--platform", "linux/"])
        .assert()
        .code(2);
}
