//! One gzip member (RFC 1952) as ocistep writes it: a fixed header whose
//! extra field records the member's total size, the raw deflate data, then
//! CRC-32 and length.
//!
//! A layer is a series of such members, each holding at most one block of
//! the tar stream. Any gzip reader reads all of them in turn (GNU gzip,
//! Go's `compress/gzip`, Python, pigz; in Rust, `MultiGzDecoder`). The size
//! in the header lets ocistep's own reader cut the stream into members
//! without inflating it, and inflate them on several threads, as BGZF does.

use std::io;

/// The extra-field subfield that carries the member size ("OS", ocistep size).
pub const SIZE_SUBFIELD: [u8; 2] = *b"OS";

/// Header bytes: 10 fixed, 2 for the extra field's length, 4 for the
/// subfield's ID and length, 4 for the size.
pub const HEADER_LEN: usize = 20;

/// Trailer bytes: CRC-32 and uncompressed length.
pub const TRAILER_LEN: usize = 8;

/// The gzip OS byte for "unknown", so the output does not depend on the host.
const OS_UNKNOWN: u8 = 255;

/// The FLG byte: only FEXTRA.
const FLAG_EXTRA: u8 = 4;

/// Appends one member holding `data` to `out`. `deflate` appends the raw
/// deflate stream of `data` to the buffer it is given (`out` itself, so
/// the compressed bytes are never copied); the header's size is filled in
/// once it is known.
pub fn write(
    out: &mut Vec<u8>,
    data: &[u8],
    xfl: u8,
    deflate: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let too_large = || io::Error::other("gzip member larger than 4 GiB");
    let data_len = u32::try_from(data.len()).map_err(|_| too_large())?;
    let start = out.len();
    out.extend_from_slice(&[0x1f, 0x8b, 8, FLAG_EXTRA, 0, 0, 0, 0, xfl, OS_UNKNOWN]);
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&SIZE_SUBFIELD);
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    deflate(out)?;
    let size = u32::try_from(out.len() - start + TRAILER_LEN).map_err(|_| too_large())?;
    out[start + HEADER_LEN - 4..start + HEADER_LEN].copy_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&libdeflater::crc32(data).to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    Ok(())
}

/// The total size a member header written by [`write()`] records, or `None`
/// for any other gzip header (or bytes that are no gzip header at all).
pub fn recorded_size(header: &[u8]) -> Option<usize> {
    let header: &[u8; HEADER_LEN] = header.get(..HEADER_LEN)?.try_into().ok()?;
    let fixed = header[..4] == [0x1f, 0x8b, 8, FLAG_EXTRA];
    let extra = header[10..16] == [8, 0, SIZE_SUBFIELD[0], SIZE_SUBFIELD[1], 4, 0];
    let size = u32::from_le_bytes([header[16], header[17], header[18], header[19]]) as usize;
    (fixed && extra && size >= HEADER_LEN + TRAILER_LEN).then_some(size)
}

/// The CRC-32 and uncompressed length a member's trailer records.
pub fn trailer(member: &[u8]) -> Option<(u32, usize)> {
    let start = member.len().checked_sub(TRAILER_LEN)?;
    let t = &member[start..];
    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
    let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
    Some((crc, len))
}

/// Appends `data` as raw deflate stored blocks (the last one final) to
/// `out`: for data that would not get smaller.
pub fn store(out: &mut Vec<u8>, data: &[u8]) {
    const MAX_STORED: usize = 65_535;
    let mut chunks = data.chunks(MAX_STORED).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn member(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, data, 0, |out| {
            store(out, data);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn members_are_gzip_and_record_their_size() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut stream = Vec::new();
        for data in [&b""[..], b"hello", &big] {
            let one = member(data);
            assert_eq!(recorded_size(&one), Some(one.len()));
            assert_eq!(trailer(&one), Some((libdeflater::crc32(data), data.len())));
            stream.extend_from_slice(&one);
        }
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .unwrap();
        let expected: Vec<u8> = [&b"hello"[..], &big].concat();
        assert_eq!(back, expected);
    }

    #[test]
    fn other_headers_record_nothing() {
        let mut plain = Vec::new();
        let mut encoder = flate2::write::GzEncoder::new(&mut plain, flate2::Compression::fast());
        io::Write::write_all(&mut encoder, &[7u8; 100]).unwrap();
        encoder.finish().unwrap();
        assert_eq!(recorded_size(&plain), None);
        assert_eq!(recorded_size(b"short"), None);
        let mut ours = member(b"x");
        ours[16..20].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            recorded_size(&ours),
            None,
            "a size below header and trailer"
        );
    }
}
