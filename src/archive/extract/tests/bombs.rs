//! Decompression bombs, archives with too many entries, and corrupt
//! streams: refused before they fill the disk or the memory.

use super::*;

/// The compressed form of: one header, then `count` gzip members of
/// `chunk` zero bytes each. Expands to `count * chunk` bytes from a
/// small input.
fn zero_bomb(header: &tar::Header, chunk: u64, count: u64) -> Vec<u8> {
    let mut gz = gzip(header.as_bytes());
    let zeros = gzip_zeros(chunk);
    for _ in 0..count {
        gz.extend_from_slice(&zeros);
    }
    gz.extend(gzip(&[0; 1024]));
    gz
}

fn small_limits(max_bytes: u64) -> ExtractLimits {
    ExtractLimits {
        max_bytes,
        max_entries: DEFAULT_MAX_ENTRIES,
    }
}

#[test]
fn gzip_bomb_file_is_refused_before_writing() {
    let fx = fixture();
    let header = raw_header(b"bomb", EntryType::Regular, 0o644, b"", 1024 * MIB);
    let gz = zero_bomb(&header, MIB, 1024);
    assert!(gz.len() < 2 * MIB as usize);
    let mut reader = Cursor::new(&gz);
    let (result, _) = unpack_with(&fx, &mut reader, Compression::Gzip, small_limits(10 * MIB));
    assert_unsafe(
        result,
        &[
            "more than 10485760 bytes",
            "\"bomb\"",
            "raise --max-extract-size",
        ],
    );
    assert_eq!(disk_bytes(&fx.dest), 0);
    assert!(
        reader.position() < gz.len() as u64 / 4,
        "read too far into the bomb"
    );
    assert_contained(&fx);
}

#[test]
fn gzip_bomb_of_many_files_stops_at_the_limit() {
    let fx = fixture();
    let zeros = gzip_zeros(MIB);
    let mut gz = Vec::new();
    for i in 0..1024 {
        let name = format!("f{i:04}");
        let header = raw_header(name.as_bytes(), EntryType::Regular, 0o644, b"", MIB);
        gz.extend(gzip(header.as_bytes()));
        gz.extend_from_slice(&zeros);
    }
    gz.extend(gzip(&[0; 1024]));
    let mut reader = Cursor::new(&gz);
    let (result, listing) =
        unpack_with(&fx, &mut reader, Compression::Gzip, small_limits(10 * MIB));
    assert_unsafe(result, &["more than 10485760 bytes", "\"f0010\""]);
    assert_eq!(listing.len(), 10);
    assert!(disk_bytes(&fx.dest) <= 10 * MIB);
    assert!(
        reader.position() < gz.len() as u64 / 4,
        "read too far into the bomb"
    );
    assert_contained(&fx);
}

#[test]
fn long_name_bomb_is_stopped() {
    let fx = fixture();
    let header = raw_header(
        b"././@LongLink",
        EntryType::GNULongName,
        0o644,
        b"",
        1024 * MIB,
    );
    let gz = zero_bomb(&header, MIB, 1024);
    let mut reader = Cursor::new(&gz);
    let (result, _) = unpack_with(
        &fx,
        &mut reader,
        Compression::Gzip,
        ExtractLimits::default(),
    );
    assert_unsafe(result, &["long-name or pax headers"]);
    assert!(
        reader.position() < gz.len() as u64 / 4,
        "read too far into the bomb"
    );
    assert_contained(&fx);
}

#[test]
fn stream_larger_than_its_entries_is_refused() {
    let fx = fixture();
    let filler = vec![b'x'; 700 * 1024];
    let mut tar = RawTar::default();
    for i in 0..4 {
        tar.pax(EntryType::XHeader, "comment", &filler)
            .file(&format!("f{i}"), b"1", 0o644);
    }
    let (result, listing) = unpack_with(
        &fx,
        &mut Cursor::new(gzip(&tar.finish())),
        Compression::Gzip,
        small_limits(64 * 1024),
    );
    assert_unsafe(
        result,
        &["more than 65536 bytes", "raise --max-extract-size"],
    );
    assert!(listing.len() < 4);
    assert_contained(&fx);
}

#[test]
fn too_many_entries_are_refused() {
    let fx = fixture();
    let mut tar = RawTar::default();
    for i in 0..10 {
        tar.file(&format!("f{i}"), b"x", 0o644);
    }
    let limits = ExtractLimits {
        max_bytes: DEFAULT_MAX_BYTES,
        max_entries: 5,
    };
    let (result, listing) = unpack_with(
        &fx,
        &mut Cursor::new(gzip(&tar.finish())),
        Compression::Gzip,
        limits,
    );
    let msg = assert_unsafe(result, &[]);
    assert_eq!(
        msg,
        "archive has more than 5 entries; raise --max-entries if this is expected"
    );
    assert_eq!(listing.len(), 5);
    assert_eq!(fs::read_dir(&fx.dest).unwrap().count(), 5);
    assert_contained(&fx);
}

#[test]
fn corrupt_gzip_is_bad_content() {
    let mut tar = RawTar::default();
    tar.file("a", &vec![7u8; 100_000], 0o644)
        .file("b", b"b", 0o644);
    let good = gzip(&tar.finish());

    let fx = fixture();
    let mut junk = Cursor::new(b"this is not gzip data at all".to_vec());
    let (result, _) = unpack_with(&fx, &mut junk, Compression::Gzip, ExtractLimits::default());
    assert_bad_content(result);

    let fx = fixture();
    let mut flipped = good.clone();
    for byte in &mut flipped[20..60] {
        *byte ^= 0x5a;
    }
    let (result, _) = unpack_with(
        &fx,
        &mut Cursor::new(flipped),
        Compression::Gzip,
        ExtractLimits::default(),
    );
    assert_bad_content(result);

    let fx = fixture();
    let truncated = good[..good.len() / 2].to_vec();
    let (result, _) = unpack_with(
        &fx,
        &mut Cursor::new(truncated),
        Compression::Gzip,
        ExtractLimits::default(),
    );
    assert_bad_content(result);
}

#[test]
fn corrupt_tar_header_is_bad_content() {
    let mut tar = RawTar::default();
    tar.file("a", b"a", 0o644);
    let mut bytes = tar.finish();
    bytes[0] = b'b'; // name changed, checksum not
    let fx = fixture();
    let (result, _) = unpack_with(
        &fx,
        &mut Cursor::new(gzip(&bytes)),
        Compression::Gzip,
        ExtractLimits::default(),
    );
    assert_bad_content(result);
}
