//! Collecting the entries of a source bundle from a directory tree.
//!
//! Everything under the root is included unless an ignore rule says
//! otherwise (see [`ignore_rules`](crate::archive::ignore_rules)): hidden
//! files and `.gitignore` files are not special.
//!
//! Directories are listed on several threads, which take them from one
//! queue. Each directory is opened relative to its parent's open handle
//! and never through a symlink, so the walk stays beneath the root even when
//! another process swaps a directory for a symlink while it runs; every
//! file is looked at relative to its directory's handle, which also spares
//! the kernel a walk down the whole path for each one.
//! The result is sorted by path so the bundle does not depend on the order
//! in which the file system lists directories, and when anything fails the
//! error reported is that of the first path in that order.

mod queue;
mod symlinks;
#[cfg(test)]
mod tests;

use std::ffi::{CStr, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Access, AtFlags, FileType, OFlags};

use crate::archive::beneath;
pub use crate::archive::ignore_rules::IGNORE_FILE_NAME;
use crate::archive::ignore_rules::{NestedRules, Rules};
use crate::error::{Error, Result};
use queue::{Found, Pending};
use symlinks::symlink_entry;

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
        /// Its absolute on-disk path, for messages (and the path to open a
        /// file outside the tree, see [`FileAt`]).
        path: PathBuf,
        /// Where its content is read from.
        at: FileAt,
        /// The size in bytes seen while walking.
        size: u64,
        /// Whether any execute bit is set.
        executable: bool,
        /// Identity and change times seen while walking.
        stamp: FileStamp,
    },
    /// A symbolic link that stays inside the tree.
    Symlink {
        /// The link target, exactly as stored in the link.
        target: String,
    },
}

/// Where a file's content is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAt {
    /// Inside the walked tree, at this path relative to its root: opened
    /// beneath the root's handle, never through a symlink.
    Tree(String),
    /// Outside the tree, where a symlink points (`--dereference-symlinks`):
    /// opened by its absolute path, following links.
    Outside,
}

/// A walked tree: its root, held open, and its entries in bundle order.
#[derive(Debug)]
pub struct SourceTree {
    /// The root directory, which every [`FileAt::Tree`] file is opened
    /// beneath.
    pub root: Arc<OwnedFd>,
    /// The entries, sorted by path.
    pub entries: Vec<SourceEntry>,
}

/// What identifies a file's content without reading it, like git's index:
/// any write to a file changes its ctime, which no tool can set back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Change time, seconds and nanoseconds.
    pub ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp in `meta`.
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp in a `stat` result (whose field types vary by target).
    #[allow(clippy::unnecessary_cast)]
    fn of_stat(stat: &rustix::fs::Stat) -> FileStamp {
        FileStamp {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        }
    }
}

/// Collects the entries under `root`, honouring the ignore rules in `opts`.
///
/// The root itself is not an entry; every directory below it is, including
/// empty ones. Sockets, fifos and device nodes are skipped with a message to
/// `warn`. Symlinks that leave the tree are refused unless
/// `opts.dereference_symlinks` is set, in which case the regular file they
/// point to is stored instead.
pub fn walk(root: &Path, opts: &WalkOptions, warn: &mut dyn FnMut(String)) -> Result<SourceTree> {
    let base = canonical_root(root)?;
    let rules = Rules::new(&base, &opts.excludes, &opts.ignore_files)?;
    let root_fd = beneath::open_dir(&base)
        .map(Arc::new)
        .map_err(|e| unreadable(&base, &e))?;
    let found = walk_tree(&base, &root_fd, &rules, opts);
    let first_error = found
        .errors
        .into_iter()
        .min_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if let Some((_, err)) = first_error {
        return Err(err);
    }
    let mut warnings = found.warnings;
    warnings.sort();
    warnings.into_iter().for_each(warn);
    let mut entries = found.entries;
    entries.sort_unstable_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(SourceTree {
        root: root_fd,
        entries,
    })
}

/// Lists every directory below `base`, on several threads (see
/// [`queue::list_in_parallel`]).
fn walk_tree(base: &Path, root: &Arc<OwnedFd>, rules: &Rules, opts: &WalkOptions) -> Found {
    let root_fd = root.as_fd();
    let root = Pending {
        parent: Arc::clone(root),
        name: c".".to_owned(),
        path: base.to_path_buf(),
        rel: String::new(),
        rules: None,
    };
    queue::list_in_parallel(root, |dir, found| {
        list_directory(root_fd, dir, rules, opts, found);
    })
}

