//! Tests of [`pack`] as a whole: pinned digests, determinism, and layers
//! that tar and the decompressors accept. The helpers here serve the tests
//! of the submodules too.

use super::*;
use crate::archive::walk::{walk, WalkOptions};
use flate2::read::MultiGzDecoder;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Writes `rel` with `content` and `mode` below `root`, creating parents.
pub(super) fn put(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: u64) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

pub(super) fn pack_dir(root: &Path, opts: &PackOptions) -> PackedLayer {
    let entries = walk(root, &WalkOptions::default(), &mut |_| {}).unwrap();
    pack(&entries, opts, &std::env::temp_dir(), &mut |_| {}).unwrap()
}

/// The fixed tree of the known-digest test.
pub(super) fn sample_tree(root: &Path) {
    put(root, "a.txt", b"hello\n", 0o644);
    put(root, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    fs::create_dir(root.join("empty")).unwrap();
    symlink("a.txt", root.join("link")).unwrap();
}

#[test]
fn known_digest() {
    // Pinned on purpose: a change of deflate backend, of the parallel
    // gzip block size or of the tar layout changes these values, and must
    // be a deliberate decision.
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let layer = pack_dir(
        dir.path(),
        &PackOptions {
            mtime: 0,
            compression: Compression::Gzip,
            compression_level: 6,
        },
    );
    assert_eq!(
        layer.digest.as_str(),
        "sha256:0a5c6718cb1785804469b450cb399ac29b016aceedf5c882a16a4b2b769f40bb"
    );
    assert_eq!(
        layer.diff_id.as_str(),
        "sha256:2bbea6dd4d978b740e7d7e2800d9cacedfe07beb3f8bd40e356ae3fe2fad3900"
    );
}

#[test]
fn same_tree_packs_identically() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8], bool); 5] = [
        ("README.md", b"readme\n", false),
        ("src/main.rs", b"fn main() {}\n", false),
        ("src/util/mod.rs", b"// util\n", false),
        ("scripts/build.sh", b"#!/bin/sh\n", true),
        ("z/last", b"", false),
    ];
    for (i, (rel, content, exec)) in files.iter().enumerate() {
        put(one.path(), rel, content, if *exec { 0o755 } else { 0o644 });
        set_mtime(&one.path().join(rel), 1_000 + i as u64);
    }
    for (i, (rel, content, exec)) in files.iter().enumerate().rev() {
        put(two.path(), rel, content, if *exec { 0o700 } else { 0o600 });
        set_mtime(&two.path().join(rel), 2_000_000_000 - i as u64);
    }
    fs::create_dir(one.path().join("empty")).unwrap();
    fs::create_dir(two.path().join("empty")).unwrap();
    fs::set_permissions(two.path().join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    let opts = PackOptions {
        mtime: 1_700_000_000,
        compression: Compression::Gzip,
        compression_level: 6,
    };
    let a = pack_dir(one.path(), &opts);
    let b = pack_dir(two.path(), &opts);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.diff_id, b.diff_id);
    assert_eq!((a.size, a.uncompressed_size), (b.size, b.uncompressed_size));
    assert_eq!(
        fs::read(a.file.path()).unwrap(),
        fs::read(b.file.path()).unwrap()
    );
}

#[test]
fn one_byte_changes_the_digest() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    put(one.path(), "f", b"content A", 0o644);
    put(two.path(), "f", b"content B", 0o644);
    let opts = PackOptions::default();
    let a = pack_dir(one.path(), &opts);
    let b = pack_dir(two.path(), &opts);
    assert_ne!(a.digest, b.digest);
    assert_ne!(a.diff_id, b.diff_id);
}

