//! What an extraction writes: files, directories and links with their
//! modes and times, and how failures of the writers are reported.

use super::*;

#[test]
fn extracts_files_dirs_and_links() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.dir("bin/")
        .file("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o700)
        .file("bin/suid", b"x", 0o4755)
        .file("bin/group-exec", b"g", 0o650)
        .file("sub/file", b"hello", 0o640)
        .dir("empty/")
        .file("deep/a/b/c.txt", b"deep", 0o644)
        .symlink("l", "sub/file")
        .symlink("sub/up", "../bin/run.sh")
        .hardlink("h", "sub/file");
    let (result, listing) = unpack_tar(&fx, &tar);
    let stats = result.unwrap();

    use EntryKind::*;
    let expected: Listing = vec![
        ("bin".into(), Dir, 0, 0o755),
        ("bin/run.sh".into(), File, 18, 0o755),
        ("bin/suid".into(), File, 1, 0o755),
        ("bin/group-exec".into(), File, 1, 0o755),
        ("sub/file".into(), File, 5, 0o644),
        ("empty".into(), Dir, 0, 0o755),
        ("deep/a/b/c.txt".into(), File, 4, 0o644),
        ("l".into(), Symlink, 0, 0o777),
        ("sub/up".into(), Symlink, 0, 0o777),
        ("h".into(), Hardlink, 0, 0o644),
    ];
    assert_eq!(listing, expected);
    assert_eq!(
        stats,
        ExtractStats {
            entries: 10,
            bytes: 29
        }
    );

    let d = &fx.dest;
    assert_eq!(
        fs::read(d.join("bin/run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(fs::read(d.join("sub/file")).unwrap(), b"hello");
    assert_eq!(fs::read(d.join("deep/a/b/c.txt")).unwrap(), b"deep");
    assert_eq!(mode_of(&d.join("bin/run.sh")), 0o755);
    assert_eq!(
        mode_of(&d.join("bin/suid")),
        0o755,
        "set-id bits must be dropped"
    );
    assert_eq!(mode_of(&d.join("bin/group-exec")), 0o755);
    assert_eq!(mode_of(&d.join("sub/file")), 0o644);
    for dir in ["bin", "sub", "empty", "deep", "deep/a", "deep/a/b"] {
        assert!(d.join(dir).is_dir(), "{dir} missing");
        assert_eq!(mode_of(&d.join(dir)), 0o755, "{dir}");
    }
    assert_eq!(fs::read_dir(d.join("empty")).unwrap().count(), 0);
    assert_eq!(fs::read_link(d.join("l")).unwrap(), Path::new("sub/file"));
    assert_eq!(
        fs::read_link(d.join("sub/up")).unwrap(),
        Path::new("../bin/run.sh")
    );
    assert_eq!(fs::read(d.join("sub/up")).unwrap(), b"#!/bin/sh\necho hi\n");
    let file = fs::metadata(d.join("sub/file")).unwrap();
    let link = fs::symlink_metadata(d.join("h")).unwrap();
    assert!(link.is_file());
    assert_eq!((link.dev(), link.ino()), (file.dev(), file.ino()));
    let mtime = UNIX_EPOCH + Duration::from_secs(MTIME);
    assert_eq!(mtime_of(&d.join("bin/run.sh")), mtime);
    assert_eq!(
        mtime_of(&d.join("bin")),
        mtime,
        "directory mtimes are set last"
    );
    assert_contained(&fx);
}

#[test]
fn long_names_and_dot_entries_are_handled() {
    let fx = fixture();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    let mut tar = RawTar::default();
    tar.dir("./")
        .dir(".")
        .pax(EntryType::XGlobalHeader, "comment", b"0123abcd")
        .file("./a//b/./c", b"c", 0o644)
        .long_name(long.as_bytes())
        .file("placeholder", b"long", 0o644)
        .pax(EntryType::XHeader, "path", b"pax/named")
        .file("placeholder", b"pax", 0o644);
    let (result, listing) = unpack_tar(&fx, &tar);
    let stats = result.unwrap();
    let paths: Vec<_> = listing.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(paths, ["a/b/c", long.as_str(), "pax/named"]);
    assert_eq!(stats.entries, 3);
    assert_eq!(fs::read(fx.dest.join(&long)).unwrap(), b"long");
    assert_eq!(fs::read(fx.dest.join("pax/named")).unwrap(), b"pax");
    assert!(!fx.dest.join("placeholder").exists());
}

#[test]
fn plain_tar_is_read_up_to_the_end_marker() {
    let mut tar = RawTar::default();
    tar.file("a", b"alpha", 0o600).dir("d/");
    let mut bytes = tar.finish();
    let end_marker = tar.out.len() as u64 + 512;
    bytes.extend_from_slice(b"trailing data the caller drains");
    let fx = fixture();
    let mut reader = Cursor::new(bytes);
    let (result, _) = unpack_with(
        &fx,
        &mut reader,
        Compression::None,
        ExtractLimits::default(),
    );
    assert_eq!(
        result.unwrap(),
        ExtractStats {
            entries: 2,
            bytes: 5
        }
    );
    assert_eq!(reader.position(), end_marker);
    assert_eq!(fs::read(fx.dest.join("a")).unwrap(), b"alpha");
    assert_eq!(mode_of(&fx.dest.join("a")), 0o644);
}

#[test]
fn target_must_be_an_empty_directory() {
    let fx = fixture();
    fs::write(fx.dest.join("old"), b"old").unwrap();
    let mut tar = RawTar::default();
    tar.file("a", b"a", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert!(
        matches!(result, Err(Error::TargetConflict(_))),
        "{result:?}"
    );
    assert!(!fx.dest.join("a").exists());
}

/// A file that passes every check of the archive, and only fails when
/// a writer writes it (as if the disk were full).
fn unwritable_name() -> String {
    format!("d/{}", writer::DISK_FULL_NAME)
}

#[test]
fn a_writer_error_fails_the_extraction() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("before", b"b", 0o644)
        .file(&unwritable_name(), b"content", 0o644);
    for i in 0..200 {
        tar.file(&format!("after/{i}"), &[7; 3000], 0o644);
    }
    let (result, _) = unpack_tar(&fx, &tar);
    match result {
        Err(Error::Io {
            action,
            path,
            source,
        }) => {
            assert_eq!(action, "writing");
            assert_eq!(source.kind(), io::ErrorKind::StorageFull);
            assert!(path.ends_with(unwritable_name()), "{path:?}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // Nothing is written once unpack has returned.
    let count = || fs::read_dir(&fx.dest).unwrap().count();
    let seen = count();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count(), seen);
    assert_contained(&fx);
}

#[test]
fn an_earlier_writer_error_wins_over_a_later_unsafe_entry() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file(&unwritable_name(), &[1; 5000], 0o644)
        .file("ok", b"x", 0o644)
        .file("../evil", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
    assert_contained(&fx);

    // A bad trailer after files that were written fine still fails.
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("a", &[3; 70_000], 0o644).file("b", b"b", 0o644);
    let mut gz = gzip(&tar.finish());
    let len = gz.len();
    gz[len - 5] ^= 0xff;
    let (result, _) = unpack_with(
        &fx,
        &mut Cursor::new(gz),
        Compression::Gzip,
        ExtractLimits::default(),
    );
    assert_bad_content(result);
}

#[test]
fn a_failed_pull_leaves_the_target_unchanged() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "k").unwrap();
    let staging = crate::archive::staging::Staging::new(&target).unwrap();
    let mut tar = RawTar::default();
    tar.file("new", b"n", 0o644)
        .file(&unwritable_name(), b"x", 0o644);
    let gz = gzip(&tar.finish());
    let result = unpack(
        &mut Cursor::new(gz),
        Compression::Gzip,
        staging.path(),
        &ExtractLimits::default(),
        &mut |_| {},
    );
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
    drop(staging);
    let names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"]);
}

/// Content that differs at every offset, to catch reordered chunks.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 65_536) as u8)
        .collect()
}

#[test]
fn a_file_larger_than_the_write_budget_extracts() {
    let fx = fixture();
    let big = pattern(writer::BUDGET + 3 * CHUNK + 123);
    let mut tar = RawTar::default();
    tar.file("small", b"s", 0o644)
        .file("dir/big", &big, 0o755)
        .file("after", b"a", 0o644);
    let (result, listing) = unpack_with(
        &fx,
        &mut Cursor::new(tar.finish()),
        Compression::None,
        ExtractLimits::default(),
    );
    let stats = result.unwrap();
    assert_eq!(stats.bytes, big.len() as u64 + 2);
    assert_eq!(
        listing[1],
        (
            "dir/big".to_string(),
            EntryKind::File,
            big.len() as u64,
            0o755
        )
    );
    assert!(fs::read(fx.dest.join("dir/big")).unwrap() == big);
    assert_eq!(mode_of(&fx.dest.join("dir/big")), 0o755);
    assert_eq!(
        mtime_of(&fx.dest.join("dir/big")),
        UNIX_EPOCH + Duration::from_secs(MTIME)
    );
    assert_eq!(fs::read(fx.dest.join("after")).unwrap(), b"a");
}

#[test]
fn links_to_files_written_just_before_see_their_whole_content() {
    let fx = fixture();
    let big = pattern(3 * CHUNK + 1);
    let mut tar = RawTar::default();
    for i in 0..50 {
        tar.file(&format!("many/{i}"), &pattern(10_000 + i), 0o644);
    }
    tar.file("d/big", &big, 0o755)
        .hardlink("d/hard", "d/big")
        .symlink("d/soft", "big")
        .symlink("up", "d/big")
        .file("d/small", b"small", 0o644)
        .hardlink("hard-small", "d/small");
    let (result, listing) = unpack_with(
        &fx,
        &mut Cursor::new(tar.finish()),
        Compression::None,
        ExtractLimits::default(),
    );
    result.unwrap();
    assert_eq!(listing.len(), 56);
    for name in ["d/big", "d/hard", "d/soft", "up"] {
        assert!(fs::read(fx.dest.join(name)).unwrap() == big, "{name}");
    }
    assert_eq!(mode_of(&fx.dest.join("d/hard")), 0o755);
    assert_eq!(fs::read(fx.dest.join("hard-small")).unwrap(), b"small");
    let meta = fs::metadata(fx.dest.join("d/big")).unwrap();
    assert_eq!(meta.nlink(), 2);
    for i in 0..50 {
        assert!(fs::read(fx.dest.join(format!("many/{i}"))).unwrap() == pattern(10_000 + i));
    }
}

#[test]
fn a_duplicate_of_a_large_file_replaces_it_whole() {
    let fx = fixture();
    let big = pattern(2 * CHUNK + 7);
    let mut tar = RawTar::default();
    tar.file("f", &big, 0o644)
        .hardlink("h", "f")
        .file("f", b"short", 0o755)
        .file("g", &big, 0o644)
        .symlink("g", "f");
    let (result, _) = unpack_with(
        &fx,
        &mut Cursor::new(tar.finish()),
        Compression::None,
        ExtractLimits::default(),
    );
    assert_unsafe(result, &["\"g\" is a symlink", "a file there"]);
    assert_eq!(fs::read(fx.dest.join("f")).unwrap(), b"short");
    assert!(fs::read(fx.dest.join("h")).unwrap() == big);
    assert!(fs::read(fx.dest.join("g")).unwrap() == big);
}
