//! Extraction happens in a staging directory inside the target, so a failed
//! pull leaves the target exactly as it was; a finished one is moved into
//! place entry by entry with renames on the same filesystem.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name prefix of staging directories (never part of a bundle's result).
pub const STAGING_PREFIX: &str = ".ocistep-staging-";

/// A staging directory that disappears, with the target directory if this
/// run created it, unless [`Staging::commit`] succeeds.
pub struct Staging {
    target: PathBuf,
    dir: Option<tempfile::TempDir>,
    created_target: bool,
}

impl Staging {
    /// Creates the target when missing and a fresh staging directory in it.
    pub fn new(target: &Path) -> Result<Self> {
        let created_target = match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => false,
            Ok(_) => {
                return Err(Error::TargetConflict(format!(
                    "{} exists and is not a directory; name a directory to extract into",
                    target.display()
                )))
            }
            Err(_) => {
                std::fs::create_dir_all(target).map_err(|e| Error::io("creating", target, e))?;
                true
            }
        };
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

    /// Replaces the staging directory with an empty one (before a retry).
    pub fn reset(&mut self) -> Result<()> {
        if let Some(old) = self.dir.take() {
            let path = old.path().to_path_buf();
            old.close().map_err(|e| Error::io("removing", path, e))?;
        }
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.target)
            .map_err(|e| Error::io("creating a staging directory in", &self.target, e))?;
        self.dir = Some(dir);
        Ok(())
    }

    /// Moves every extracted top-level entry into the target. Entries that
    /// exist in the target already are a conflict unless `overwrite`, which
    /// replaces them. Conflicts are checked before anything moves.
    pub fn commit(mut self, overwrite: bool) -> Result<()> {
        let staging = self.path().to_path_buf();
        let names = top_level(&staging)?;
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
            return Err(Error::TargetConflict(format!(
                "{} already holds {}{} that the bundle also contains; pull into an empty directory or pass --overwrite",
                self.target.display(),
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            )));
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
            std::fs::rename(&from, &to).map_err(|e| Error::io("moving into place", to, e))?;
        }
        self.created_target = false;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        if self.created_target {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
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
