//! Paths resolved beneath an open directory, never through a symlink.
//!
//! Another process that can write a tree (a sidecar, an earlier build step)
//! may swap a directory or a file for a symlink at any moment. Resolving
//! paths by name from `/` would then follow it out of the tree: a push could
//! read, and a pull could write, whatever the link points to. Here every
//! path is resolved relative to a handle on the tree's root, one component
//! at a time, and a symlink met on the way is an error (`ELOOP`): with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it
//! (Linux 5.6), else with `O_NOFOLLOW` on each component.
//!
//! Paths given here are relative and `/`-separated with no `.`, `..` or
//! empty components (bundle paths, already checked by the walk or the
//! extractor); the root's own path is only used in messages.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Whether `openat2` is known to be missing (`ENOSYS`): then components are
/// opened one by one.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// How many times an `openat2` that the kernel asks to repeat (`EAGAIN`,
/// when a rename elsewhere raced with the lookup) is tried.
const OPENAT2_ATTEMPTS: usize = 8;

/// Opens `rel` beneath `root` with `flags`, following no symlink on the way
/// or at the end.
pub fn open_beneath(
    root: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    rel.split('/').try_for_each(check_component)?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let how = flags | OFlags::NOFOLLOW;
    match openat2(root, rel, how, mode, resolve) {
        Some(opened) => refuse_symlink(opened?, flags),
        None => open_by_components(root, rel, flags, mode),
    }
}

/// `openat2` with `how | O_CLOEXEC`, tried again when the kernel asks to
/// (`EAGAIN`, `EINTR`); `None` when the kernel does not have it, or kept
/// asking: then the caller opens one component at a time.
fn openat2(
    root: BorrowedFd<'_>,
    rel: &str,
    how: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Option<io::Result<OwnedFd>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        match rustix::fs::openat2(root, rel, how | OFlags::CLOEXEC, mode, resolve) {
            Err(Errno::AGAIN | Errno::INTR) if attempts < OPENAT2_ATTEMPTS => continue,
            Err(Errno::AGAIN | Errno::INTR) => return None,
            Err(Errno::NOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                return None;
            }
            other => return Some(other.map_err(io::Error::from)),
        }
    }
}

/// Opens the directory at `path`, which must be a directory itself (not a
/// symlink to one), for listing and as a handle to open entries beneath.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory `name` in `dir`, not through a symlink.
pub fn open_dir_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// How [`open_dir`] and [`open_dir_at`] open a directory.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Refuses `fd` when it is a symlink: `O_PATH | O_NOFOLLOW` opens a symlink
/// at the end of a path rather than failing, and only `O_PATH` without
/// `O_DIRECTORY` can.
fn refuse_symlink(fd: OwnedFd, flags: OFlags) -> io::Result<OwnedFd> {
    if flags.contains(OFlags::PATH)
        && !flags.contains(OFlags::DIRECTORY)
        && rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK
    {
        return Err(Errno::LOOP.into());
    }
    Ok(fd)
}

/// Opens `rel` beneath `root`, following symlinks only while they stay
/// beneath it (`openat2` with `RESOLVE_BENEATH`): for files a tree may
/// link within itself, such as its ignore files. A link that leaves the
/// root fails (`EXDEV`). Without `openat2`, no symlink is followed at all.
pub fn open_following_beneath(
    root: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    rel.split('/').try_for_each(check_component)?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match openat2(root, rel, flags, Mode::empty(), resolve) {
        Some(opened) => opened,
        None => open_by_components(root, rel, flags, Mode::empty()),
    }
}

/// [`open_beneath`] without `openat2`: each directory on the way is opened
/// with `O_NOFOLLOW | O_DIRECTORY` relative to the one before, and the last
/// component with `O_NOFOLLOW`.
pub(crate) fn open_by_components(
    root: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let (dirs, name) = match rel.rsplit_once('/') {
        Some((dirs, name)) => (Some(dirs), name),
        None => (None, rel),
    };
    check_component(name)?;
    let parent = match dirs {
        Some(dirs) => Some(open_dirs(root, dirs)?),
        None => None,
    };
    let at = parent.as_ref().map_or(root, |p| p.as_fd());
    let how = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    refuse_symlink(rustix::fs::openat(at, name, how, mode)?, flags)
}

/// Opens the directories of `dirs` one below the other from `root`.
fn open_dirs(root: BorrowedFd<'_>, dirs: &str) -> io::Result<OwnedFd> {
    let how = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current: Option<OwnedFd> = None;
    for component in dirs.split('/') {
        check_component(component)?;
        let at = current.as_ref().map_or(root, |c| c.as_fd());
        current = Some(rustix::fs::openat(at, component, how, Mode::empty())?);
    }
    current.ok_or_else(|| Errno::INVAL.into())
}

