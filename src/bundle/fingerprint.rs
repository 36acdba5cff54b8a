//! A fingerprint of a walked tree from file metadata alone (no content
//! read), so an unchanged tree can reuse the layer it packed to last time.
//!
//! Like git's index it relies on the kernel's change time and inode: any
//! write to a file changes its ctime, which no tool can set back.

use sha2::{Digest as _, Sha256};

use crate::archive::pack::PackOptions;
use crate::archive::walk::{FileStamp, SourceEntry, SourceKind};
use crate::compress::Compression;
use crate::oci::digest::Digest;

/// Bumped whenever the packed bytes for the same tree would change (a new
/// libdeflate may deflate differently, so its version is part of it).
const FORMAT: &str = "ocistep-pack/2 gnu-tar gzip-members-1MiB libdeflate-1.26 stored-64KiB";

/// What decides the packed bytes besides the tree, mtime and level: the
/// format and the compression (with the libzstd version, whose output may
/// change from one release to the next).
fn format(compression: Compression) -> String {
    match compression {
        Compression::Gzip => FORMAT.to_string(),
        Compression::Zstd => format!(
            "ocistep-pack/1 gnu-tar zstdmt libzstd-{}",
            zstd::zstd_safe::version_string()
        ),
        Compression::None => "ocistep-pack/1 gnu-tar plain".to_string(),
    }
}

/// The fingerprint of `entries` packed with `opts`, from the sizes, modes
/// and [`FileStamp`]s the walk saw: no file is looked at again.
pub fn fingerprint(entries: &[SourceEntry], opts: &PackOptions) -> Digest {
    let mut h = Sha256::new();
    h.update(format!(
        "{}\0{}\0{}\0",
        format(opts.compression),
        opts.mtime,
        opts.compression_level
    ));
    for entry in entries {
        h.update(entry.rel.as_bytes());
        match &entry.kind {
            SourceKind::Dir => h.update(b"\0d\0"),
            SourceKind::Symlink { target } => h.update(format!("\0l\0{target}\0")),
            SourceKind::File {
                size,
                executable,
                stamp,
                ..
            } => {
                let FileStamp {
                    dev,
                    ino,
                    mtime,
                    ctime,
                } = stamp;
                h.update(format!(
                    "\0f\0{size}\0{executable}\0{dev}\0{ino}\0{}\0{}\0{}\0{}\0",
                    mtime.0, mtime.1, ctime.0, ctime.1
                ));
            }
        }
    }
    Digest::from_hasher(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::walk::{walk, WalkOptions};

    #[test]
    fn any_write_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one").unwrap();
        let opts = PackOptions::default();
        let fp = || {
            fingerprint(
                &walk(dir.path(), &WalkOptions::default(), &mut |_| {})
                    .unwrap()
                    .entries,
                &opts,
            )
        };
        let first = fp();
        assert_eq!(fp(), first);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("a"), "two").unwrap();
        assert_ne!(fp(), first, "same size, new content");
        let second = fp();
        let entries = walk(dir.path(), &WalkOptions::default(), &mut |_| {})
            .unwrap()
            .entries;
        let other = PackOptions {
            mtime: 1,
            ..PackOptions::default()
        };
        assert_ne!(fingerprint(&entries, &other), second);
        // zstd at the gzip level, and zstd at another level, are other layers.
        let zstd = PackOptions {
            compression: Compression::Zstd,
            ..PackOptions::default()
        };
        let zstd_fp = fingerprint(&entries, &zstd);
        assert_ne!(zstd_fp, second);
        let zstd3 = PackOptions {
            compression_level: 3,
            ..zstd.clone()
        };
        assert_ne!(fingerprint(&entries, &zstd3), zstd_fp);
    }
}
