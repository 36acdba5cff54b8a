//! Extraction happens in a staging directory inside the target, so a failed
//! pull leaves the target exactly as it was; a finished one is moved into
//! place entry by entry with renames on the same filesystem.
//!
//! A live staging directory is held locked (`flock` on the directory
//! itself) by the pull that made it, for as long as it exists. A staging
//! directory nobody holds locked was left by a pull that was killed
//! (SIGKILL, a node that died): [`remove_stale`] removes those, and only
//! those, so pulls into the same directory never remove each other's.
//! Moving entries into the target happens under a lock on the target
//! directory, so of two pulls into one directory the second sees the
//! first's entries as a conflict, never a half-moved tree.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::archive::beneath::open_dir;
use crate::error::{Error, Result};

/// Name prefix of staging directories (never part of a bundle's result).
pub const STAGING_PREFIX: &str = ".ocistep-staging-";

/// How long removing a staging directory waits for the threads still
/// writing into it (a download dropped on a stop signal) to notice and end.
const WORKERS_WAIT: Duration = Duration::from_secs(10);

/// A staging directory that disappears, with the target directory if this
/// run created it, unless [`Staging::commit`] succeeds.
pub struct Staging {
    target: PathBuf,
    dir: Option<StagingDir>,
    created_target: bool,
}

impl Staging {
    /// Creates the target when missing and a fresh staging directory in it.
    pub fn new(target: &Path) -> Result<Self> {
        let created_target = create_target(target)?;
        let mut staging = Staging {
            target: target.to_path_buf(),
            dir: None,
            created_target,
        };
        staging.reset()?;
        Ok(staging)
    }

    /// The directory to extract into.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(&self.target)
    }

    /// A token for a thread that writes into the staging directory: the
    /// directory is not removed while one is alive (see [`StagingDir`]).
    pub fn worker(&self) -> Option<Worker> {
        self.dir.as_ref().map(StagingDir::worker)
    }

    /// Replaces the staging directory with an empty one (before a retry).
    pub fn reset(&mut self) -> Result<()> {
        if let Some(old) = self.dir.take() {
            old.remove()?;
        }
        self.dir = Some(StagingDir::create_in(&self.target)?);
        Ok(())
    }

    /// Moves every extracted top-level entry into the target. Entries that
    /// exist in the target already are a conflict unless `overwrite`, which
    /// replaces them. Conflicts are checked before anything moves, under a
    /// lock on the target that other pulls take as well.
    pub fn commit(mut self, overwrite: bool) -> Result<()> {
        let staging = self.path().to_path_buf();
        let names = top_level(&staging)?;
        let _locked = lock_target(&self.target)?;
        let conflicts: Vec<&OsString> = names
            .iter()
            .filter(|n| std::fs::symlink_metadata(self.target.join(n)).is_ok())
            .collect();
        if !conflicts.is_empty() && !overwrite {
            let shown: Vec<String> = conflicts
                .iter()
                .take(5)
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            let more = conflicts.len().saturating_sub(shown.len());
            return Err(conflict(
                &self.target,
                &format!(
                    "{}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        let trash = staging.join(".replaced");
        for name in &conflicts {
            std::fs::create_dir_all(&trash).map_err(|e| Error::io("creating", &trash, e))?;
            let from = self.target.join(name);
            std::fs::rename(&from, trash.join(name))
                .map_err(|e| Error::io("moving aside", from, e))?;
        }
        for name in &names {
            let from = staging.join(name);
            let to = self.target.join(name);
            std::fs::rename(&from, &to).map_err(|e| match e.raw_os_error() {
                // Something other than ocistep wrote it meanwhile.
                Some(libc::ENOTEMPTY | libc::EEXIST | libc::EISDIR | libc::ENOTDIR) => {
                    conflict(&self.target, &name.to_string_lossy())
                }
                _ => Error::io("moving into place", &to, e),
            })?;
        }
        self.created_target = false;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
        if self.created_target {
            // Only when empty: another pull may be staging in it too.
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

/// The conflict error for entries `what` that the target already holds.
fn conflict(target: &Path, what: &str) -> Error {
    Error::TargetConflict(format!(
        "{} already holds {what} that the bundle also contains (another pull into the same directory, or an earlier one); pull into an empty directory or pass --overwrite",
        target.display()
    ))
}

/// Creates the target unless it exists; true when this call created it.
fn create_target(target: &Path) -> Result<bool> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    match std::fs::create_dir(target) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io("creating", target, e))
        }
        Err(_) => {}
    }
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() => Ok(false),
        _ => Err(Error::TargetConflict(format!(
            "{} exists and is not a directory; name a directory to extract into",
            target.display()
        ))),
    }
}

/// Takes the target's commit lock (released when the handle drops).
fn lock_target(target: &Path) -> Result<OwnedFd> {
    let fd = open_dir(target).map_err(|e| Error::io("opening", target, e))?;
    rustix::fs::flock(&fd, FlockOperation::LockExclusive)
        .map_err(|e| Error::io("locking", target, e.into()))?;
    Ok(fd)
}

/// Tries to lock a directory for this process: `Some(true)` when locked,
/// `Some(false)` when another process holds it, `None` when the file
/// system cannot lock.
fn try_lock(fd: &OwnedFd) -> Option<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Some(false),
        Err(_) => None,
    }
}

