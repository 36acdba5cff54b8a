//! Collecting the entries of a source bundle from a directory tree.
//!
//! Everything under the root is included unless an ignore rule says
//! otherwise: hidden files and `.gitignore` files are not special. The rules,
//! all in gitignore syntax, come from (highest precedence first):
//!
//! 1. `--exclude` patterns, relative to the root;
//! 2. `.shpignore` files, at the root and in any subdirectory (a nested file
//!    applies to its own directory, like a nested `.gitignore`);
//! 3. `--ignore-file` files, whose patterns are relative to the root.
//!
//! The result is sorted by path so the bundle does not depend on the order in
//! which the file system lists directories.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use ignore::overrides::{Override, OverrideBuilder};
use ignore::{DirEntry, WalkBuilder, WalkState};

use crate::error::{Error, Result};

/// The ignore file read from the root of every bundle (Shipwright's name).
pub const IGNORE_FILE_NAME: &str = ".shpignore";

/// Most threads walking a tree.
const MAX_WALK_THREADS: usize = 4;

/// Options that select what goes into the bundle.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Extra gitignore-syntax files (`--ignore-file`), found relative to the
    /// working directory; their patterns are applied relative to the root.
    pub ignore_files: Vec<PathBuf>,
    /// `--exclude PATTERN` values, gitignore syntax, relative to the root.
    pub excludes: Vec<String>,
    /// Store a symlink that leaves the tree as the file it points to.
    pub dereference_symlinks: bool,
}

/// One entry of the bundle, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The path inside the bundle: `/`-separated, relative, no leading `./`.
    pub rel: String,
    /// What the entry is.
    pub kind: SourceKind,
}

/// The kind of a bundle entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory (stored even when empty).
    Dir,
    /// A regular file.
    File {
        /// The absolute on-disk path to read the content from.
        path: PathBuf,
        /// The size in bytes seen while walking.
        size: u64,
        /// Whether any execute bit is set.
        executable: bool,
    },
    /// A symbolic link that stays inside the tree.
    Symlink {
        /// The link target, exactly as stored in the link.
        target: String,
    },
}

/// Collects the entries under `root`, honouring the ignore rules in `opts`.
///
/// The root itself is not an entry; every directory below it is, including
/// empty ones. Sockets, fifos and device nodes are skipped with a message to
/// `warn`. Symlinks that leave the tree are refused unless
/// `opts.dereference_symlinks` is set, in which case the regular file they
/// point to is stored instead.
pub fn walk(
    root: &Path,
    opts: &WalkOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<SourceEntry>> {
    let base = canonical_root(root)?;
    let builder = walk_builder(&base, opts)?;
    let mut entries = match walk_parallel(&builder, &base, opts) {
        Some((entries, mut warnings)) => {
            warnings.sort();
            warnings.into_iter().for_each(&mut *warn);
            entries
        }
        // Something is wrong: walk again in order, so the error reported
        // does not depend on which thread came across what first.
        None => walk_in_order(&builder, &base, opts, warn)?,
    };
    entries.sort_unstable_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(entries)
}

/// The walker over `base` with the ignore rules of `opts`.
fn walk_builder(base: &Path, opts: &WalkOptions) -> Result<WalkBuilder> {
    let overrides = build_excludes(base, &opts.excludes)?;
    let mut builder = WalkBuilder::new(base);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    builder
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .current_dir(base)
        .add_custom_ignore_filename(IGNORE_FILE_NAME)
        .overrides(overrides)
        .threads(cores.min(MAX_WALK_THREADS));
    for file in &opts.ignore_files {
        add_ignore_file(&mut builder, file)?;
    }
    Ok(builder)
}

/// The entries (unsorted) and warnings of a walk on several threads, or
/// `None` if any item failed.
fn walk_parallel(
    builder: &WalkBuilder,
    base: &Path,
    opts: &WalkOptions,
) -> Option<(Vec<SourceEntry>, Vec<String>)> {
    let found = Mutex::new((Vec::new(), Vec::new()));
    let failed = AtomicBool::new(false);
    builder.build_parallel().run(|| {
        Box::new(|item| {
            let mut warnings = Vec::new();
            match item_entry(item, base, opts, &mut |w| warnings.push(w)) {
                Ok(entry) => {
                    let mut found = found.lock().unwrap_or_else(PoisonError::into_inner);
                    found.0.extend(entry);
                    found.1.append(&mut warnings);
                    WalkState::Continue
                }
                Err(_) => {
                    failed.store(true, Ordering::Relaxed);
                    WalkState::Quit
                }
            }
        })
    });
    let found = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    (!failed.load(Ordering::Relaxed)).then_some(found)
}

/// The entries (unsorted) of a walk on this thread, in walk order; the
/// first failing item is the error.
fn walk_in_order(
    builder: &WalkBuilder,
    base: &Path,
    opts: &WalkOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<SourceEntry>> {
    let mut entries = Vec::new();
    for item in builder.build() {
        entries.extend(item_entry(item, base, opts, warn)?);
    }
    Ok(entries)
}

/// The entry for one walked item: `None` for the root itself and for
/// skipped special files.
fn item_entry(
    item: std::result::Result<DirEntry, ignore::Error>,
    base: &Path,
    opts: &WalkOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Option<SourceEntry>> {
    let dent = item.map_err(|e| walk_error(&e))?;
    // A directory carries the errors of reading its ignore files.
    if let Some(err) = dent.error() {
        return Err(walk_error(err));
    }
    if dent.depth() == 0 {
        return Ok(None);
    }
    classify(base, &dent, opts, warn)
}

/// Checks that `root` is an existing directory and returns its canonical,
/// absolute form (so every entry path is absolute and ignore rules anchor
/// on it).
fn canonical_root(root: &Path) -> Result<PathBuf> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::Usage(format!(
                "source directory {} is not a directory",
                root.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "source directory {} does not exist",
                root.display()
            )))
        }
        Err(e) => return Err(Error::io("inspecting source directory", root, e)),
    }
    fs::canonicalize(root).map_err(|e| Error::io("resolving source directory", root, e))
}

