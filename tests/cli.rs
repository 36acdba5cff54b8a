//! The command line: help, version, usage errors, result files, logs, and
//! source trees that cannot be packed.

mod support;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::tree::write;
use support::Run;

#[test]
fn help_lists_every_mode_with_an_example_and_the_exit_codes() {
    Run::new().arg("--help").assert().success().stdout(
        contains("--push-source-bundle")
            .and(contains("--pull-source-bundle"))
            .and(contains("ocistep --push-source-bundle ./src --image"))
            .and(contains("ocistep --pull-source-bundle ./work --image"))
            .and(contains("Exit codes")),
    );
    Run::new()
        .arg("--version")
        .assert()
        .success()
        .stdout(contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    // No mode and nothing to process (--image alone is Shipwright's
    // image-processing form, see tests/shipwright.rs).
    Run::new()
        .arg("-v")
        .assert()
        .code(2)
        .stderr(contains("no mode given"));
    Run::push_bundle(".")
        .args(["--pull-source-bundle", "."])
        .image("x")
        .assert()
        .code(2);
    Run::push_bundle(".")
        .image("Bad Ref")
        .assert()
        .code(2)
        .stderr(contains("invalid image reference"));
    Run::push_bundle(".")
        .image("oci:x")
        .args(["--annotation", "novalue"])
        .assert()
        .code(2);
    Run::push_bundle(".")
        .image("oci:x")
        .args(["--compression-level", "11"])
        .assert()
        .code(2);
    Run::push_bundle(".")
        .image("oci:x")
        .args(["--source-timestamp", "yesterday"])
        .assert()
        .code(2);
}

#[test]
fn missing_source_directory_is_a_usage_error_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = tmp.path().join("d");
    Run::push_bundle(tmp.path().join("nope"))
        .image(format!("oci:{}:v1", layout.display()))
        .digest_to(&digest)
        .assert()
        .code(2)
        .stderr(contains("nope"));
    assert!(!digest.exists());
    assert!(!layout.exists(), "no layout is created for a failed push");
}

#[test]
fn an_escaping_symlink_is_named_and_dereference_stores_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "a", b"a");
    write(tmp.path(), "outside.txt", b"outside content");
    std::os::unix::fs::symlink("../outside.txt", src.join("escape")).unwrap();
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::push_bundle(&src)
        .image(&image)
        .assert()
        .code(9)
        .stderr(contains("escape").and(contains("--dereference-symlinks")));
    Run::push_bundle(&src)
        .image(&image)
        .arg("--dereference-symlinks")
        .assert()
        .success();
    let work = tmp.path().join("work");
    Run::pull_bundle(&work).image(&image).assert().success();
    assert_eq!(
        std::fs::read(work.join("escape")).unwrap(),
        b"outside content"
    );
    assert!(!std::fs::symlink_metadata(work.join("escape"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn ignore_file_and_excludes_leave_paths_out() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in [
        "keep.rs",
        "debug.log",
        "target/out.o",
        "sub/deep.log",
        "vendor/x",
        "secret.env",
    ] {
        write(&src, f, b"x");
    }
    write(&src, ".shpignore", b"*.log\n");
    write(tmp.path(), "extra-ignore", b"secret.env\n");
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--exclude", "target/", "--exclude", "vendor"])
        .arg("--ignore-file")
        .arg(tmp.path().join("extra-ignore"))
        .assert()
        .success();
    let out = Run::pull_bundle(tmp.path().join("work"))
        .image(&image)
        .arg("--show-listing")
        .assert()
        .success();
    let listing = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let mut names: Vec<&str> = listing.lines().map(|l| l.trim_end_matches('/')).collect();
    names.sort();
    assert_eq!(names, vec![".shpignore", "keep.rs", "sub"]);
}

#[test]
fn json_logs_are_json_lines_and_stdout_stays_clean() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("src"), "a", b"a");
    let out = Run::push_bundle(tmp.path().join("src"))
        .image(format!("oci:{}:v1", tmp.path().join("l").display()))
        .args(["--log-format", "json"])
        .assert()
        .success();
    assert!(out.get_output().stdout.is_empty());
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[test]
fn source_date_epoch_sets_the_timestamp_and_empty_result_paths_mean_none() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("src"), "a", b"a");
    let image = format!("oci:{}:v1", tmp.path().join("l").display());
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .args(["--result-file-image-size", "", "--secret-path", ""])
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .assert()
        .success();
    Run::pull_bundle(tmp.path().join("w"))
        .image(&image)
        .arg("--result-file-source-timestamp")
        .arg(tmp.path().join("ts"))
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ts")).unwrap(),
        "1234567890"
    );
}

#[test]
fn a_file_its_owner_may_not_read_is_refused_even_when_others_may() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = tmp.path().join("src");
    write(&src, "ok.txt", b"fine");
    write(&src, "mine.txt", b"secret");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    // For its owner, a file's owner bits decide, whatever the group's and
    // others' bits say.
    std::fs::set_permissions(src.join("mine.txt"), std::fs::Permissions::from_mode(0o044)).unwrap();
    if running_as_root() {
        for path in [&src, &src.join("ok.txt"), &src.join("mine.txt")] {
            std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
        }
    }
    assert_refused_unprivileged(&src, &tmp.path().join("out"), "mine.txt");
}

/// Pushes `src` unprivileged into a layout under `out_dir` (made here) and
/// asserts the push is refused naming `name` as denied, writing nothing.
fn assert_refused_unprivileged(src: &std::path::Path, out_dir: &std::path::Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(out_dir).unwrap();
    std::fs::set_permissions(out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    unprivileged(
        Run::push_bundle(src).image(format!("oci:{}:v1", out_dir.join("layout").display())),
    )
    .assert()
    .code(9)
    .stderr(contains(name).and(contains("denied")));
    assert!(
        !out_dir.join("layout").exists(),
        "nothing written for {name}"
    );
}

/// Whether the tests run as root.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Makes `run` run as an unprivileged user (uid 65534) when the tests run
/// as root, so that file permissions apply.
fn unprivileged(run: &mut Run) -> &mut Run {
    if running_as_root() {
        let setpriv = support::require_tool("setpriv");
        run.via(
            setpriv,
            ["--reuid=65534", "--regid=65534", "--clear-groups", "--"],
        )
        .env("HOME", "/nonexistent");
    }
    run
}

#[test]
fn unreadable_files_and_directories_are_invalid_input_and_named() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // A locked .shpignore is refused too: the rules it holds may be what
    // keeps secrets out of the bundle.
    for (name, setup) in [
        ("locked-file", "file"),
        ("closed-dir", "dir"),
        (".shpignore", "file"),
    ] {
        let src = tmp.path().join(format!("src-{name}"));
        write(&src, "ok.txt", b"fine");
        let victim = src.join(name);
        if setup == "file" {
            std::fs::write(&victim, b"secret").unwrap();
        } else {
            write(&victim, "inner", b"x");
        }
        for dir in [&src, &src.join(name)] {
            if dir.is_dir() {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o000)).unwrap();
        let out_dir = tmp.path().join(format!("out-{name}"));
        assert_refused_unprivileged(&src, &out_dir, name);
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
