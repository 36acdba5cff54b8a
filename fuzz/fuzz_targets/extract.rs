//! Archive extraction: `bundle::extract::unpack` on any bytes, plain or
//! gzip (the first input byte chooses), with small limits, into an empty
//! directory beside a sentinel directory. It never panics, and whatever it
//! returns, nothing appears beside the target, the sentinel stays empty,
//! and every symlink left in the target resolves inside it.

#![no_main]

use std::fs;
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use ocistep::archive::extract::{unpack, ExtractLimits};
use ocistep::compress::Compression;
use ocistep::Error;

const LIMITS: ExtractLimits = ExtractLimits {
    max_bytes: 1 << 20,
    max_entries: 64,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let compression = if mode & 1 == 1 {
        Compression::Gzip
    } else {
        Compression::None
    };
    let jail = tempfile::tempdir().expect("temporary directory");
    let dest = jail.path().join("dest");
    let sentinel = jail.path().join("sentinel");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&sentinel).unwrap();

    let mut entries = 0u64;
    let result = unpack(
        &mut Cursor::new(archive),
        compression,
        &dest,
        &LIMITS,
        &mut |_| entries += 1,
    );
    match &result {
        Ok(stats) => {
            assert_eq!(stats.entries, entries);
            assert!(stats.entries <= LIMITS.max_entries);
            assert!(stats.bytes <= LIMITS.max_bytes);
        }
        Err(Error::UnsafeArchive(_) | Error::BadContent(_)) => {}
        Err(e) => panic!("unexpected error kind for a hostile archive: {e:?}"),
    }

    let mut beside: Vec<_> = fs::read_dir(jail.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["dest", "sentinel"], "written beside the target");
    assert_eq!(fs::read_dir(&sentinel).unwrap().count(), 0, "sentinel");
    check_links(&dest, &dest);
});

/// Every symlink below `dir` has a relative target that stays inside
/// `root` when resolved lexically from where the link is.
fn check_links(root: &Path, dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            let mut at: PathBuf = path.parent().unwrap().strip_prefix(root).unwrap().into();
            for part in target.components() {
                match part {
                    Component::Normal(p) => at.push(p),
                    Component::CurDir => {}
                    Component::ParentDir => assert!(
                        at.pop(),
                        "symlink {} -> {} leaves the target",
                        path.display(),
                        target.display()
                    ),
                    Component::RootDir | Component::Prefix(_) => {
                        panic!(
                            "absolute symlink {} -> {}",
                            path.display(),
                            target.display()
                        )
                    }
                }
            }
        } else if meta.is_dir() {
            check_links(root, &path);
        }
    }
}
