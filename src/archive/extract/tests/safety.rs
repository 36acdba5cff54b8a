//! Entries that would write outside the target, pass through or replace a
//! symlink, or link to what the archive did not extract: all refused.

use super::*;

#[test]
fn parent_traversal_is_refused() {
    for name in ["../evil", "a/../../evil", "./../evil", "a/.."] {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.file(name, b"pwned", 0o644);
        let (result, listing) = unpack_tar(&fx, &tar);
        assert_unsafe(
            result,
            &[&format!("entry {name:?}"), "escapes the target directory"],
        );
        assert!(listing.is_empty());
        assert_contained(&fx);
    }
}

#[test]
fn absolute_path_is_refused() {
    let fx = fixture();
    let victim = fx.parent.path().join("x");
    let mut tar = RawTar::default();
    tar.file(victim.to_str().unwrap(), b"pwned", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["has an absolute path"]);
    assert!(!victim.exists());
    assert_contained(&fx);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("/tmp/x", b"pwned", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"/tmp/x\"", "has an absolute path"]);
    assert_contained(&fx);
}

#[test]
fn empty_and_nul_names_are_refused() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["empty name"]);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.long_name(b"ok\0../../evil").file("short", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["NUL byte"]);
    assert_eq!(fs::read_dir(&fx.dest).unwrap().count(), 0);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("./", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"./\""]);
    assert_contained(&fx);
}

#[test]
fn long_name_escape_is_refused() {
    let fx = fixture();
    let long = format!("{}/../../../evil", "d/".repeat(60));
    let mut tar = RawTar::default();
    tar.long_name(long.as_bytes()).file("innocent", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["escapes the target directory"]);
    assert_contained(&fx);
}

/// Unpacks `tar`, whose first entries are the directory `d` and the
/// file `d/a`; once `d/a` is extracted, another process swaps `d` for a
/// symlink to a directory outside the target.
fn unpack_with_swap(tar: &RawTar) -> (Fixture, PathBuf, Result<ExtractStats>) {
    let fx = fixture();
    let outside = fx.parent.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let gz = gzip(&tar.finish());
    let mut swapped = false;
    let result = unpack(
        &mut Cursor::new(gz),
        Compression::Gzip,
        &fx.dest,
        &ExtractLimits::default(),
        &mut |e| {
            if e.path == "d/a" && !swapped {
                swapped = true;
                fs::rename(fx.dest.join("d"), fx.parent.path().join("moved")).unwrap();
                std::os::unix::fs::symlink(&outside, fx.dest.join("d")).unwrap();
            }
        },
    );
    assert!(swapped);
    (fx, outside, result)
}

#[test]
fn a_directory_swapped_for_a_symlink_during_extraction_is_not_written_through() {
    type AddEntry = fn(&mut RawTar);
    let then: [(&str, AddEntry); 5] = [
        ("a file", |t| {
            t.file("d/b", b"pwned", 0o644);
        }),
        ("a directory", |t| {
            t.dir("d/sub/");
        }),
        ("a symlink", |t| {
            t.symlink("d/l", "a");
        }),
        ("a hard link", |t| {
            t.hardlink("d/h", "d/a");
        }),
        ("a replaced file", |t| {
            t.file("d/a", b"pwned", 0o644);
        }),
    ];
    for (what, add) in then {
        let mut tar = RawTar::default();
        tar.dir("d/").file("d/a", b"first", 0o644);
        add(&mut tar);
        let (_fx, outside, result) = unpack_with_swap(&tar);
        assert_unsafe(
            result,
            &["by another process", "while the pull wrote to it"],
        );
        let written: Vec<_> = fs::read_dir(&outside).unwrap().collect();
        assert!(written.is_empty(), "{what}: {written:?} written outside");
    }
}

#[test]
fn symlink_to_absolute_directory_then_write_is_refused() {
    let fx = fixture();
    let outside = fx.parent.path().to_str().unwrap().to_string();
    let mut tar = RawTar::default();
    tar.symlink("link", &outside)
        .file("link/x", b"pwned", 0o644);
    let (result, listing) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["symlink \"link\"", "absolute target"]);
    assert!(listing.is_empty());
    assert_contained(&fx);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.symlink("link", "/tmp").file("link/x", b"pwned", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"/tmp\"", "absolute target"]);
    assert!(fs::symlink_metadata(fx.dest.join("link")).is_err());
    assert_contained(&fx);
}

#[test]
fn symlink_to_parent_then_write_is_refused() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.symlink("link", "..").file("link/x", b"pwned", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["symlink \"link\" -> \"..\"", "escapes"]);
    assert_contained(&fx);
}