/// Lists one directory into `found`: its entries that no rule leaves out,
/// and the subdirectories among them to list next.
fn list_directory(
    root: BorrowedFd<'_>,
    dir: &Pending,
    rules: &Rules,
    opts: &WalkOptions,
    found: &mut Found,
) {
    let (handle, names) = match read_directory(dir) {
        Ok(listing) => listing,
        Err(e) => {
            found
                .errors
                .push((dir.rel.clone(), unreadable(&dir.path, &e)));
            return;
        }
    };
    let has_ignore_file = names
        .iter()
        .any(|(name, _)| name.to_bytes() == IGNORE_FILE_NAME.as_bytes());
    let ignore_file = has_ignore_file
        .then(|| read_ignore_file(root, &dir.rel))
        .flatten();
    let nested = match NestedRules::for_directory(&dir.path, ignore_file, dir.rules.as_ref()) {
        Ok(nested) => nested,
        Err(e) => {
            found.errors.push((dir.rel.clone(), walk_error(&e)));
            return;
        }
    };
    let handle = Arc::new(handle);
    for (name, listed_type) in &names {
        let item = Item {
            dir: handle.as_fd(),
            name,
            path: dir.path.join(OsStr::from_bytes(name.to_bytes())),
            parent_rel: &dir.rel,
        };
        let file_type = match item.file_type(*listed_type) {
            Ok(t) => t,
            Err(e) => {
                found.errors.push((item.lossy_rel(), e));
                continue;
            }
        };
        let is_dir = file_type == FileType::Directory;
        if rules.is_ignored(nested.as_ref(), &item.path, is_dir) {
            continue;
        }
        match item.classify(file_type, opts, &mut |w| found.warnings.push(w)) {
            Ok(Some(entry)) => {
                if is_dir {
                    found.subdirs.push(Pending {
                        parent: Arc::clone(&handle),
                        name: name.clone(),
                        path: item.path,
                        rel: entry.rel.clone(),
                        rules: nested.clone(),
                    });
                }
                found.entries.push(entry);
            }
            Ok(None) => {}
            Err(e) => found.errors.push((item.lossy_rel(), e)),
        }
    }
}

/// A directory, opened beneath its parent without following a symlink, and
/// the names in it (without `.` and `..`), each with the type the listing
/// gave. A directory swapped for a symlink since its parent was listed
/// fails here (`ELOOP`) rather than being listed where the link points.
fn read_directory(dir: &Pending) -> io::Result<(OwnedFd, Vec<(std::ffi::CString, FileType)>)> {
    let fd = beneath::open_dir_at(dir.parent.as_fd(), dir.name.as_c_str())?;
    let mut listing = rustix::fs::Dir::new(rustix::io::dup(&fd)?)?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok((fd, names))
}

/// One name in a directory being listed.
struct Item<'a> {
    /// The open directory it is in.
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    /// Its absolute path.
    path: PathBuf,
    /// The bundle path of its directory (empty for the root).
    parent_rel: &'a str,
}

