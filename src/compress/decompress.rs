//! Choosing the decoder for a compressed tar layer.
//!
//! Every decoder reads all the members (gzip) or frames (zstd) of its input
//! and fails on anything else after them, so data appended to a layer is
//! refused rather than silently ignored.

use std::io::{self, Read};

use crate::compress::pargunzip::ParallelGzReader;
use crate::compress::Compression;

/// The four bytes every zstd frame starts with.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The largest zstd window accepted (log2): 128 MiB, libzstd's own default
/// limit. Frames that need more memory to decode are refused.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Wraps `reader` in the decoder for `compression`; also returns the name
/// of the format ("tar", "tar+gzip", "tar+zstd") for messages.
pub fn decoder<'a>(
    reader: impl Read + 'a,
    compression: Compression,
) -> (Box<dyn Read + 'a>, &'static str) {
    match compression {
        Compression::None => (Box::new(reader), "tar"),
        Compression::Gzip => (Box::new(ParallelGzReader::new(reader)), "tar+gzip"),
        Compression::Zstd => (zstd_decoder(reader), "tar+zstd"),
    }
}

/// A zstd decoder, or a reader that fails with the reason it could not be
/// made (libzstd could not allocate its context).
fn zstd_decoder<'a>(reader: impl Read + 'a) -> Box<dyn Read + 'a> {
    let made = zstd::stream::read::Decoder::new(reader).and_then(|mut d| {
        d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
        Ok(d)
    });
    match made {
        Ok(d) => Box::new(d),
        Err(e) => Box::new(Failing(Some(e))),
    }
}

/// A reader that returns one error, then end of stream.
struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], compression: Compression) -> io::Result<Vec<u8>> {
        let (mut r, _) = decoder(data, compression);
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn zstd_frames_decode_and_garbage_after_them_is_an_error() {
        let one = zstd::encode_all(&b"hello "[..], 3).unwrap();
        let two = zstd::encode_all(&b"world"[..], 19).unwrap();
        let both = [one.clone(), two].concat();
        assert_eq!(read_all(&both, Compression::Zstd).unwrap(), b"hello world");
        let mut junk = one.clone();
        junk.extend_from_slice(b"trailing garbage");
        assert!(read_all(&junk, Compression::Zstd).is_err());
        assert!(read_all(&one[..one.len() - 2], Compression::Zstd).is_err());
        assert!(read_all(b"not zstd at all", Compression::Zstd).is_err());
    }

    #[test]
    fn frames_needing_a_huge_window_are_refused() {
        // A frame whose header declares a 256 MiB window (Window_Descriptor
        // 0x90: exponent 18 -> 2^(10+18)), then one empty last raw block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x90, 0x01, 0x00, 0x00];
        // The same frame with a 128 MiB window (0x88) is fine.
        let mut ok = frame;
        ok[5] = 0x88;
        assert_eq!(read_all(&ok, Compression::Zstd).unwrap(), b"");
        let err = read_all(&frame, Compression::Zstd).unwrap_err();
        assert!(err.to_string().contains("too much memory"), "{err}");
    }

    #[test]
    fn names() {
        assert_eq!(decoder(&b""[..], Compression::None).1, "tar");
        assert_eq!(decoder(&b""[..], Compression::Gzip).1, "tar+gzip");
        assert_eq!(decoder(&b""[..], Compression::Zstd).1, "tar+zstd");
    }
}
