//! Setting every time in a tar stream to one value, as
//! go-containerregistry's `mutate.Time` (what Shipwright's
//! `--image-timestamp` runs) does to each layer: every header's mtime, and
//! the access and change times where a header carries them (GNU headers,
//! PAX records). Everything else passes through block for block: names,
//! owners, modes, long-name entries, entry data.
//!
//! The stream is rewritten one 512-byte block at a time; only PAX headers
//! (bounded by [`MAX_PAX_BYTES`]) are held whole.

use std::io::{self, Read, Write};

use crate::error::{Error, Result};

const BLOCK: usize = 512;

/// The largest PAX header accepted; real ones are a few hundred bytes.
pub const MAX_PAX_BYTES: u64 = 1 << 20;

/// Offsets of the header fields rewritten here.
const MTIME: std::ops::Range<usize> = 136..148;
const CHECKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const MAGIC: std::ops::Range<usize> = 257..265;
const GNU_ATIME: std::ops::Range<usize> = 345..357;
const GNU_CTIME: std::ops::Range<usize> = 357..369;
/// Set in a GNU sparse header when extension blocks follow it.
const GNU_SPARSE_EXTENDED: usize = 482;
/// Set in a sparse extension block when another follows it.
const SPARSE_EXTENSION_MORE: usize = 504;

/// The magic and version of a GNU header.
const GNU_MAGIC: &[u8] = b"ustar  \0";

/// PAX record keys that hold times.
const PAX_TIMES: [&str; 3] = ["mtime", "atime", "ctime"];

/// Copies the tar stream `input` to `output` with every time set to
/// `secs`, ending it with the two zero blocks of a tar's end; whatever
/// follows the end in `input` is read and dropped. Returns the bytes written.
pub fn retime_tar(input: &mut dyn Read, output: &mut dyn Write, secs: u64) -> Result<u64> {
    let mut written = 0u64;
    let mut block = [0u8; BLOCK];
    let mut entry = 0u64;
    // The size a PAX header gave for the next entry, which wins over the
    // size in that entry's own header (files of 8 GiB and more).
    let mut pax_size = None;
    loop {
        if !read_block(input, &mut block)? || block.iter().all(|&b| b == 0) {
            break;
        }
        entry += 1;
        check_header(&block, entry)?;
        let typeflag = block[TYPEFLAG];
        let size = data_size(&block, entry)?;
        if matches!(typeflag, b'x' | b'g') {
            let records = read_pax(input, size, entry)?;
            let (records, size) = retime_pax(&records, secs, entry)?;
            if typeflag == b'x' {
                pax_size = size;
            }
            set_octal(&mut block[124..136], records.len() as u64, entry)?;
            written += write_header(output, &mut block, secs)?;
            output.write_all(&records).map_err(write_error)?;
            written += records.len() as u64;
            written += pad(output, records.len() as u64)?;
            continue;
        }
        let size = match typeflag {
            // GNU long names and links belong to the entry after them.
            b'L' | b'K' => size,
            _ if is_header_only(typeflag) => {
                pax_size = None;
                0
            }
            _ => pax_size.take().unwrap_or(size),
        };
        written += write_header(output, &mut block, secs)?;
        if typeflag == b'S' && block[GNU_SPARSE_EXTENDED] != 0 {
            written += copy_sparse_extensions(input, output, entry)?;
        }
        written += copy_data(input, output, size, entry)?;
    }
    output.write_all(&[0u8; 2 * BLOCK]).map_err(write_error)?;
    io::copy(input, &mut io::sink()).map_err(read_error)?;
    Ok(written + 2 * BLOCK as u64)
}

/// Entries that are a header only (links, devices, directories, FIFOs):
/// they carry no data whatever their size says, as Go's tar reader reads them.
fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1'..=b'6')
}

/// Copies the extension blocks that follow a GNU sparse header, each
/// saying whether another follows.
fn copy_sparse_extensions(input: &mut dyn Read, output: &mut dyn Write, entry: u64) -> Result<u64> {
    let mut block = [0u8; BLOCK];
    let mut written = 0;
    loop {
        if !read_block(input, &mut block)? {
            return Err(not_tar(&format!(
                "sparse entry {entry} is cut short in its extension headers"
            )));
        }
        output.write_all(&block).map_err(write_error)?;
        written += BLOCK as u64;
        if block[SPARSE_EXTENSION_MORE] == 0 {
            return Ok(written);
        }
    }
}

