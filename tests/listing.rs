//! `--show-listing` prints one line per extracted entry, with names escaped
//! as errors escape them: a newline in a name cannot forge a line, and
//! terminal escape sequences never reach stdout.

mod support;

use std::path::{Path, PathBuf};

use support::tree::write;
use support::Run;

/// A tree with a name holding a newline (that would print as a line of its
/// own naming `/etc/cron.d/x`), one holding an ANSI colour sequence, and a
/// plain one.
fn hostile_names_tree(root: &Path) {
    write(root, "a\n/etc/cron.d/x", b"* * * * * root true\n");
    write(root, "\x1b[31mred", b"red\n");
    write(root, "plain.txt", b"plain\n");
}

/// The entries of [`hostile_names_tree`] as the listing shows them, each
/// under `prefix`.
fn expected_lines(prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = [
        "a\\n",
        "a\\n/etc",
        "a\\n/etc/cron.d",
        "a\\n/etc/cron.d/x",
        "\\u{1b}[31mred",
        "plain.txt",
    ]
    .iter()
    .map(|l| format!("{prefix}{l}"))
    .collect();
    lines.sort();
    lines
}

/// Checks stdout of a pull with `--show-listing`: no control byte, and
/// exactly the expected lines (directories may end in `/`).
fn assert_listing(stdout: &[u8], expected: &[String]) {
    assert!(
        !stdout.iter().any(|b| b.is_ascii_control() && *b != b'\n'),
        "control bytes on stdout: {stdout:?}"
    );
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let mut lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('/')).collect();
    lines.sort();
    assert_eq!(lines, expected, "listing:\n{text}");
    assert!(!lines.contains(&"/etc/cron.d/x"), "a forged line:\n{text}");
}

/// Pushes [`hostile_names_tree`] (as `name`) into a layout with the run
/// `push` makes for a source, pulls it with the run `pull` makes for a
/// target and `--show-listing`, and returns the scratch directory (the pull
/// went to `work/`) and stdout.
fn pushed_and_listed(
    name: &str,
    push: impl FnOnce(&Path) -> Run,
    pull: impl FnOnce(PathBuf) -> Run,
) -> (tempfile::TempDir, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join(name);
    hostile_names_tree(&src);
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    push(&src).image(&image).assert().success();
    let out = pull(tmp.path().join("work"))
        .image(&image)
        .arg("--show-listing")
        .assert()
        .success();
    let stdout = out.get_output().stdout.clone();
    (tmp, stdout)
}

#[test]
fn bundle_listing_escapes_newlines_and_escape_sequences() {
    let (tmp, stdout) = pushed_and_listed("src", |src| Run::push_bundle(src), Run::pull_bundle);
    assert_listing(&stdout, &expected_lines(""));
    // The files themselves keep their names.
    assert!(tmp.path().join("work/a\n/etc/cron.d/x").is_file());
    assert!(tmp.path().join("work/\x1b[31mred").is_file());
}

#[test]
fn artifact_listing_escapes_newlines_and_escape_sequences() {
    let push = |src: &Path| {
        let mut run = Run::push_artifact();
        run.args(["--artifact-type", "application/vnd.example.test"])
            .arg("--file")
            .arg(src);
        run
    };
    let (_tmp, stdout) = pushed_and_listed("tree", push, Run::pull_artifact);
    let mut expected = expected_lines("tree/");
    expected.push("tree".to_string());
    expected.sort();
    assert_listing(&stdout, &expected);
}
