//! `ocistep --version` names the commit the binary was built from, and
//! build.rs finds it in a checkout, in a `git archive` tarball (the
//! `.commit` file, filled in by export-subst), from `OCISTEP_COMMIT`, or
//! says `unknown`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{run_ok, Run};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git(args: &[&str]) -> String {
    run_ok(support::tool("git").args(args).current_dir(repo()))
        .trim()
        .to_string()
}

/// Whether this crate is the top of a git work tree (a checkout).
fn in_checkout() -> bool {
    let top = support::tool("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(repo())
        .output()
        .expect("run git");
    top.status.success()
        && Path::new(String::from_utf8_lossy(&top.stdout).trim())
            .canonicalize()
            .ok()
            == repo().canonicalize().ok()
}

#[test]
fn version_names_the_commit() {
    let output = Run::new().arg("--version").output();
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let commit = if in_checkout() {
        git(&["rev-parse", "HEAD"])[..12].to_string()
    } else {
        // An unpacked tarball: whatever build.rs found there.
        build_script_says(&repo(), None)
    };
    assert_eq!(
        version,
        format!("ocistep {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// build.rs compiled on its own (it uses only std) and run as cargo runs
/// it, in `dir`; the commit it hands to the compiler.
fn build_script_says(dir: &Path, env_commit: Option<&str>) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let binary = scratch.path().join("build-script");
    run_ok(
        support::tool("rustc")
            .args(["--edition", "2021", "-o"])
            .arg(&binary)
            .arg(repo().join("build.rs")),
    );
    let mut cmd = Command::new(&binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CARGO_MANIFEST_DIR", dir)
        .env("OUT_DIR", scratch.path())
        .current_dir(dir);
    if let Some(commit) = env_commit {
        cmd.env("OCISTEP_COMMIT", commit);
    }
    let out = run_ok(&mut cmd);
    out.lines()
        .find_map(|l| l.strip_prefix("cargo:rustc-env=OCISTEP_COMMIT="))
        .unwrap_or_else(|| panic!("build.rs set no OCISTEP_COMMIT:\n{out}"))
        .to_string()
}

#[test]
fn build_script_finds_the_commit_without_git() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("ocistep-0.1.0");
    std::fs::create_dir(&tree).unwrap();
    // As in the repository: .commit not yet substituted.
    std::fs::copy(repo().join(".commit"), tree.join(".commit")).unwrap();
    assert_eq!(build_script_says(&tree, None), "unknown");
    assert_eq!(
        build_script_says(&tree, Some("0123456789ab")),
        "0123456789ab"
    );
    std::fs::write(tree.join(".commit"), format!("{}\n", "c0ffee".repeat(7))).unwrap();
    assert_eq!(build_script_says(&tree, None), "c0ffeec0ffee");
}

/// A tarball made by `git archive` (as release source tarballs are) knows
/// its commit with no .git at all.
#[test]
fn build_script_reads_the_commit_of_a_git_archive() {
    if !in_checkout() {
        panic!("this test needs the repository's git checkout (it archives HEAD)");
    }
    let scratch = tempfile::tempdir().unwrap();
    let tarball = scratch.path().join("source.tar");
    git(&[
        "archive",
        "--format=tar",
        "-o",
        tarball.to_str().unwrap(),
        "HEAD",
    ]);
    let tree = scratch.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    run_ok(
        support::tool("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree),
    );
    assert!(!tree.join(".git").exists());
    let head = git(&["rev-parse", "HEAD"]);
    assert_eq!(build_script_says(&tree, None), head[..12]);
}
