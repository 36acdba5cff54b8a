//! Build script: names the commit the binary is built from, for
//! `ocistep --version`, as the `OCISTEP_COMMIT` compile-time variable.
//!
//! Where the commit comes from, first found wins:
//! 1. the `OCISTEP_COMMIT` environment variable (a container build, where
//!    `.git` is not in the build context, passes it in);
//! 2. git, when this crate's directory is the top of a git work tree (a
//!    checkout): the commit checked out;
//! 3. the `.commit` file, which `git archive` fills in (`export-subst` in
//!    `.gitattributes`), so a release tarball knows its commit;
//! 4. `unknown` (a tarball made some other way).

use std::path::Path;
use std::process::Command;

/// What `.commit` holds before `git archive` substitutes it.
const UNSUBSTITUTED: &str = "$Format:";
/// Hex digits of the commit that `--version` shows, as `git describe` does.
const SHORT: usize = 12;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);
    println!("cargo:rerun-if-env-changed=OCISTEP_COMMIT");
    println!("cargo:rerun-if-changed=.commit");
    let commit = from_env()
        .or_else(|| from_git(dir))
        .or_else(|| from_archive(dir))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=OCISTEP_COMMIT={commit}");
}

fn from_env() -> Option<String> {
    std::env::var("OCISTEP_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
}

/// The checked-out commit, when `dir` is the top of a git work tree (not
/// merely somewhere inside another repository), with the files whose
/// change means a new commit marked for cargo to watch.
fn from_git(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let head = git(dir, &["rev-parse", "HEAD"])?;
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(dir, &["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(dir, &["rev-parse", "--git-path", "packed-refs"])?);
    for file in watched {
        let path = dir.join(file);
        // A file that does not exist would make cargo run this script on
        // every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(head[..SHORT.min(head.len())].to_string())
}

/// The commit `git archive` wrote into `.commit`.
fn from_archive(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".commit")).ok()?;
    let commit = text.trim();
    let valid = commit.len() >= SHORT && commit.chars().all(|c| c.is_ascii_hexdigit());
    (valid && !commit.starts_with(UNSUBSTITUTED)).then(|| commit[..SHORT].to_string())
}

/// `git ARGS` in `dir`; its trimmed output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
