//! Tests of [`walk`] as a whole: what a tree yields, in what order, and
//! how ignore files and `--exclude` patterns leave entries out. The helpers
//! here serve the tests of the submodules too.

use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

pub(super) fn stamp_of(path: &Path) -> FileStamp {
    FileStamp::of(&fs::metadata(path).unwrap())
}

pub(super) fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

pub(super) fn names(root: &Path, opts: &WalkOptions) -> Vec<String> {
    walk(root, opts, &mut |w| panic!("unexpected warning {w}"))
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.rel)
        .collect()
}

pub(super) fn err_of(root: &Path, opts: &WalkOptions) -> Error {
    walk(root, opts, &mut |_| {}).unwrap_err()
}

#[test]
fn includes_hidden_and_gitignore_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "z.txt", "z");
    write(root, ".gitignore", "*.txt\n");
    write(root, ".hidden/x", "x");
    write(root, "a/b/c.txt", "c");
    write(root, "a.txt", "a");
    fs::create_dir(root.join("empty")).unwrap();
    assert_eq!(
        names(root, &WalkOptions::default()),
        [
            ".gitignore",
            ".hidden",
            ".hidden/x",
            "a",
            "a.txt",
            "a/b",
            "a/b/c.txt",
            "empty",
            "z.txt"
        ]
    );
}

#[test]
fn order_does_not_depend_on_creation_order() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let files = ["b/2", "a/1", "c", "a/0", "b/1", "a-b", "a.b"];
    for f in files {
        write(one.path(), f, f);
    }
    for f in files.iter().rev() {
        write(two.path(), f, f);
    }
    let opts = WalkOptions::default();
    let first = names(one.path(), &opts);
    assert_eq!(first, names(two.path(), &opts));
    assert_eq!(
        first,
        ["a", "a-b", "a.b", "a/0", "a/1", "b", "b/1", "b/2", "c"]
    );
}

#[test]
fn entry_kinds_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "run.sh", "#!/bin/sh\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    write(root, "data", "12345");
    symlink("data", root.join("link")).unwrap();
    let entries = walk(root, &WalkOptions::default(), &mut |_| {})
        .unwrap()
        .entries;
    let base = fs::canonicalize(root).unwrap();
    assert_eq!(
        entries,
        [
            SourceEntry {
                rel: "data".into(),
                kind: SourceKind::File {
                    path: base.join("data"),
                    at: FileAt::Tree("data".into()),
                    size: 5,
                    executable: false,
                    stamp: stamp_of(&base.join("data")),
                },
            },
            SourceEntry {
                rel: "link".into(),
                kind: SourceKind::Symlink {
                    target: "data".into()
                }
            },
            SourceEntry {
                rel: "run.sh".into(),
                kind: SourceKind::File {
                    path: base.join("run.sh"),
                    at: FileAt::Tree("run.sh".into()),
                    size: 10,
                    executable: true,
                    stamp: stamp_of(&base.join("run.sh")),
                },
            },
        ]
    );
}

#[test]
fn shpignore_at_root_and_nested() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".shpignore", "*.log\n/build\n");
    write(root, "a.log", "");
    write(root, "build/out", "");
    write(root, "sub/build/kept", "");
    write(root, "sub/deep/x.log", "");
    write(root, "sub/.shpignore", "secret\n!keep.log\n");
    write(root, "sub/secret", "");
    write(root, "sub/keep.log", "");
    write(root, "secret", "");
    assert_eq!(
        names(root, &WalkOptions::default()),
        [
            ".shpignore",
            "secret",
            "sub",
            "sub/.shpignore",
            "sub/build",
            "sub/build/kept",
            "sub/deep",
            "sub/keep.log"
        ]
    );
}

#[test]
fn ignore_file_is_relative_to_root() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "docs/a.md", "");
    write(root, "src/docs/b.md", "");
    write(root, "x.tmp", "");
    write(root, "src/y.tmp", "");
    write(root, "keep", "");
    let file = rules.path().join("rules");
    fs::write(&file, "/docs\n*.tmp\n").unwrap();
    let opts = WalkOptions {
        ignore_files: vec![file],
        ..Default::default()
    };
    assert_eq!(
        names(root, &opts),
        ["keep", "src", "src/docs", "src/docs/b.md"]
    );
}

#[test]
fn missing_ignore_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalkOptions {
        ignore_files: vec![dir.path().join("nope")],
        ..Default::default()
    };
    match err_of(dir.path(), &opts) {
        Error::Usage(msg) => assert!(msg.contains("nope"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn excludes_work_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "target/debug/x", "");
    write(root, "crates/a/target/y", "");
    write(root, "crates/a/src/lib.rs", "");
    write(root, "run.log", "");
    write(root, "crates/a/deep.log", "");
    write(root, "target.txt", "");
    let opts = WalkOptions {
        excludes: vec!["target/".into(), "*.log".into()],
        ..Default::default()
    };
    assert_eq!(
        names(root, &opts),
        [
            "crates",
            "crates/a",
            "crates/a/src",
            "crates/a/src/lib.rs",
            "target.txt"
        ]
    );
}

#[test]
fn anchored_exclude_only_matches_at_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "vendor/a", "");
    write(root, "x/vendor/b", "");
    let opts = WalkOptions {
        excludes: vec!["/vendor".into()],
        ..Default::default()
    };
    assert_eq!(names(root, &opts), ["x", "x/vendor", "x/vendor/b"]);
}

#[test]
fn negated_exclude_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalkOptions {
        excludes: vec!["!keep".into()],
        ..Default::default()
    };
    assert!(matches!(err_of(dir.path(), &opts), Error::Usage(_)));
}