/// Turns `--exclude` patterns into an override set that only excludes.
///
/// In an override set a plain glob is a whitelist, so each pattern is
/// negated; a set made only of negated globs excludes what they match and
/// keeps everything else.
fn build_excludes(base: &Path, excludes: &[String]) -> Result<Override> {
    let mut builder = OverrideBuilder::new(base);
    for pattern in excludes {
        if pattern.trim().is_empty() {
            return Err(Error::Usage(
                "--exclude needs a non-empty pattern".to_string(),
            ));
        }
        if pattern.starts_with('!') {
            return Err(Error::Usage(format!(
                "--exclude {pattern}: negated patterns are not supported; put re-includes in a \
                 {IGNORE_FILE_NAME} file or an --ignore-file"
            )));
        }
        builder
            .add(&format!("!{pattern}"))
            .map_err(|e| Error::Usage(format!("--exclude {pattern}: invalid pattern: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| Error::Usage(format!("invalid --exclude patterns: {e}")))
}

/// Adds one `--ignore-file`, refusing files that do not exist or do not parse.
fn add_ignore_file(builder: &mut WalkBuilder, file: &Path) -> Result<()> {
    match fs::metadata(file) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(Error::Usage(format!(
                "ignore file {} is not a regular file",
                file.display()
            )))
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "ignore file {} cannot be read: {e}; check the --ignore-file path",
                file.display()
            )))
        }
    }
    match builder.add_ignore(file) {
        None => Ok(()),
        Some(e) => Err(Error::Usage(format!(
            "ignore file {} cannot be used: {e}",
            file.display()
        ))),
    }
}

/// Maps an error reported by the walker (an unreadable directory or a bad
/// `.shpignore`) to an error naming the path.
fn walk_error(err: &ignore::Error) -> Error {
    match (err.io_error(), error_path(err)) {
        (Some(io), Some(path)) => unreadable(path, &root_cause(io)),
        (Some(_), None) => Error::InvalidInput(format!(
            "cannot read the source directory: {err}; fix its permissions or exclude the \
             affected path with --exclude"
        )),
        (None, _) => Error::InvalidInput(format!(
            "invalid ignore rules: {err}; fix the pattern in the {IGNORE_FILE_NAME} file"
        )),
    }
}