/// Sets the header's times, recomputes its checksum and writes it.
fn write_header(output: &mut dyn Write, block: &mut [u8; BLOCK], secs: u64) -> Result<u64> {
    set_octal(&mut block[MTIME], secs, 0)?;
    if &block[MAGIC] == GNU_MAGIC {
        set_octal(&mut block[GNU_ATIME], secs, 0)?;
        set_octal(&mut block[GNU_CTIME], secs, 0)?;
    }
    let sum = checksum(block);
    block[CHECKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    output.write_all(block).map_err(write_error)?;
    Ok(BLOCK as u64)
}

/// Reads one block; false at the end of the stream before a block began.
fn read_block(input: &mut dyn Read, block: &mut [u8; BLOCK]) -> Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(not_tar("the stream ends inside a header block")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(true)
}

/// The header's checksum: its bytes summed with the checksum field as spaces.
fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if CHECKSUM.contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn check_header(block: &[u8; BLOCK], entry: u64) -> Result<()> {
    let stored = parse_octal(&block[CHECKSUM]);
    if stored != Some(checksum(block)) {
        return Err(not_tar(&format!(
            "header {entry} has a bad checksum (this is not a tar stream, or it is damaged)"
        )));
    }
    Ok(())
}

/// The size field of a header.
fn data_size(block: &[u8; BLOCK], entry: u64) -> Result<u64> {
    let field = &block[124..136];
    if field[0] & 0x80 != 0 {
        // Base-256: a big-endian number in the remaining bytes.
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |n, &b| {
                n.checked_mul(256)
                    .map(|n| n + u64::from(b))
                    .ok_or_else(|| not_tar(&format!("header {entry} has an impossible size")))
            });
    }
    parse_octal(field).ok_or_else(|| not_tar(&format!("header {entry} has an unreadable size")))
}

/// A NUL- or space-terminated octal number, leading spaces allowed.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Writes `value` as zero-padded octal ending in NUL; a value too large
/// for the field is an error.
fn set_octal(field: &mut [u8], value: u64, entry: u64) -> Result<()> {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}\0");
    if text.len() != field.len() {
        return Err(Error::Usage(format!(
            "the time or size {value} does not fit a tar header (entry {entry})"
        )));
    }
    field.copy_from_slice(text.as_bytes());
    Ok(())
}

fn read_pax(input: &mut dyn Read, size: u64, entry: u64) -> Result<Vec<u8>> {
    if size > MAX_PAX_BYTES {
        return Err(not_tar(&format!(
            "PAX header {entry} holds {size} bytes, more than the {MAX_PAX_BYTES} accepted"
        )));
    }
    let mut records = vec![0u8; size as usize];
    input
        .read_exact(&mut records)
        .map_err(|_| not_tar(&format!("PAX header {entry} is cut short")))?;
    skip_padding(input, size)?;
    Ok(records)
}

/// PAX records (`LEN key=value\n`) with the time keys set to `secs`, and
/// the `size` they give, if any.
fn retime_pax(records: &[u8], secs: u64, entry: u64) -> Result<(Vec<u8>, Option<u64>)> {
    let bad = || not_tar(&format!("PAX header {entry} has a malformed record"));
    let mut out = Vec::with_capacity(records.len());
    let mut size = None;
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|&l| l > space && l <= rest.len())
            .ok_or_else(bad)?;
        let record = &rest[..len];
        let key_end = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let key = &record[space + 1..key_end];
        if key == b"size" {
            let value = record[key_end + 1..].strip_suffix(b"\n").ok_or_else(bad)?;
            size = Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(bad)?,
            );
        }
        match PAX_TIMES.iter().find(|t| t.as_bytes() == key) {
            Some(key) => out.extend_from_slice(&pax_record(key, &secs.to_string())),
            None => out.extend_from_slice(record),
        }
        rest = &rest[len..];
    }
    Ok((out, size))
}