/// A directory named `.ocistep-staging-*` inside a target, locked for as
/// long as it exists, and removed (after the threads writing into it
/// ended) when dropped.
pub struct StagingDir {
    dir: Option<tempfile::TempDir>,
    /// Holds the `flock` that tells [`remove_stale`] the directory is live.
    _lock: Option<OwnedFd>,
    workers: Arc<()>,
}

/// Held by a thread that writes into a [`StagingDir`]; see
/// [`StagingDir::worker`].
pub struct Worker(#[allow(dead_code)] Arc<()>);

impl StagingDir {
    /// Creates and locks a fresh staging directory in `parent`.
    pub fn create_in(parent: &Path) -> Result<Self> {
        // Another pull's [`remove_stale`] may take a directory for stale in
        // the instant between its creation and its lock: then it is left to
        // that pull, and another one made.
        for _ in 0..8 {
            let dir = tempfile::Builder::new()
                .prefix(STAGING_PREFIX)
                .tempdir_in(parent)
                .map_err(|e| Error::io("creating a staging directory in", parent, e))?;
            let fd = match open_dir(dir.path()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let _ = dir.keep();
                    continue;
                }
                Err(e) => return Err(Error::io("opening", dir.path(), e)),
            };
            match try_lock(&fd) {
                Some(true) if same_file(&fd, dir.path()) => {
                    return Ok(StagingDir {
                        dir: Some(dir),
                        _lock: Some(fd),
                        workers: Arc::new(()),
                    })
                }
                None => {
                    tracing::debug!(
                        "{} cannot be locked; stale staging directories there are left alone",
                        parent.display()
                    );
                    return Ok(StagingDir {
                        dir: Some(dir),
                        _lock: None,
                        workers: Arc::new(()),
                    });
                }
                _ => {
                    let _ = dir.keep();
                }
            }
        }
        Err(Error::Internal(format!(
            "could not create a staging directory in {} that stays: something keeps removing them",
            parent.display()
        )))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// A token for a thread that writes into the directory: dropping the
    /// directory waits (up to 10 s) until every token is gone, so a
    /// download stopped by a signal is not removed under its writer.
    pub fn worker(&self) -> Worker {
        Worker(self.workers.clone())
    }

    /// Removes the directory, once its writing threads ended.
    pub fn remove(mut self) -> Result<()> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<()> {
        let started = Instant::now();
        while Arc::strong_count(&self.workers) > 1 && started.elapsed() < WORKERS_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let path = dir.path().to_path_buf();
        dir.close().map_err(|e| Error::io("removing", path, e))
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::warn!("{e}");
        }
    }
}