/// The path an error from the walker concerns, if it names one.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}

/// The innermost cause of an I/O error (the operating system's message,
/// without the wrappers that repeat the path).
fn root_cause(err: &io::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Turns one walked item into an entry, or `None` for a skipped special file.
fn classify(
    base: &Path,
    dent: &DirEntry,
    opts: &WalkOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Option<SourceEntry>> {
    let path = dent.path();
    let file_type = match dent.file_type() {
        Some(t) => t,
        None => fs::symlink_metadata(path)
            .map_err(|e| unreadable(path, &e))?
            .file_type(),
    };
    if file_type.is_socket()
        || file_type.is_fifo()
        || file_type.is_block_device()
        || file_type.is_char_device()
    {
        warn(format!(
            "skipping {}: sockets, fifos and device nodes are not stored",
            lossy_rel(base, path)
        ));
        return Ok(None);
    }

    let rel = relative_name(base, path)?;
    let kind = if file_type.is_dir() {
        SourceKind::Dir
    } else if file_type.is_symlink() {
        return symlink_entry(rel, path, opts).map(Some);
    } else {
        let meta = fs::symlink_metadata(path).map_err(|e| unreadable(path, &e))?;
        file_kind(path, &meta)?
    };
    Ok(Some(SourceEntry { rel, kind }))
}

/// The entry for a symlink: kept as a link when it stays inside the tree,
/// stored as the file it points to when it leaves and dereferencing is on,
/// refused otherwise.
fn symlink_entry(rel: String, path: &Path, opts: &WalkOptions) -> Result<SourceEntry> {
    let raw = fs::read_link(path).map_err(|e| unreadable(path, &e))?;
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
    check_readable(path).map_err(|e| unreadable(path, &e))?;
    Ok(SourceKind::File {
        path: path.to_path_buf(),
        size: meta.len(),
        executable: meta.permissions().mode() & 0o111 != 0,
    })
}

/// Asks the kernel whether this process may read `path`, with its
/// effective ids, like opening it would. Cheaper than opening and closing
/// the file, which on a tree of many small files costs about as much as the
/// rest of the walk.
fn check_readable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call,
    // and faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::R_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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

/// The `/`-separated path of `path` below `base`; non-UTF-8 names are refused.
fn relative_name(base: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(base).map_err(|_| {
        Error::Internal(format!(
            "walked path {} is not below {}",
            path.display(),
            base.display()
        ))
    })?;
    let mut out = String::with_capacity(rel.as_os_str().len());
    for component in rel.components() {
        let name = component.as_os_str().to_str().ok_or_else(|| {
            Error::InvalidInput(format!(
                "file name {} is not valid UTF-8; rename it or exclude it with --exclude",
                rel.to_string_lossy()
            ))
        })?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(name);
    }
    Ok(out)
}

/// The path below `base` for messages, with invalid UTF-8 replaced.
fn lossy_rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The error for a path that cannot be read.
fn unreadable(path: &Path, err: &dyn std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "cannot read {}: {err}; fix its permissions or exclude it with --exclude",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn names(root: &Path, opts: &WalkOptions) -> Vec<String> {
        walk(root, opts, &mut |w| panic!("unexpected warning {w}"))
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect()
    }

    fn err_of(root: &Path, opts: &WalkOptions) -> Error {
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
        let entries = walk(root, &WalkOptions::default(), &mut |_| {}).unwrap();
        let base = fs::canonicalize(root).unwrap();
        assert_eq!(
            entries,
            [
                SourceEntry {
                    rel: "data".into(),
                    kind: SourceKind::File {
                        path: base.join("data"),
                        size: 5,
                        executable: false
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
                        size: 10,
                        executable: true
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
        let entries = walk(root, &opts, &mut |_| {}).unwrap();
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
        let entries = walk(root, &opts, &mut |_| {}).unwrap();
        let base = fs::canonicalize(root).unwrap();
        assert_eq!(
            entries,
            [SourceEntry {
                rel: "tool".into(),
                kind: SourceKind::File {
                    path: base.join("tool"),
                    size: 10,
                    executable: true
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
        let entries = walk(root, &WalkOptions::default(), &mut |w| warnings.push(w)).unwrap();
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
}