#[test]
fn writing_through_an_in_tree_symlink_is_refused() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.dir("sub/")
        .symlink("link", "sub")
        .file("link/x", b"x", 0o644);
    let (result, listing) = unpack_tar(&fx, &tar);
    assert_unsafe(
        result,
        &["entry \"link/x\" passes through symlink \"link\""],
    );
    assert_eq!(listing.len(), 2);
    assert!(!fx.dest.join("sub/x").exists());

    // sub/up resolves to the target root itself, which is fine; going
    // through it is not.
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.symlink("sub/up", "..")
        .dir("sub/up/d/")
        .file("sub/up/d/x", b"x", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"sub/up/d\" passes through symlink \"sub/up\""]);
    assert!(!fx.dest.join("d").exists());
    assert_contained(&fx);
}

#[test]
fn replacing_a_symlink_is_refused() {
    let fx = fixture();
    fs::write(fx.parent.path().join("victim"), b"safe").unwrap();
    let mut tar = RawTar::default();
    tar.symlink("sub/link", "target")
        .file("sub/link", b"pwned", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"sub/link\" is a file", "a symlink there"]);
    assert_eq!(
        fs::read_link(fx.dest.join("sub/link")).unwrap(),
        Path::new("target")
    );
}

#[test]
fn escaping_symlink_targets_are_refused() {
    let cases = [
        ("a", "../../etc", "escapes"),
        ("a/b", "../../x", "escapes"),
        ("a/b/c", "../../../../etc/passwd", "escapes"),
        ("a/b", "x/../../..", "after a directory name"),
        ("a/b", "./s/../..", "after a directory name"),
    ];
    for (name, target, reason) in cases {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.symlink(name, target);
        let (result, _) = unpack_tar(&fx, &tar);
        assert_unsafe(
            result,
            &[&format!("symlink {name:?} -> {target:?}"), reason],
        );
        assert!(
            fs::symlink_metadata(fx.dest.join(name)).is_err(),
            "{name} created"
        );
        assert_contained(&fx);
    }
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.symlink("a/b/c", "../../x")
        .symlink("dot", ".")
        .symlink("a/b/d", "./../e");
    let (result, _) = unpack_tar(&fx, &tar);
    assert_eq!(
        result.unwrap().entries,
        3,
        "targets that stay inside are fine"
    );
}

#[test]
fn hardlinks_outside_the_archive_are_refused() {
    let cases = [
        ("../x", "points outside the archive"),
        ("/etc/passwd", "points outside the archive"),
        ("missing", "not point to a regular file extracted earlier"),
        ("d", "not point to a regular file extracted earlier"),
        ("s", "not point to a regular file extracted earlier"),
        ("h", "not point to a regular file extracted earlier"),
    ];
    for (target, reason) in cases {
        let fx = fixture();
        fs::write(fx.parent.path().join("x"), b"outside").unwrap();
        let mut tar = RawTar::default();
        tar.dir("d/").symlink("s", "d").hardlink("h", target);
        let (result, _) = unpack_tar(&fx, &tar);
        assert_unsafe(result, &[&format!("hard link \"h\" -> {target:?}"), reason]);
        assert!(fs::symlink_metadata(fx.dest.join("h")).is_err());
        assert_eq!(fs::metadata(fx.parent.path().join("x")).unwrap().nlink(), 1);
    }
}

#[test]
fn devices_and_fifos_are_refused() {
    for (ty, what) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
        (EntryType::GNUSparse, "sparse file"),
        (EntryType::new(b'V'), "unsupported type 'V'"),
    ] {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.entry(b"dev/node", ty, 0o666, b"", b"");
        let (result, _) = unpack_tar(&fx, &tar);
        assert_unsafe(result, &["entry \"dev/node\"", what]);
        assert_eq!(fs::read_dir(&fx.dest).unwrap().count(), 0);
        assert_contained(&fx);
    }
}

#[test]
fn duplicate_entries_replace_files_only() {
    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("f", b"first", 0o755)
        .hardlink("h", "f")
        .file("f", b"second", 0o644)
        .dir("d/")
        .dir("d/");
    let (result, _) = unpack_tar(&fx, &tar);
    assert_eq!(result.unwrap().entries, 5);
    assert_eq!(fs::read(fx.dest.join("f")).unwrap(), b"second");
    assert_eq!(mode_of(&fx.dest.join("f")), 0o644);
    assert_eq!(
        fs::read(fx.dest.join("h")).unwrap(),
        b"first",
        "a replaced file must not change files hard-linked to it"
    );

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("x", b"file", 0o644).dir("x/");
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"x\" is a directory", "a file there"]);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.dir("x/").file("x", b"file", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"x\" is a file", "a directory there"]);

    let fx = fixture();
    let mut tar = RawTar::default();
    tar.file("x", b"file", 0o644).file("x/y", b"inner", 0o644);
    let (result, _) = unpack_tar(&fx, &tar);
    assert_unsafe(result, &["\"x/y\" is inside \"x\""]);
}
