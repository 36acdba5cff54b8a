//! The compressing stage of the layer writer: gzip on parallel threads,
//! zstd in libzstd's multi-threaded mode, or no compression, each giving
//! the same bytes whatever the number of threads.

use std::io::{self, Write};

use crate::compress::pargz::ParallelGzWriter;
use crate::compress::Compression;
use crate::read_into::{read_then_write, ReadFn, ReadInto};

/// Most zstd worker threads used. More threads do not change the output
/// (libzstd cuts the input into jobs by the level's window size, not by the
/// thread count), only the memory used.
const MAX_ZSTD_WORKERS: usize = 8;

/// Most bytes handed to libzstd at once. Larger pieces let its
/// multi-threaded mode start more jobs at the same time, each with buffers
/// of its own, so small pieces keep a push's memory bounded.
const ZSTD_WRITE: usize = 8 * 1024;

/// The compressing stage of the writer stack.
pub enum Encoder<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip on parallel threads.
    Gzip(ParallelGzWriter<W>),
    /// zstd in libzstd's multi-threaded mode.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder for `compression` at `level` (already validated) using up
    /// to `threads` threads.
    pub fn new(inner: W, compression: Compression, level: u32, threads: usize) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(inner),
            Compression::Gzip => Encoder::Gzip(ParallelGzWriter::new(inner, level, threads)?),
            Compression::Zstd => {
                let level = i32::try_from(level).map_err(io::Error::other)?;
                let mut zstd = zstd::stream::write::Encoder::new(inner, level)?;
                zstd.include_checksum(true)?;
                zstd.include_contentsize(false)?;
                // Always multi-threaded, even with one thread: libzstd's
                // single-threaded mode gives other bytes.
                let workers = threads.clamp(1, MAX_ZSTD_WORKERS) as u32;
                zstd.multithread(workers)?;
                Encoder::Zstd(zstd)
            }
        })
    }

    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> ReadInto for Encoder<W> {
    /// Gzip takes reads straight into its block; the others through `scratch`.
    fn read_into(&mut self, scratch: &mut [u8], read: &mut ReadFn<'_>) -> io::Result<usize> {
        match self {
            Encoder::Gzip(w) => w.read_into(scratch, read),
            other => read_then_write(other, scratch, read),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(&buf[..buf.len().min(ZSTD_WRITE)]),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            // A zstd flush ends a block early, which would change the
            // output; the tar writer never needs one.
            Encoder::Zstd(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::archive::pack::tests::{pack_dir, put, sample_tree, tar_listing};
    use crate::archive::pack::*;
    use crate::archive::walk::{walk, WalkOptions};
    use std::fs;
    use std::os::fd::AsFd;

    fn zstd_opts(level: u32) -> PackOptions {
        PackOptions {
            mtime: 0,
            compression: Compression::Zstd,
            compression_level: level,
        }
    }

    /// The layer bytes of `entries` packed with zstd on `threads` threads.
    fn zstd_bytes(tree: &SourceTree, level: u32, threads: usize) -> (Vec<u8>, Written) {
        let mut out = Vec::new();
        let source = Source {
            root: tree.root.as_fd(),
            entries: &tree.entries,
        };
        let written = write_layer_with(
            source,
            0,
            Compression::Zstd,
            level,
            threads,
            &mut out,
            &mut |_| {},
        )
        .unwrap();
        (out, written)
    }

    #[test]
    fn zstd_known_digest() {
        // Pinned like the gzip one: a libzstd update that changes the bytes
        // must be a deliberate decision (it also invalidates fingerprints,
        // which include the libzstd version).
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let layer = pack_dir(dir.path(), &zstd_opts(3));
        assert_eq!(
            layer.diff_id.as_str(),
            "sha256:2bbea6dd4d978b740e7d7e2800d9cacedfe07beb3f8bd40e356ae3fe2fad3900",
            "same tar as with gzip"
        );
        assert_eq!(
            layer.digest.as_str(),
            "sha256:738dfdc6773266b2a042e8728707a2cf0eb7099a988bd8e1227938eed91c8331"
        );
    }

    #[test]
    fn zstd_output_is_independent_of_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        // Enough data for several libzstd jobs at levels 1 and 3 (jobs are
        // four windows: 2 MiB and 8 MiB), not all of it compressible.
        let mut content = Vec::with_capacity(20 << 20);
        let mut x: u32 = 1;
        while content.len() < 20 << 20 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let run = (x >> 24) as usize % 64 + 1;
            content.extend(std::iter::repeat_n((x >> 16) as u8, run));
            content.extend_from_slice(&x.to_le_bytes());
        }
        put(dir.path(), "big", &content, 0o644);
        sample_tree(&dir.path().join("t"));
        let entries = walk(dir.path(), &WalkOptions::default(), &mut |_| {}).unwrap();
        for level in [1, 3] {
            let (one, w1) = zstd_bytes(&entries, level, 1);
            let (four, w4) = zstd_bytes(&entries, level, 4);
            assert!(one == four, "level {level}: 1 and 4 threads differ");
            assert_eq!(w1.digest, w4.digest);
            assert_eq!(w1.diff_id, w4.diff_id);
            if level == 3 {
                let (two, _) = zstd_bytes(&entries, level, 2);
                assert!(one == two, "1 and 2 threads differ");
            }
        }
    }

    #[test]
    fn zstd_layer_round_trips_and_zstd_cli_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let layer = pack_dir(dir.path(), &zstd_opts(19));
        let bytes = fs::read(layer.file.path()).unwrap();
        assert_eq!(
            bytes[..4],
            crate::compress::decompress::ZSTD_MAGIC,
            "zstd magic"
        );
        assert_eq!(Digest::of(&bytes), layer.digest);
        assert_eq!(bytes.len() as u64, layer.size);
        let tar = zstd::decode_all(&bytes[..]).unwrap();
        assert_eq!(Digest::of(&tar), layer.diff_id);
        assert_eq!(tar.len() as u64, layer.uncompressed_size);
        let listing = tar_listing(&["--zstd", "-tf"], layer.file.path());
        assert_eq!(
            listing.lines().collect::<Vec<_>>(),
            ["a.txt", "bin/", "bin/run.sh", "empty/", "link"]
        );
    }

    #[test]
    fn zstd_level_changes_the_bytes_not_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        put(
            dir.path(),
            "text",
            "lorem ipsum dolor ".repeat(50_000).as_bytes(),
            0o644,
        );
        let fast = pack_dir(dir.path(), &zstd_opts(1));
        let small = pack_dir(dir.path(), &zstd_opts(19));
        let gzip = pack_dir(dir.path(), &PackOptions::default());
        assert_eq!(fast.diff_id, small.diff_id);
        assert_eq!(fast.diff_id, gzip.diff_id);
        assert_ne!(fast.digest, small.digest);
        assert!(small.size <= fast.size);
    }
}
