//! Symlinks met while walking: kept as links when they stay inside the
//! tree, stored as the file they point to when they leave it and
//! dereferencing is on, refused otherwise.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{check_readable, FileAt, FileStamp, SourceEntry, SourceKind, WalkOptions};
use crate::error::{Error, Result};

/// The entry for a symlink: kept as a link when it stays inside the tree,
/// stored as the file it points to when it leaves and dereferencing is on,
/// refused otherwise.
pub(super) fn symlink_entry(
    rel: String,
    raw: &Path,
    path: &Path,
    opts: &WalkOptions,
) -> Result<SourceEntry> {
    let target = raw.to_str().map(str::to_owned).ok_or_else(|| {
        Error::InvalidInput(format!(
            "symlink {rel} has a target that is not valid UTF-8 ({}); change the link or \
             exclude it with --exclude",
            raw.to_string_lossy()
        ))
    })?;
    if stays_inside(&rel, &target) {
        return Ok(SourceEntry {
            rel,
            kind: SourceKind::Symlink { target },
        });
    }
    if !opts.dereference_symlinks {
        return Err(Error::InvalidInput(format!(
            "symlink {rel} -> {target} points outside the source directory; remove it, exclude \
             it with --exclude, or pass --dereference-symlinks to store the file it points to"
        )));
    }
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::InvalidInput(format!(
                "symlink {rel} -> {target} points outside the source directory to something that \
                 does not exist, so it cannot be dereferenced; remove it or exclude it with \
                 --exclude"
            )))
        }
        Err(e) => {
            return Err(Error::InvalidInput(format!(
                "symlink {rel} -> {target} points outside the source directory and cannot be \
                 followed: {e}; remove it or exclude it with --exclude"
            )))
        }
    };
    if meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "symlink {rel} -> {target} points to a directory outside the source directory; \
             --dereference-symlinks only stores files, so remove it or exclude it with --exclude"
        )));
    }
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "symlink {rel} -> {target} points outside the source directory to something that is \
             not a regular file; remove it or exclude it with --exclude"
        )));
    }
    let kind = file_kind(path, &meta)?;
    Ok(SourceEntry { rel, kind })
}

/// A `File` kind from metadata, after checking that the file can be read
/// (so an unreadable file fails before anything is packed).
fn file_kind(path: &Path, meta: &fs::Metadata) -> Result<SourceKind> {
    check_readable(rustix::fs::CWD, path, path, (meta.uid(), meta.mode()))?;
    Ok(SourceKind::File {
        path: path.to_path_buf(),
        at: FileAt::Outside,
        size: meta.len(),
        executable: meta.permissions().mode() & 0o111 != 0,
        stamp: FileStamp::of(meta),
    })
}

/// Whether `target`, resolved lexically against the directory holding the
/// link at `rel`, stays inside the root. Absolute targets never do.
fn stays_inside(rel: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    // Depth of the directory that holds the link, counted from the root.
    let mut depth = rel.split('/').count().saturating_sub(1);
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::walk::tests::{err_of, names, stamp_of, write};
    use crate::archive::walk::walk;
    use std::os::unix::fs::symlink;

    #[test]
    fn escaping_symlink_is_refused_naming_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(outside.path(), "secret", "s");
        fs::create_dir(root.join("sub")).unwrap();
        symlink("../../secret", root.join("sub/up")).unwrap();
        match err_of(root, &WalkOptions::default()) {
            Error::InvalidInput(msg) => {
                assert!(
                    msg.contains("symlink sub/up -> ../../secret points outside"),
                    "{msg}"
                );
                assert!(msg.contains("--dereference-symlinks"), "{msg}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn in_tree_relative_symlinks_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "a/b/file", "");
        symlink("../../a/./b/file", root.join("a/b/up")).unwrap();
        symlink("..", root.join("a/parent")).unwrap();
        symlink("missing", root.join("dangling")).unwrap();
        let opts = WalkOptions {
            dereference_symlinks: true,
            ..Default::default()
        };
        let entries = walk(root, &opts, &mut |_| {}).unwrap().entries;
        let links: Vec<_> = entries
            .iter()
            .filter_map(|e| match &e.kind {
                SourceKind::Symlink { target } => Some((e.rel.as_str(), target.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            links,
            [
                ("a/b/up", "../../a/./b/file"),
                ("a/parent", ".."),
                ("dangling", "missing")
            ]
        );
    }

    #[test]
    fn lexical_resolution() {
        assert!(stays_inside("link", "a/b"));
        assert!(stays_inside("a/link", ".."));
        assert!(stays_inside("a/b/link", "../../c"));
        assert!(!stays_inside("link", ".."));
        assert!(!stays_inside("a/link", "../../a"));
        assert!(!stays_inside("a/link", "x/../../../a"));
        assert!(!stays_inside("link", "/etc/passwd"));
    }

    #[test]
    fn absolute_symlink_into_the_tree_is_escaping() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write(&root, "a.txt", "a");
        let target = root.join("a.txt");
        symlink(&target, root.join("abs")).unwrap();
        match err_of(&root, &WalkOptions::default()) {
            Error::InvalidInput(msg) => assert!(msg.contains("symlink abs -> /"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dereference_stores_the_file_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(outside.path(), "tool", "#!/bin/sh\n");
        fs::set_permissions(
            outside.path().join("tool"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink(outside.path().join("tool"), root.join("tool")).unwrap();
        let opts = WalkOptions {
            dereference_symlinks: true,
            ..Default::default()
        };
        let entries = walk(root, &opts, &mut |_| {}).unwrap().entries;
        let base = fs::canonicalize(root).unwrap();
        assert_eq!(
            entries,
            [SourceEntry {
                rel: "tool".into(),
                kind: SourceKind::File {
                    path: base.join("tool"),
                    at: FileAt::Outside,
                    size: 10,
                    executable: true,
                    // The file's own stamp, not the link's.
                    stamp: stamp_of(&outside.path().join("tool")),
                },
            }]
        );
        assert_eq!(
            fs::read_to_string(base.join("tool")).unwrap(),
            "#!/bin/sh\n"
        );
    }

    #[test]
    fn dereference_refuses_directories_and_dangling_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let opts = WalkOptions {
            dereference_symlinks: true,
            ..Default::default()
        };
        symlink(outside.path(), dir.path().join("d")).unwrap();
        match err_of(dir.path(), &opts) {
            Error::InvalidInput(msg) => assert!(
                msg.contains("symlink d -> ") && msg.contains("directory"),
                "{msg}"
            ),
            other => panic!("unexpected {other:?}"),
        }
        fs::remove_file(dir.path().join("d")).unwrap();
        symlink(outside.path().join("gone"), dir.path().join("g")).unwrap();
        match err_of(dir.path(), &opts) {
            Error::InvalidInput(msg) => assert!(
                msg.contains("symlink g -> ") && msg.contains("does not exist"),
                "{msg}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn excluded_escaping_symlink_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/etc", dir.path().join("etc")).unwrap();
        write(dir.path(), "f", "");
        let opts = WalkOptions {
            excludes: vec!["etc".into()],
            ..Default::default()
        };
        assert_eq!(names(dir.path(), &opts), ["f"]);
    }
}