/// Whether the open directory `fd` is still the one at `path`.
fn same_file(fd: &OwnedFd, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (rustix::fs::fstat(fd), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.st_dev == named.dev() && open.st_ino == named.ino(),
        _ => false,
    }
}

/// Removes the staging directories in `target` that no live pull holds
/// (left by a pull that was killed), and logs each one removed. Returns
/// their paths.
pub fn remove_stale(target: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let Ok(fd) = open_dir(&path) else {
            continue;
        };
        if try_lock(&fd) != Some(true) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(
                    "removed {}, a staging directory left by an interrupted pull",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::warn!(
                "could not remove {}, a staging directory left by an interrupted pull: {e}",
                path.display()
            ),
        }
    }
    removed
}

fn top_level(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))? {
        names.push(entry.map_err(|e| Error::io("reading", dir, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_staging_leaves_target_as_it_was() {
        let parent = tempfile::tempdir().unwrap();
        let existing = parent.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        std::fs::write(existing.join("keep"), "x").unwrap();
        {
            let s = Staging::new(&existing).unwrap();
            std::fs::write(s.path().join("new"), "y").unwrap();
        }
        assert_eq!(top_level(&existing).unwrap(), vec![OsString::from("keep")]);

        let fresh = parent.path().join("fresh");
        {
            let s = Staging::new(&fresh).unwrap();
            std::fs::write(s.path().join("new"), "y").unwrap();
        }
        assert!(!fresh.exists());
    }

    #[test]
    fn only_staging_directories_nobody_holds_are_stale() {
        let parent = tempfile::tempdir().unwrap();
        let t = parent.path();
        let live = Staging::new(t).unwrap();
        std::fs::write(live.path().join("partial"), "x").unwrap();
        let dead = t.join(format!("{STAGING_PREFIX}killed"));
        std::fs::create_dir_all(dead.join("src")).unwrap();
        std::fs::write(dead.join("src/a"), "y").unwrap();
        let unrelated = t.join("keep");
        std::fs::create_dir(&unrelated).unwrap();
        assert_eq!(remove_stale(t), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().join("partial").is_file());
        assert!(unrelated.is_dir());
        drop(live);
        assert_eq!(top_level(t).unwrap(), vec![OsString::from("keep")]);
    }

    #[test]
    fn a_staging_directory_waits_for_its_workers_before_it_goes() {
        let parent = tempfile::tempdir().unwrap();
        let dir = StagingDir::create_in(parent.path()).unwrap();
        let path = dir.path().to_path_buf();
        let worker = dir.worker();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::write(path.join("late"), "z").unwrap();
            drop(worker);
        });
        drop(dir);
        writer.join().unwrap();
        assert_eq!(top_level(parent.path()).unwrap(), Vec::<OsString>::new());
    }

    #[test]
    fn commit_moves_entries_and_detects_conflicts() {
        let parent = tempfile::tempdir().unwrap();
        let t = parent.path().join("t");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("a"), "old").unwrap();
        let s = Staging::new(&t).unwrap();
        std::fs::write(s.path().join("a"), "new").unwrap();
        std::fs::create_dir(s.path().join("d")).unwrap();
        let e = s.commit(false).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::TargetConflict);
        assert_eq!(std::fs::read_to_string(t.join("a")).unwrap(), "old");
        assert_eq!(top_level(&t).unwrap(), vec![OsString::from("a")]);

        let s = Staging::new(&t).unwrap();
        std::fs::write(s.path().join("a"), "new").unwrap();
        std::fs::create_dir(s.path().join("d")).unwrap();
        s.commit(true).unwrap();
        assert_eq!(std::fs::read_to_string(t.join("a")).unwrap(), "new");
        assert_eq!(
            top_level(&t).unwrap(),
            vec![OsString::from("a"), OsString::from("d")]
        );
    }
}