#[test]
fn digests_and_sizes_match_the_spool_file() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let mut layer = pack_dir(dir.path(), &PackOptions::default());
    let compressed = fs::read(layer.file.path()).unwrap();
    let mut from_handle = Vec::new();
    layer
        .file
        .as_file_mut()
        .read_to_end(&mut from_handle)
        .unwrap();
    assert!(
        from_handle == compressed,
        "the spool file is returned rewound"
    );
    assert_eq!(layer.size, compressed.len() as u64);
    assert_eq!(layer.digest, Digest::of(&compressed));
    let mut tar_bytes = Vec::new();
    MultiGzDecoder::new(&compressed[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(layer.uncompressed_size, tar_bytes.len() as u64);
    assert_eq!(layer.diff_id, Digest::of(&tar_bytes));
    assert_eq!(layer.entries, 5);
    // Fixed gzip header: no name, mtime 0, OS "unknown", the member size.
    assert_eq!(&compressed[..10], &[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255]);
    assert_eq!(
        crate::compress::gzip_member::recorded_size(&compressed),
        Some(compressed.len())
    );
}

#[test]
fn output_is_a_valid_tar_gz() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    put(dir.path(), &long, b"long", 0o644);
    let opts = PackOptions {
        mtime: 1_234_567_890,
        compression: Compression::Gzip,
        compression_level: 9,
    };
    let layer = pack_dir(dir.path(), &opts);
    let file = File::open(layer.file.path()).unwrap();
    let mut archive = tar::Archive::new(MultiGzDecoder::new(file));
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(h.uid().unwrap(), 0, "{name}");
        assert_eq!(h.gid().unwrap(), 0, "{name}");
        assert_eq!(h.username().unwrap(), Some(""), "{name}");
        assert_eq!(h.groupname().unwrap(), Some(""), "{name}");
        assert_eq!(h.mtime().unwrap(), opts.mtime, "{name}");
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        seen.push((name, h.entry_type(), h.mode().unwrap(), link, content));
    }
    let expect = |name: &str, kind, mode, link: Option<&str>, content: &str| {
        (
            name.to_string(),
            kind,
            mode,
            link.map(str::to_string),
            content.to_string(),
        )
    };
    assert_eq!(
        seen,
        [
            expect("a.txt", EntryType::Regular, 0o644, None, "hello\n"),
            expect("bin/", EntryType::Directory, 0o755, None, ""),
            expect(
                "bin/run.sh",
                EntryType::Regular,
                0o755,
                None,
                "#!/bin/sh\necho hi\n"
            ),
            expect(
                &format!("{}/", "d".repeat(120)),
                EntryType::Directory,
                0o755,
                None,
                ""
            ),
            expect(&long, EntryType::Regular, 0o644, None, "long"),
            expect("empty/", EntryType::Directory, 0o755, None, ""),
            expect("link", EntryType::Symlink, 0o777, Some("a.txt"), ""),
        ]
    );
}

#[test]
fn gnu_tar_lists_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let layer = pack_dir(dir.path(), &PackOptions::default());
    let listing = tar_listing(&["-tzvf"], layer.file.path());
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 5, "{listing}");
    assert!(
        lines[0].starts_with("-rw-r--r-- 0/0") && lines[0].ends_with(" a.txt"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("drwxr-xr-x 0/0") && lines[1].ends_with(" bin/"),
        "{listing}"
    );
    assert!(
        lines[2].starts_with("-rwxr-xr-x 0/0") && lines[2].ends_with(" bin/run.sh"),
        "{listing}"
    );
    assert!(
        lines[3].starts_with("drwxr-xr-x 0/0") && lines[3].ends_with(" empty/"),
        "{listing}"
    );
    assert!(
        lines[4].starts_with("lrwxrwxrwx 0/0") && lines[4].ends_with(" link -> a.txt"),
        "{listing}"
    );
}

#[test]
fn large_file_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..(3 * BUFFER_SIZE + 12_345))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    put(dir.path(), "big", &content, 0o644);
    let layer = pack_dir(
        dir.path(),
        &PackOptions {
            mtime: 0,
            compression: Compression::Gzip,
            compression_level: 1,
        },
    );
    let file = File::open(layer.file.path()).unwrap();
    let mut archive = tar::Archive::new(MultiGzDecoder::new(file));
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut read = Vec::new();
    entry.read_to_end(&mut read).unwrap();
    assert!(read == content);
}

#[test]
fn on_event_sees_every_entry_in_order_then_the_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let entries = walk(dir.path(), &WalkOptions::default(), &mut |_| {}).unwrap();
    let mut seen = Vec::new();
    let layer = pack(
        &entries,
        &PackOptions::default(),
        &std::env::temp_dir(),
        &mut |event| {
            seen.push(match event {
                PackEvent::Appended(e) => e.rel.clone(),
                PackEvent::TarDone(diff_id) => diff_id.to_string(),
            })
        },
    )
    .unwrap();
    assert_eq!(
        seen,
        [
            "a.txt",
            "bin",
            "bin/run.sh",
            "empty",
            "link",
            &layer.diff_id.to_string()
        ]
    );
}

#[test]
fn compression_level_is_validated() {
    let spool = tempfile::tempdir().unwrap();
    for (compression, level) in [
        (Compression::Gzip, 0),
        (Compression::Gzip, 10),
        (Compression::Zstd, 0),
        (Compression::Zstd, 20),
    ] {
        let opts = PackOptions {
            mtime: 0,
            compression,
            compression_level: level,
        };
        assert!(matches!(
            pack(&empty_tree(), &opts, spool.path(), &mut |_| {}),
            Err(Error::Usage(_))
        ));
    }
}

#[test]
fn empty_bundle_is_a_valid_archive() {
    let spool = tempfile::tempdir().unwrap();
    let layer = pack(
        &empty_tree(),
        &PackOptions::default(),
        spool.path(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(layer.entries, 0);
    assert_eq!(layer.uncompressed_size, 1024);
    tar_listing(&["-tzf"], layer.file.path());
}

/// A tree with no entries.
fn empty_tree() -> SourceTree {
    SourceTree {
        root: std::sync::Arc::new(File::open("/").unwrap().into()),
        entries: Vec::new(),
    }
}

/// What GNU tar lists of `archive` with `flags`; panics unless tar
/// accepts it.
pub(super) fn tar_listing(flags: &[&str], archive: &Path) -> String {
    let out = Command::new("tar")
        .args(flags)
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