impl Item<'_> {
    /// Its type: the listing's, or its own when the listing did not say.
    fn file_type(&self, listed: FileType) -> Result<FileType> {
        if listed != FileType::Unknown {
            return Ok(listed);
        }
        let stat = self.stat()?;
        Ok(FileType::from_raw_mode(stat.st_mode))
    }

    /// Its metadata, without following a symlink.
    fn stat(&self) -> Result<rustix::fs::Stat> {
        rustix::fs::statat(self.dir, self.name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| unreadable(&self.path, &io::Error::from(e)))
    }

    /// Its path inside the bundle; non-UTF-8 names are refused.
    fn rel(&self) -> Result<String> {
        let name = self.name.to_str().map_err(|_| {
            Error::InvalidInput(format!(
                "file name {} is not valid UTF-8; rename it or exclude it with --exclude",
                self.lossy_rel()
            ))
        })?;
        Ok(join_rel(self.parent_rel, name))
    }

    /// Its path inside the bundle for messages, with invalid UTF-8 replaced.
    fn lossy_rel(&self) -> String {
        join_rel(self.parent_rel, &self.name.to_string_lossy())
    }

    /// The entry for this item, or `None` for a skipped special file.
    fn classify(
        &self,
        file_type: FileType,
        opts: &WalkOptions,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<SourceEntry>> {
        if matches!(
            file_type,
            FileType::Socket | FileType::Fifo | FileType::BlockDevice | FileType::CharacterDevice
        ) {
            warn(format!(
                "skipping {}: sockets, fifos and device nodes are not stored",
                self.lossy_rel()
            ));
            return Ok(None);
        }
        let rel = self.rel()?;
        let kind = match file_type {
            FileType::Directory => SourceKind::Dir,
            FileType::Symlink => {
                let raw =
                    rustix::fs::readlinkat(self.dir, self.name, Vec::new()).map_err(
                        |e| match e {
                            rustix::io::Errno::INVAL => changed_while_walking(&rel),
                            e => unreadable(&self.path, &io::Error::from(e)),
                        },
                    )?;
                let raw = PathBuf::from(OsStr::from_bytes(raw.as_bytes()));
                return symlink_entry(rel, &raw, &self.path, opts).map(Some);
            }
            _ => {
                let stat = self.stat()?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(changed_while_walking(&rel));
                }
                check_readable(self.dir, self.name, &self.path, (stat.st_uid, stat.st_mode))?;
                SourceKind::File {
                    path: self.path.clone(),
                    at: FileAt::Tree(rel.clone()),
                    size: stat.st_size as u64,
                    executable: stat.st_mode & 0o111 != 0,
                    stamp: FileStamp::of_stat(&stat),
                }
            }
        };
        Ok(Some(SourceEntry { rel, kind }))
    }
}

/// The error for an entry whose type changed between the listing of its
/// directory and a closer look at it.
fn changed_while_walking(rel: &str) -> Error {
    Error::InvalidInput(format!(
        "{rel} changed while the tree was walked (it is not what its directory listed); stop \
         whatever writes to the source directory and try again"
    ))
}

/// The `.shpignore` of the directory at `dir_rel`, read beneath the root: a
/// symlink to a file inside the tree counts, one that leaves the tree is an
/// error (its rules cannot come from outside). `None` when it is not a file.
fn read_ignore_file(root: BorrowedFd<'_>, dir_rel: &str) -> Option<io::Result<Vec<u8>>> {
    let rel = join_rel(dir_rel, IGNORE_FILE_NAME);
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let fd = match beneath::open_following_beneath(root, &rel, flags) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e)),
    };
    match rustix::fs::fstat(&fd) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {}
        Ok(_) => return None,
        Err(e) => return Some(Err(e.into())),
    }
    let mut bytes = Vec::new();
    Some(io::Read::read_to_end(&mut fs::File::from(fd), &mut bytes).map(|_| bytes))
}

/// `name` inside the bundle directory `parent` (empty for the root).
fn join_rel(parent: &str, name: &str) -> String {
    match parent {
        "" => name.to_string(),
        parent => format!("{parent}/{name}"),
    }
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

/// Checks that this process may read `name` (relative to `dir`), with its
/// effective ids, as opening it would: cheaper than opening and closing the
/// file, which on a tree of many small files costs about as much as the rest
/// of the walk. `path` names it in the error.
///
/// A file this process owns, with its owner's read bit set, needs no
/// question to the kernel: for its owner a file's owner bits decide, even
/// under an ACL. (A filesystem that decides elsewhere, such as NFS mapping
/// root to nobody, then fails the push when the file is packed instead.)
fn check_readable<P: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: P,
    path: &Path,
    owner: (u32, u32),
) -> Result<()> {
    static EUID: OnceLock<u32> = OnceLock::new();
    let (uid, mode) = owner;
    let euid = *EUID.get_or_init(|| rustix::process::geteuid().as_raw());
    if uid == euid && mode & 0o400 != 0 {
        return Ok(());
    }
    rustix::fs::accessat(dir, name, Access::READ_OK, AtFlags::EACCESS)
        .map_err(|e| unreadable(path, &io::Error::from(e)))
}

/// The error for a path that cannot be read.
pub(crate) fn unreadable(path: &Path, err: &dyn std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "cannot read {}: {err}; fix its permissions or exclude it with --exclude",
        path.display()
    ))
}
