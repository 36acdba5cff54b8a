//! The rules that leave paths out of a source bundle, all in gitignore
//! syntax, and how they combine (highest precedence first):
//!
//! 1. `--exclude` patterns, relative to the root;
//! 2. `.shpignore` files, at the root and in any subdirectory: a nested file
//!    applies to its own directory and overrides the files above it, like a
//!    nested `.gitignore`;
//! 3. `--ignore-file` files, whose patterns are relative to the root; a
//!    later file overrides an earlier one.
//!
//! The first of these with a matching pattern decides; a matching `!`
//! pattern keeps the path.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::overrides::{Override, OverrideBuilder};
use ignore::Match;

use crate::error::{Error, Result};

/// The ignore file read in every directory of a bundle (Shipwright's name).
pub const IGNORE_FILE_NAME: &str = ".shpignore";

/// The rules given on the command line, shared by the whole walk.
#[derive(Debug)]
pub struct Rules {
    excludes: Override,
    ignore_files: Vec<Gitignore>,
}

impl Rules {
    /// Builds the `--exclude` patterns and reads the `--ignore-file` files,
    /// both anchored at `base`.
    pub fn new(
        base: &Path,
        excludes: &[String],
        ignore_files: &[impl AsRef<Path>],
    ) -> Result<Self> {
        Ok(Rules {
            excludes: build_excludes(base, excludes)?,
            ignore_files: ignore_files
                .iter()
                .map(|file| read_ignore_file(base, file.as_ref()))
                .collect::<Result<_>>()?,
        })
    }

    /// Whether `path` (absolute, below the root) is left out, given the
    /// `.shpignore` files of the directories above it: the first set of
    /// rules, in order of precedence, with a matching pattern decides.
    pub fn is_ignored(&self, nested: Option<&Arc<NestedRules>>, path: &Path, is_dir: bool) -> bool {
        let excludes = std::iter::once(verdict(self.excludes.matched(path, is_dir)));
        let nested = std::iter::successors(nested, |rules| rules.parent.as_ref())
            .map(|rules| verdict(rules.matcher.matched(path, is_dir)));
        let files = self
            .ignore_files
            .iter()
            .rev()
            .map(|file| verdict(file.matched(path, is_dir)));
        excludes
            .chain(nested)
            .chain(files)
            .flatten()
            .next()
            .unwrap_or(false)
    }
}

/// What a match says: `Some(true)` leave the path out, `Some(false)` keep
/// it, `None` no pattern matched.
fn verdict<T>(m: Match<T>) -> Option<bool> {
    match m {
        Match::Ignore(_) => Some(true),
        Match::Whitelist(_) => Some(false),
        Match::None => None,
    }
}

/// The `.shpignore` rules of one directory, linked to those above it.
#[derive(Debug)]
pub struct NestedRules {
    matcher: Gitignore,
    parent: Option<Arc<NestedRules>>,
}

impl NestedRules {
    /// The rules in effect below `dir`: those of its own `.shpignore`, in
    /// front of `parent`'s. `ignore_file` is what reading that file gave:
    /// `None` when there is none. One that cannot be read is an error: the
    /// rules it holds may be what keeps secrets out.
    pub fn for_directory(
        dir: &Path,
        ignore_file: Option<std::io::Result<Vec<u8>>>,
        parent: Option<&Arc<NestedRules>>,
    ) -> std::result::Result<Option<Arc<NestedRules>>, ignore::Error> {
        let Some(read) = ignore_file else {
            return Ok(parent.cloned());
        };
        let file = dir.join(IGNORE_FILE_NAME);
        let in_file = |err: ignore::Error| ignore::Error::WithPath {
            path: file.clone(),
            err: Box::new(err),
        };
        let text = read
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error())
                })
            })
            .map_err(|e| in_file(ignore::Error::Io(e)))?;
        let mut builder = GitignoreBuilder::new(dir);
        // Git ignores a byte-order mark at the start, as the ignore crate does.
        for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            if let Err(err) = builder.add_line(Some(file.clone()), line) {
                return Err(in_file(ignore::Error::WithLineNumber {
                    line: i as u64 + 1,
                    err: Box::new(err),
                }));
            }
        }
        Ok(Some(Arc::new(NestedRules {
            matcher: builder.build()?,
            parent: parent.cloned(),
        })))
    }
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

/// Reads one `--ignore-file`, refusing files that do not exist or do not
/// parse.
fn read_ignore_file(base: &Path, file: &Path) -> Result<Gitignore> {
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
    let unusable = |e: ignore::Error| {
        Error::Usage(format!(
            "ignore file {} cannot be used: {e}",
            file.display()
        ))
    };
    let mut builder = GitignoreBuilder::new(base);
    if let Some(e) = builder.add(file) {
        return Err(unusable(e));
    }
    builder.build().map_err(unusable)
}