/// One PAX record, its length counting its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}").into_bytes()
}

fn copy_data(input: &mut dyn Read, output: &mut dyn Write, size: u64, entry: u64) -> Result<u64> {
    let copied = io::copy(&mut input.take(size), output).map_err(read_error)?;
    if copied != size {
        return Err(not_tar(&format!(
            "entry {entry} is cut short: {copied} of its {size} bytes"
        )));
    }
    skip_padding(input, size)?;
    Ok(copied + pad(output, size)?)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Skips the padding after an entry's data. A stream that ends there
/// instead (some writers leave off the padding and the end blocks after the
/// last entry) is accepted: the output gets both.
fn skip_padding(input: &mut dyn Read, size: u64) -> Result<()> {
    io::copy(&mut input.take(padding(size)), &mut io::sink()).map_err(read_error)?;
    Ok(())
}

fn pad(output: &mut dyn Write, size: u64) -> Result<u64> {
    let n = padding(size);
    output
        .write_all(&[0u8; BLOCK][..n as usize])
        .map_err(write_error)?;
    Ok(n)
}

fn not_tar(what: &str) -> Error {
    Error::BadContent(format!("the layer is not a valid tar: {what}"))
}

fn read_error(e: io::Error) -> Error {
    Error::BadContent(format!("reading the layer: {e}"))
}

fn write_error(e: io::Error) -> Error {
    Error::Internal(format!("writing the re-timed layer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(format: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = match format {
            "gnu" => tar::Header::new_gnu(),
            _ => tar::Header::new_ustar(),
        };
        h.set_path("dir/file.txt").unwrap();
        h.set_size(5);
        h.set_mode(0o640);
        h.set_uid(1001);
        h.set_mtime(1_600_000_000);
        if let Some(gnu) = h.as_gnu_mut() {
            gnu.set_atime(1_600_000_001);
            gnu.set_ctime(1_600_000_002);
        }
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mtime(1_500_000_000);
        link.set_mode(0o777);
        b.append_link(&mut link, "a/very/".repeat(30) + "long", "dir/file.txt")
            .unwrap();
        b.into_inner().unwrap()
    }

    fn retimed(input: &[u8], secs: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = retime_tar(&mut &input[..], &mut out, secs).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn every_time_is_set_and_the_rest_kept() {
        for format in ["gnu", "ustar"] {
            let out = retimed(&sample(format), 1_700_000_000);
            let mut archive = tar::Archive::new(&out[..]);
            let mut seen = Vec::new();
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let h = entry.header().clone();
                assert_eq!(h.mtime().unwrap(), 1_700_000_000, "{format}");
                if let Some(gnu) = h.as_gnu() {
                    assert_eq!(gnu.atime().unwrap(), 1_700_000_000);
                    assert_eq!(gnu.ctime().unwrap(), 1_700_000_000);
                }
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                seen.push((
                    entry.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    data,
                ));
            }
            assert_eq!(
                seen[0],
                ("dir/file.txt".to_string(), 0o640, b"hello".to_vec())
            );
            assert!(
                seen[1].0.ends_with("/long"),
                "the long name survives: {}",
                seen[1].0
            );
        }
    }

    #[test]
    fn pax_times_are_rewritten_and_other_records_kept() {
        let mut records = pax_record("path", "x/y");
        records.extend(pax_record("mtime", "1600000000.123456789"));
        records.extend(pax_record("SCHILY.xattr.user.k", "v"));
        records.extend(pax_record("atime", "1"));
        let mut b = tar::Builder::new(Vec::new());
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(records.len() as u64);
        x.set_cksum();
        b.append(&x, &records[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("short").unwrap();
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"ok"[..]).unwrap();
        let out = retimed(&b.into_inner().unwrap(), 42);
        let mut archive = tar::Archive::new(&out[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("x/y"));
        let pax: Vec<(String, String)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key().unwrap().to_string(), r.value().unwrap().to_string())
            })
            .collect();
        assert!(pax.contains(&("mtime".into(), "42".into())), "{pax:?}");
        assert!(pax.contains(&("atime".into(), "42".into())), "{pax:?}");
        assert!(pax.contains(&("SCHILY.xattr.user.k".into(), "v".into())));
        let mut data = String::new();
        entry.read_to_string(&mut data).unwrap();
        assert_eq!(data, "ok");
    }

    #[test]
    fn a_pax_size_decides_the_next_entrys_data() {
        // The header says 0 bytes, the PAX record 700: the data is 700.
        let data = vec![b'z'; 700];
        let records = pax_record("size", "700");
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(records.len() as u64);
        x.set_cksum();
        let mut raw = x.as_bytes().to_vec();
        raw.extend_from_slice(&records);
        raw.resize(2 * BLOCK, 0);
        let mut h = tar::Header::new_ustar();
        h.set_path("big").unwrap();
        h.set_size(0);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&data);
        raw.resize(raw.len().div_ceil(BLOCK) * BLOCK, 0);
        let mut after = tar::Header::new_ustar();
        after.set_path("after").unwrap();
        after.set_size(0);
        after.set_cksum();
        raw.extend_from_slice(after.as_bytes());
        let out = retimed(&raw, 5);
        let mut archive = tar::Archive::new(&out[..]);
        let mut entries = archive.entries().unwrap();
        let mut big = entries.next().unwrap().unwrap();
        let mut read = Vec::new();
        big.read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
        drop(big);
        let after = entries.next().unwrap().unwrap();
        assert_eq!(after.path().unwrap().to_str(), Some("after"));
        assert_eq!(after.header().mtime().unwrap(), 5);
    }

    #[test]
    fn gnu_sparse_extension_blocks_pass_through() {
        let mut h = tar::Header::new_gnu();
        h.set_path("s").unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(BLOCK as u64);
        h.set_mode(0o644);
        let mut header = [0u8; BLOCK];
        header.copy_from_slice(h.as_bytes());
        header[GNU_SPARSE_EXTENDED] = 1;
        let sum = checksum(&header);
        header[CHECKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut extension = [0u8; BLOCK];
        extension[..4].copy_from_slice(b"0001");
        let mut raw = header.to_vec();
        raw.extend_from_slice(&extension);
        raw.extend_from_slice(&[b'd'; BLOCK]);
        let out = retimed(&raw, 3);
        assert_eq!(out.len(), 5 * BLOCK, "header, extension, data, end");
        assert_eq!(&out[BLOCK..2 * BLOCK], &extension[..]);
        assert_eq!(&out[2 * BLOCK..3 * BLOCK], &[b'd'; BLOCK][..]);
    }

    #[test]
    fn record_lengths_count_their_own_digits() {
        for value in ["1", "123456789", &"9".repeat(95)] {
            let r = pax_record("mtime", value);
            let text = String::from_utf8(r.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{text:?}");
        }
    }

    #[test]
    fn the_same_input_gives_the_same_output() {
        let input = sample("gnu");
        assert_eq!(retimed(&input, 7), retimed(&input, 7));
        assert_ne!(retimed(&input, 7), retimed(&input, 8));
    }

    #[test]
    fn what_is_not_a_tar_is_refused() {
        let mut out = Vec::new();
        let json = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#.repeat(20);
        let e = retime_tar(&mut &json[..], &mut out, 1).unwrap_err();
        assert!(e.to_string().contains("not a valid tar"), "{e}");
        let mut cut = sample("gnu");
        cut.truncate(BLOCK + 3);
        let e = retime_tar(&mut &cut[..], &mut out, 1).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        cut.truncate(BLOCK - 10);
        let e = retime_tar(&mut &cut[..], &mut out, 1).unwrap_err();
        assert!(e.to_string().contains("inside a header"), "{e}");
    }

    #[test]
    fn a_stream_without_padding_or_end_blocks_is_completed() {
        let whole = sample("ustar");
        let bare = &whole[..BLOCK + 5];
        let out = retimed(bare, 9);
        assert_eq!(
            out.len(),
            2 * BLOCK + 2 * BLOCK,
            "padded, with the end blocks"
        );
        let mut archive = tar::Archive::new(&out[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert_eq!(data, b"hello");
    }
}
