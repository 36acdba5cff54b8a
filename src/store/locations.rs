//! Where blobs were seen: for each blob, the registry repositories that
//! held it when a run pulled, pushed, copied or mounted it, newest first
//! and at most [`MAX_LOCATIONS`], kept in the cache directory. A later run
//! that needs the blob in another repository of one of those registries
//! asks the registry to mount it from there instead of sending its bytes.
//!
//! One small file per blob (`ocistep-locations/sha256/HEX`, a line
//! `REGISTRY REPOSITORY` per location), changed under a lock and replaced
//! atomically, so concurrent runs keep each other's entries and readers
//! never see a partial file. A location may be stale (the blob deleted
//! since): a mount from it is then declined and the blob uploaded.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::oci::digest::Digest;
use crate::shared_file;

/// The most locations remembered per blob.
pub const MAX_LOCATIONS: usize = 8;

/// A repository that held a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The registry host (with port).
    pub registry: String,
    /// The repository in it.
    pub repository: String,
}

/// The locations kept under a cache directory.
#[derive(Debug, Clone)]
pub struct Locations {
    dir: PathBuf,
}

impl Locations {
    /// The locations kept under the cache at `cache_root`.
    pub fn new(cache_root: &Path) -> Self {
        Locations {
            dir: cache_root.join("ocistep-locations"),
        }
    }

    /// Where `digest` was seen, newest first (none when unknown or
    /// unreadable).
    pub fn of(&self, digest: &Digest) -> Vec<Location> {
        std::fs::read_to_string(self.path(digest))
            .map(|text| parse(&text))
            .unwrap_or_default()
    }

    /// Records that `registry/repository` holds `digest`, first in its
    /// list. Nothing is written when it is first already.
    pub fn remember(&self, digest: &Digest, registry: &str, repository: &str) -> Result<()> {
        let seen = Location {
            registry: registry.to_string(),
            repository: repository.to_string(),
        };
        let path = self.path(digest);
        if self.of(digest).first() == Some(&seen) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("creating", dir, e))?;
        let _lock = shared_file::lock(&self.dir.join("lock"))?;
        let mut list = self.of(digest);
        list.retain(|l| l != &seen);
        list.insert(0, seen);
        list.truncate(MAX_LOCATIONS);
        let text: String = list
            .iter()
            .map(|l| format!("{} {}\n", l.registry, l.repository))
            .collect();
        shared_file::write_atomic(&path, text.as_bytes())
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }
}

/// The locations in a file's text; lines that are not `REGISTRY
/// REPOSITORY` are skipped.
fn parse(text: &str) -> Vec<Location> {
    text.lines()
        .filter_map(|line| {
            let (registry, repository) = line.split_once(' ')?;
            (!registry.is_empty() && !repository.is_empty() && !repository.contains(' ')).then(
                || Location {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                },
            )
        })
        .take(MAX_LOCATIONS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_bounded_and_kept_across_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let locations = Locations::new(dir.path());
        let digest = Digest::of(b"layer");
        assert!(locations.of(&digest).is_empty());
        std::thread::scope(|s| {
            for i in 0..6 {
                let locations = &locations;
                let digest = &digest;
                s.spawn(move || {
                    locations
                        .remember(digest, "r:5000", &format!("repo{i}"))
                        .unwrap()
                });
            }
        });
        let mut seen: Vec<String> = locations
            .of(&digest)
            .into_iter()
            .map(|l| l.repository)
            .collect();
        seen.sort();
        assert_eq!(seen, ["repo0", "repo1", "repo2", "repo3", "repo4", "repo5"]);

        locations.remember(&digest, "r:5000", "repo3").unwrap();
        assert_eq!(locations.of(&digest)[0].repository, "repo3");
        for i in 0..20 {
            locations
                .remember(&digest, "other", &format!("x{i}"))
                .unwrap();
        }
        let list = locations.of(&digest);
        assert_eq!(list.len(), MAX_LOCATIONS);
        assert_eq!(list[0].repository, "x19");
        assert_eq!(list[0].registry, "other");
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let list = parse("r app\nnonsense\n\n r2 x\nr3 a b\nr4 ok\n");
        let repos: Vec<&str> = list.iter().map(|l| l.repository.as_str()).collect();
        assert_eq!(repos, ["app", "ok"]);
    }
}