#[test]
fn fifo_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "sub/f", "");
    let status = Command::new("mkfifo")
        .arg(root.join("sub/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut warnings = Vec::new();
    let entries = walk(root, &WalkOptions::default(), &mut |w| warnings.push(w))
        .unwrap()
        .entries;
    let rels: Vec<_> = entries.iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(rels, ["sub", "sub/f"]);
    assert_eq!(
        warnings,
        ["skipping sub/pipe: sockets, fifos and device nodes are not stored"]
    );
}

#[test]
fn root_must_be_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    match err_of(&missing, &WalkOptions::default()) {
        Error::Usage(msg) => assert!(msg.ends_with("does not exist"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    write(dir.path(), "file", "");
    match err_of(&dir.path().join("file"), &WalkOptions::default()) {
        Error::Usage(msg) => assert!(msg.ends_with("is not a directory"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn non_utf8_names_are_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"bad\xffname");
    if fs::write(dir.path().join(name), "").is_err() {
        return; // the file system refuses such names itself
    }
    match err_of(dir.path(), &WalkOptions::default()) {
        Error::InvalidInput(msg) => assert!(msg.contains("bad\u{fffd}name"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_pattern_in_ignore_files_is_reported() {
    for rel in [".shpignore", "sub/.shpignore"] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), rel, "ok\n[z-a]\n");
        match err_of(dir.path(), &WalkOptions::default()) {
            Error::InvalidInput(msg) => {
                assert!(msg.contains(rel) && msg.contains("line 2"), "{msg}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The names the `ignore` crate's own walker keeps under the same rules:
/// the reference for how the rules combine.
fn reference_names(root: &Path, opts: &WalkOptions) -> Vec<String> {
    use ignore::overrides::OverrideBuilder;
    let base = fs::canonicalize(root).unwrap();
    let mut excludes = OverrideBuilder::new(&base);
    for pattern in &opts.excludes {
        excludes.add(&format!("!{pattern}")).unwrap();
    }
    let mut builder = ignore::WalkBuilder::new(&base);
    builder
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .current_dir(&base)
        .add_custom_ignore_filename(IGNORE_FILE_NAME)
        .overrides(excludes.build().unwrap());
    for file in &opts.ignore_files {
        assert!(builder.add_ignore(file).is_none());
    }
    let mut names: Vec<String> = builder
        .build()
        .map(|item| item.unwrap())
        .filter(|item| item.depth() > 0)
        .map(|item| {
            item.path()
                .strip_prefix(&base)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn rules_combine_like_the_ignore_crates_walker() {
    use rand::{Rng, SeedableRng};
    const NAMES: &[&str] = &[
        "a", "b", "build", "x.log", "keep.log", "secret", "a.txt", "d1",
    ];
    const PATTERNS: &[&str] = &[
        "*.log",
        "!keep.log",
        "/build",
        "build/",
        "secret",
        "a/**/x.log",
        "**/b",
        "*.txt",
        "!a.txt",
        "d*/",
        "!b",
        "/a",
        "a/",
        "!secret",
        "**/d1/*.log",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut next = |n: usize| rng.random_range(0..n);
    for _ in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        let rules = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut dirs = vec![root.to_path_buf()];
        for _ in 0..25 {
            let parent = dirs[next(dirs.len())].clone();
            let name = NAMES[next(NAMES.len())];
            let path = parent.join(name);
            if path.exists() || parent.components().count() > root.components().count() + 3 {
                continue;
            }
            if next(3) == 0 {
                fs::create_dir(&path).unwrap();
                dirs.push(path);
            } else {
                fs::write(&path, name).unwrap();
            }
        }
        let some_patterns = |next: &mut dyn FnMut(usize) -> usize| {
            let count = 1 + next(3);
            (0..count)
                .map(|_| PATTERNS[next(PATTERNS.len())])
                .collect::<Vec<_>>()
        };
        for d in &dirs {
            if next(3) == 0 {
                fs::write(
                    d.join(IGNORE_FILE_NAME),
                    some_patterns(&mut next).join("\n"),
                )
                .unwrap();
            }
        }
        let mut opts = WalkOptions::default();
        if next(2) == 0 {
            opts.excludes = some_patterns(&mut next)
                .into_iter()
                .filter(|p| !p.starts_with('!'))
                .map(str::to_string)
                .collect();
        }
        for i in 0..next(3) {
            let file = rules.path().join(format!("rules{i}"));
            fs::write(&file, some_patterns(&mut next).join("\n")).unwrap();
            opts.ignore_files.push(file);
        }
        assert_eq!(names(root, &opts), reference_names(root, &opts), "{opts:?}");
    }
}

#[test]
fn an_ignore_file_is_read_beneath_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write(&root, "rules/shared", "*.log\n");
    write(&root, "a.log", "x");
    write(&root, "sub/b.log", "x");
    // A link to a file inside the tree counts.
    symlink("../rules/shared", root.join("sub/.shpignore")).unwrap();
    let found = names(&root, &WalkOptions::default());
    assert!(!found.contains(&"sub/b.log".to_string()), "{found:?}");
    assert!(found.contains(&"a.log".to_string()), "{found:?}");
    // One that leaves the tree is refused, even when the link itself is
    // excluded: its rules cannot come from outside.
    write(dir.path(), "outside", "*\n");
    symlink("../outside", root.join(".shpignore")).unwrap();
    let opts = WalkOptions {
        excludes: vec!["/.shpignore".to_string()],
        ..Default::default()
    };
    match err_of(&root, &opts) {
        Error::InvalidInput(msg) => assert!(msg.contains(".shpignore"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}