/// Refuses a component that would not name an entry of its directory.
fn check_component(component: &str) -> io::Result<()> {
    match component {
        "" | "." | ".." => Err(Errno::INVAL.into()),
        _ => Ok(()),
    }
}

/// Whether an error means a symlink (or something else than a directory)
/// was met where the path needed a directory or a plain entry: the tree
/// changed under the caller, or was made to look like it.
pub fn is_swapped(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
    )
}

/// A directory whose entries are created, inspected and removed only
/// beneath its open handle.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
    path: PathBuf,
}

impl Beneath {
    /// Opens the directory at `path`, which must be a directory itself (not
    /// a symlink to one).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Beneath {
            root: open_dir(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The handle of the root directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` joined to the root's path, for messages.
    pub fn shown(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Runs `op` on the directory holding `rel` and the last component.
    fn in_parent<T>(
        &self,
        rel: &str,
        op: impl FnOnce(BorrowedFd<'_>, &str) -> io::Result<T>,
    ) -> io::Result<T> {
        match rel.rsplit_once('/') {
            Some((dirs, name)) => {
                check_component(name)?;
                let how = OFlags::PATH | OFlags::DIRECTORY;
                let parent = open_beneath(self.fd(), dirs, how, Mode::empty())?;
                op(parent.as_fd(), name)
            }
            None => {
                check_component(rel)?;
                op(self.fd(), rel)
            }
        }
    }

    /// What is at `rel`, without following a symlink there; `None` when
    /// nothing is.
    pub fn lstat(&self, rel: &str) -> io::Result<Option<Stat>> {
        let found = self.in_parent(rel, |dir, name| {
            Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
        });
        match found {
            Ok(stat) => Ok(Some(stat)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the directory `rel` with exactly `mode`, whatever the umask.
    pub fn create_dir(&self, rel: &str, mode: u32) -> io::Result<()> {
        self.in_parent(rel, |dir, name| {
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?;
            let created = open_dir_at(dir, name)?;
            rustix::fs::fchmod(&created, Mode::from_raw_mode(mode))?;
            Ok(())
        })
    }

    /// Creates the directory `rel` and those above it that are missing,
    /// with mode 0777 less the umask; a directory already there is kept.
    pub fn create_dir_all(&self, rel: &str) -> io::Result<()> {
        let mut end = 0;
        for component in rel.split('/') {
            end += component.len();
            let made = self.in_parent(&rel[..end], |dir, name| {
                Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777))?)
            });
            match made {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match self.lstat(&rel[..end])? {
                        Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                        _ => return Err(Errno::NOTDIR.into()),
                    }
                }
                other => other?,
            }
            end += 1;
        }
        Ok(())
    }

    /// Moves `rel` to `to_rel` beneath `to` (the same file system).
    pub fn rename(&self, rel: &str, to: &Beneath, to_rel: &str) -> io::Result<()> {
        self.in_parent(rel, |from_dir, from_name| {
            to.in_parent(to_rel, |to_dir, to_name| {
                Ok(rustix::fs::renameat(from_dir, from_name, to_dir, to_name)?)
            })
        })
    }

    /// Creates the regular file `rel`, which must not exist, for writing
    /// with `mode` (before the umask).
    pub fn create_file(&self, rel: &str, mode: u32) -> io::Result<File> {
        let how = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        open_beneath(self.fd(), rel, how, Mode::from_raw_mode(mode)).map(File::from)
    }

    /// Creates a symlink at `rel` holding `target`.
    pub fn symlink(&self, target: &str, rel: &str) -> io::Result<()> {
        self.in_parent(rel, |dir, name| {
            Ok(rustix::fs::symlinkat(target, dir, name)?)
        })
    }

    /// Creates a hard link at `rel` to the file at `existing` (not following
    /// a symlink there).
    pub fn hard_link(&self, existing: &str, rel: &str) -> io::Result<()> {
        self.in_parent(existing, |from_dir, from_name| {
            self.in_parent(rel, |to_dir, to_name| {
                Ok(rustix::fs::linkat(
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    AtFlags::empty(),
                )?)
            })
        })
    }

    /// Removes the file (or symlink) at `rel`.
    pub fn remove_file(&self, rel: &str) -> io::Result<()> {
        self.in_parent(rel, |dir, name| {
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
        })
    }

    /// Sets the modification time of the directory at `rel`.
    pub fn set_dir_modified(&self, rel: &str, mtime: SystemTime) -> io::Result<()> {
        let how = OFlags::RDONLY | OFlags::DIRECTORY;
        let dir = File::from(open_beneath(self.fd(), rel, how, Mode::empty())?);
        dir.set_modified(mtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    type Opener = fn(BorrowedFd<'_>, &str, OFlags, Mode) -> io::Result<OwnedFd>;

    /// Both ways of opening: `openat2` and one component at a time.
    const OPENERS: [(&str, Opener); 2] = [
        ("openat2", open_beneath),
        ("components", open_by_components),
    ];

    fn tree() -> (tempfile::TempDir, Beneath) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/file"), "inside").unwrap();
        fs::write(dir.path().join("secret"), "outside").unwrap();
        symlink(dir.path(), root.join("a/up")).unwrap();
        symlink("b", root.join("a/inner")).unwrap();
        symlink("../secret", root.join("leak")).unwrap();
        let beneath = Beneath::open(&root).unwrap();
        (dir, beneath)
    }

    fn read(fd: OwnedFd) -> String {
        io::read_to_string(File::from(fd)).unwrap()
    }

    #[test]
    fn opens_plain_paths_and_refuses_every_symlink() {
        let (_dir, root) = tree();
        for (how, open) in OPENERS {
            let fd = open(root.fd(), "a/b/file", OFlags::RDONLY, Mode::empty()).unwrap();
            assert_eq!(read(fd), "inside", "{how}");
            for rel in ["a/up/secret", "leak", "a/inner/file", "a/inner", "a/up"] {
                for flags in [
                    OFlags::RDONLY,
                    OFlags::PATH,
                    OFlags::PATH | OFlags::DIRECTORY,
                ] {
                    let err = open(root.fd(), rel, flags, Mode::empty()).unwrap_err();
                    assert!(is_swapped(&err), "{how} {rel} {flags:?}: {err}");
                }
            }
            for rel in [
                "../secret",
                "a/../../secret",
                "/etc/passwd",
                "a//b/file",
                "./a",
            ] {
                assert!(
                    open(root.fd(), rel, OFlags::RDONLY, Mode::empty()).is_err(),
                    "{how} {rel}"
                );
            }
        }
    }

    #[test]
    fn creates_and_inspects_only_beneath_the_root() {
        let (dir, root) = tree();
        root.create_dir("a/b/new", 0o755).unwrap();
        let mut file = root.create_file("a/b/new/f", 0o644).unwrap();
        io::Write::write_all(&mut file, b"x").unwrap();
        assert!(
            root.create_file("a/b/new/f", 0o644).is_err(),
            "must not exist"
        );
        root.hard_link("a/b/new/f", "a/h").unwrap();
        root.symlink("b/new/f", "a/l").unwrap();
        let stat = root.lstat("a/l").unwrap().unwrap();
        assert_eq!(stat.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert!(root.lstat("a/missing").unwrap().is_none());
        root.remove_file("a/h").unwrap();
        assert!(root.lstat("a/h").unwrap().is_none());
        root.create_dir_all("a/b/new/x/y").unwrap();
        root.create_dir_all("a/b/new/x/y").unwrap();
        assert!(
            root.create_dir_all("a/b/new/f/y").is_err(),
            "a file on the way"
        );
        root.rename("a/b/new/x", &root, "x").unwrap();
        assert!(root.lstat("x/y").unwrap().is_some());
        // Through a symlink to a directory outside, nothing is created,
        // inspected or removed.
        for result in [
            root.create_dir("a/up/made", 0o755).err(),
            root.create_dir_all("a/up/made/deeper").err(),
            root.rename("x", &root, "a/up/made").err(),
            root.create_file("a/up/made", 0o644).err(),
            root.symlink("x", "a/up/made").err(),
            root.hard_link("a/b/file", "a/up/made").err(),
            root.remove_file("a/up/secret").err(),
            root.lstat("a/up/secret").err(),
            root.set_dir_modified("a/up", SystemTime::UNIX_EPOCH).err(),
        ] {
            let err = result.expect("refused");
            assert!(is_swapped(&err), "{err}");
        }
        assert!(!dir.path().join("made").exists());
        assert_eq!(fs::read(dir.path().join("secret")).unwrap(), b"outside");
    }

    #[test]
    fn following_beneath_takes_links_inside_the_root_only() {
        let (_dir, root) = tree();
        let fd = open_following_beneath(root.fd(), "a/inner/file", OFlags::RDONLY).unwrap();
        assert_eq!(read(fd), "inside");
        for rel in ["leak", "a/up/secret"] {
            let err = open_following_beneath(root.fd(), rel, OFlags::RDONLY).unwrap_err();
            assert!(is_swapped(&err), "{rel}: {err}");
        }
    }

    #[test]
    fn a_symlinked_root_is_refused() {
        let (dir, _root) = tree();
        let link = dir.path().join("link");
        symlink(dir.path().join("root"), &link).unwrap();
        assert!(Beneath::open(&link).is_err());
    }
}
