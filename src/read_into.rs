//! Writers that let a reader fill their own buffer, so file contents reach
//! the compressor's block without a copy through an intermediate buffer
//! (the hashing writer's part is beside it, in [`crate::oci::digest`]).

use std::io::{self, Write};

/// One read into the room it is given, returning the bytes it put there
/// (at most the room's length).
pub type ReadFn<'a> = dyn FnMut(&mut [u8]) -> io::Result<usize> + 'a;

/// A writer that can take bytes read straight into its own buffer.
pub trait ReadInto: Write {
    /// Calls `read` once, with free room in this writer's buffer where it
    /// has one (else in `scratch`, which is then written on), and takes the
    /// bytes it reports. Returns their count; an error from `read` is
    /// returned as it is, with nothing taken.
    fn read_into(&mut self, scratch: &mut [u8], read: &mut ReadFn<'_>) -> io::Result<usize>;
}

/// Reads into `scratch`, then writes what was read to `out`: for writers
/// without a buffer of their own to lend.
pub fn read_then_write<W: Write + ?Sized>(
    out: &mut W,
    scratch: &mut [u8],
    read: &mut ReadFn<'_>,
) -> io::Result<usize> {
    let n = read(scratch)?;
    out.write_all(&scratch[..n])?;
    Ok(n)
}

/// Any writer, taking reads through the caller's scratch buffer: for tests.
#[cfg(test)]
pub(crate) struct Plain<W: Write>(pub W);

#[cfg(test)]
impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
impl<W: Write> ReadInto for Plain<W> {
    fn read_into(&mut self, scratch: &mut [u8], read: &mut ReadFn<'_>) -> io::Result<usize> {
        read_then_write(self, scratch, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::HashingWriter;

    #[test]
    fn hashing_writer_hashes_what_was_read_into_it() {
        let data = b"the quick brown fox jumps over the lazy dog".repeat(50);
        let mut via_read = HashingWriter::new(Plain(Vec::new()));
        let mut scratch = [0u8; 7];
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            let n = via_read
                .read_into(&mut scratch, &mut |room: &mut [u8]| {
                    let n = room.len().min(rest.len());
                    room[..n].copy_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    Ok(n)
                })
                .unwrap();
            assert!(n > 0 && n <= 7);
        }
        let mut via_write = HashingWriter::new(Plain(Vec::new()));
        via_write.write_all(&data).unwrap();
        let (read_out, read_digest, read_count) = via_read.finish();
        let (write_out, write_digest, write_count) = via_write.finish();
        assert_eq!(read_out.0, data);
        assert_eq!(write_out.0, data);
        assert_eq!(read_digest, write_digest);
        assert_eq!(
            (read_count, write_count),
            (data.len() as u64, data.len() as u64)
        );
    }

    #[test]
    fn a_failed_read_takes_nothing() {
        let mut w = HashingWriter::new(Plain(Vec::new()));
        w.write_all(b"abc").unwrap();
        let mut scratch = [0u8; 4];
        let err = w
            .read_into(&mut scratch, &mut |room: &mut [u8]| {
                room[0] = b'x';
                Err(io::Error::other("gone"))
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "gone");
        let (out, digest, count) = w.finish();
        let mut plain = HashingWriter::new(Plain(Vec::new()));
        plain.write_all(b"abc").unwrap();
        assert_eq!(
            (out.0, digest, count),
            (b"abc".to_vec(), plain.finish().1, 3)
        );
    }
}
