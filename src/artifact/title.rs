//! Layer titles as paths under the pull directory: relative, free of `..`,
//! and distinct from each other, checked before anything is written.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// A layer title that is safe to write under a directory: one or more
/// normal components (`.` and empty components are dropped, so `./a//b`
/// is `a/b`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Title {
    components: Vec<String>,
}

impl Title {
    /// Checks `raw`: refused when empty, absolute, containing `..`, a NUL
    /// byte or a backslash, or naming no file at all (`.`).
    pub fn parse(raw: &str) -> Result<Self> {
        let refuse = |why: &str| {
            Err(Error::UnsafeArchive(format!(
                "layer title {raw:?} {why}; a title must be a relative path inside the pull directory \
                 (nothing was written: ask the publisher to fix the artifact)"
            )))
        };
        if raw.is_empty() {
            return refuse("is empty");
        }
        if raw.contains('\0') {
            return refuse("contains a NUL byte");
        }
        if raw.contains('\\') {
            return refuse("contains a backslash");
        }
        if raw.starts_with('/') {
            return refuse("is absolute");
        }
        let mut components = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return refuse("contains `..`"),
                normal => components.push(normal.to_string()),
            }
        }
        if components.is_empty() {
            return refuse("names no file");
        }
        Ok(Title { components })
    }

    /// The relative path, `/`-separated.
    pub fn as_str(&self) -> String {
        self.components.join("/")
    }

    /// The parent path, `None` for a single component.
    pub fn parent(&self) -> Option<PathBuf> {
        (self.components.len() > 1).then(|| {
            self.components[..self.components.len() - 1]
                .iter()
                .collect()
        })
    }

    /// True when `self` is `other` or a directory holding it.
    fn contains(&self, other: &Title) -> bool {
        other.components.starts_with(&self.components)
    }
}

/// Refuses two titles that name the same path, or one that would be a
/// directory holding the other (`a` and `a/b`).
pub fn check_distinct(titles: &[&Title]) -> Result<()> {
    let mut sorted: Vec<&Title> = titles.to_vec();
    sorted.sort();
    // Sorted by components, a title that contains another comes right
    // before it or before titles it also contains.
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a == b {
            return Err(Error::UnsafeArchive(format!(
                "two layers have the title {:?}; nothing was written \
                 (pull them separately with --media-type, or ask the publisher to fix the artifact)",
                a.as_str()
            )));
        }
        if a.contains(b) {
            return Err(Error::UnsafeArchive(format!(
                "layer titles {:?} and {:?} collide (one would be a directory holding the other); nothing was written",
                a.as_str(),
                b.as_str()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_titles_are_refused() {
        for bad in [
            "",
            "/abs",
            "../x",
            "a/../../x",
            "a/..",
            "..",
            ".",
            "./",
            "a\\b",
            "a\0b",
        ] {
            let e = Title::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::UnsafeArchive, "{bad:?}");
        }
    }

    #[test]
    fn titles_are_normalised() {
        assert_eq!(Title::parse("./a//b/").unwrap().as_str(), "a/b");
        assert_eq!(Title::parse("app.wasm").unwrap().parent(), None);
        assert_eq!(
            Title::parse("a/b/c").unwrap().parent(),
            Some(PathBuf::from("a/b"))
        );
    }

    #[test]
    fn collisions_are_refused() {
        let t = |s: &str| Title::parse(s).unwrap();
        let (a, a2, ab, b, ac) = (t("a"), t("./a"), t("a/b"), t("b"), t("a.c"));
        assert!(check_distinct(&[&a, &b, &ac]).is_ok());
        assert!(check_distinct(&[&a, &b, &a2]).is_err());
        assert!(check_distinct(&[&ab, &b, &a]).is_err());
        assert!(check_distinct(&[&ab, &ac, &t("a/c")]).is_ok());
    }
}
