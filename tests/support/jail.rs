//! A pull target with one file in it, alone in a temporary directory, so a
//! test can check that a refused pull changed nothing in or beside it.

use std::path::PathBuf;

use super::tree::all_paths;

/// A directory holding only the pull target, which holds only `keep`.
pub struct Jail {
    _dir: tempfile::TempDir,
    /// The directory around the target.
    pub root: PathBuf,
    /// The pull target.
    pub target: PathBuf,
}

impl Jail {
    /// Creates the jail.
    pub fn new() -> Jail {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let target = root.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "precious").unwrap();
        Jail {
            _dir: dir,
            root,
            target,
        }
    }

    /// What changed in or beside the target, if anything.
    pub fn check_untouched(&self) -> Result<(), String> {
        let paths = all_paths(&self.root);
        if paths != [self.target.clone(), self.target.join("keep")] {
            return Err(format!("the target or its surroundings changed: {paths:?}"));
        }
        match std::fs::read_to_string(self.target.join("keep")) {
            Ok(text) if text == "precious" => Ok(()),
            other => Err(format!("the target's file changed: {other:?}")),
        }
    }

    /// True when nothing changed.
    pub fn untouched(&self) -> bool {
        self.check_untouched().is_ok()
    }

    /// Panics, saying what changed, unless nothing did.
    pub fn assert_untouched(&self) {
        if let Err(e) = self.check_untouched() {
            panic!("{e}");
        }
    }
}
