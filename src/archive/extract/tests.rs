//! Tests of [`unpack`] as a whole, on archives written byte by byte, and
//! the helpers they share. The tests are grouped by theme: refusals of
//! unsafe entries, limits and corrupt streams, and what gets written.

mod bombs;
mod safety;
mod writing;

use super::*;
use std::io::{Cursor, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use flate2::write::GzEncoder;

const MTIME: u64 = 1_700_000_000;
const MIB: u64 = 1024 * 1024;

/// Writes tar archives byte by byte, so hostile names the `tar` builder
/// would refuse can be written as-is.
#[derive(Default)]
struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    fn entry(
        &mut self,
        name: &[u8],
        ty: EntryType,
        mode: u32,
        link: &[u8],
        data: &[u8],
    ) -> &mut Self {
        let header = raw_header(name, ty, mode, link, data.len() as u64);
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(data);
        self.out.extend(padding(data.len() as u64));
        self
    }
    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Regular, mode, b"", data)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Directory, 0o755, b"", b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            target.as_bytes(),
            b"",
        )
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            target.as_bytes(),
            b"",
        )
    }
    fn long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(b"././@LongLink", EntryType::GNULongName, 0o644, b"", &data)
    }
    fn pax(&mut self, ty: EntryType, key: &str, value: &[u8]) -> &mut Self {
        self.entry(b"pax_header", ty, 0o644, b"", &pax_record(key, value))
    }
    fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

fn raw_header(name: &[u8], ty: EntryType, mode: u32, link: &[u8], size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let old = header.as_old_mut();
    old.name[..name.len()].copy_from_slice(name);
    old.linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(ty);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    if let Some(gnu) = header.as_gnu_mut() {
        gnu.set_real_size(size);
    }
    header.set_cksum();
    header
}

fn padding(len: u64) -> Vec<u8> {
    vec![0; ((512 - len % 512) % 512) as usize]
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    assert_eq!(record.len(), len);
    record
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A gzip member that expands to `len` zero bytes.
fn gzip_zeros(len: u64) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    io::copy(&mut io::repeat(0).take(len), &mut encoder).unwrap();
    encoder.finish().unwrap()
}

/// A parent directory holding only the empty target `dest`, so anything
/// written beside the target shows up.
struct Fixture {
    parent: tempfile::TempDir,
    dest: PathBuf,
}

fn fixture() -> Fixture {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    fs::create_dir(&dest).unwrap();
    Fixture { parent, dest }
}

type Listing = Vec<(String, EntryKind, u64, u32)>;

fn unpack_with(
    fx: &Fixture,
    reader: &mut dyn Read,
    compression: Compression,
    limits: ExtractLimits,
) -> (Result<ExtractStats>, Listing) {
    let mut listing = Vec::new();
    let result = unpack(reader, compression, &fx.dest, &limits, &mut |e| {
        listing.push((e.path.to_string(), e.kind, e.size, e.mode))
    });
    (result, listing)
}

fn unpack_tar(fx: &Fixture, tar: &RawTar) -> (Result<ExtractStats>, Listing) {
    let gz = gzip(&tar.finish());
    unpack_with(
        fx,
        &mut Cursor::new(gz),
        Compression::Gzip,
        ExtractLimits::default(),
    )
}

#[track_caller]
fn assert_unsafe(result: Result<ExtractStats>, needles: &[&str]) -> String {
    match result {
        Err(Error::UnsafeArchive(msg)) => {
            for needle in needles {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            }
            msg
        }
        other => panic!("expected UnsafeArchive, got {other:?}"),
    }
}

#[track_caller]
fn assert_contained(fx: &Fixture) {
    let names: Vec<_> = fs::read_dir(fx.parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["dest"], "something was written beside the target");
}

/// Bytes of regular file content under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                disk_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn mtime_of(path: &Path) -> SystemTime {
    fs::symlink_metadata(path).unwrap().modified().unwrap()
}

#[track_caller]
fn assert_bad_content(result: Result<ExtractStats>) {
    match result {
        Err(Error::BadContent(msg)) => {
            assert!(
                msg.starts_with("layer is not a valid tar+gzip stream: "),
                "{msg}"
            )
        }
        other => panic!("expected BadContent, got {other:?}"),
    }
}
