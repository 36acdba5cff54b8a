//! Writing bundle entries as one deterministic tar+gzip (or tar+zstd) layer.
//!
//! The layer is streamed into a temporary spool file in a single pass while
//! both digests are computed: the diff id over the uncompressed tar and the
//! layer digest over the compressed bytes. Nothing in the output depends on
//! the machine, the user or the time of packing: every header carries uid/gid
//! 0, no owner names, a fixed mtime and a mode derived only from the entry
//! kind and its execute bit; the gzip header has no name and mtime 0; zstd
//! always runs in libzstd's multi-threaded mode, whose output is the same for
//! any number of worker threads.

pub mod encoder;
mod source;
#[cfg(test)]
mod tests;

use std::io::{self, BufWriter, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use tar::{EntryType, Header};

use crate::archive::walk::{SourceEntry, SourceKind, SourceTree};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::oci::digest::{Digest, HashingWriter};
use crate::read_into::ReadInto;
use encoder::Encoder;
use source::{open_source, Seen, SourceOpener};

/// Buffer size of the spool file writer and of the file content reads.
const BUFFER_SIZE: usize = 256 * 1024;

/// Size of a tar block: every entry's content is padded to a multiple of it.
const TAR_BLOCK: u64 = 512;

/// The gzip level used when none is given.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Mode of directories in the archive.
const DIR_MODE: u32 = 0o755;
/// Mode of executable files in the archive.
const EXEC_MODE: u32 = 0o755;
/// Mode of other files in the archive.
const FILE_MODE: u32 = 0o644;
/// Mode of symlinks in the archive.
const LINK_MODE: u32 = 0o777;

/// How to pack a layer.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Modification time of every entry, in seconds since the epoch.
    pub mtime: u64,
    /// How the tar is compressed.
    pub compression: Compression,
    /// Compression level: 1 (fastest) to 9 (smallest) for gzip, to 19 for
    /// zstd; see [`Compression::level`].
    pub compression_level: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            mtime: 0,
            compression: Compression::Gzip,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// A packed layer spooled to a temporary file.
#[derive(Debug)]
pub struct PackedLayer {
    /// The spool file holding the compressed layer, positioned at its
    /// start; removed when dropped.
    pub file: tempfile::NamedTempFile,
    /// Digest of the compressed bytes (the layer digest).
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (the diff id).
    pub diff_id: Digest,
    /// Number of entries written.
    pub entries: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Writes the entries of `tree` (from [`walk`](crate::archive::walk::walk))
/// as a compressed tar into a new temporary file in `spool_dir`, in one
/// pass.
///
/// Entries are written in the order given; `on_event` hears of each one
/// written, then of the end of the tar stream. Files inside the tree are
/// opened beneath its root without following a symlink. A file that is not
/// the one the walk saw (another inode, a symlink or a directory in its
/// place, another size) is refused, since the layer would not match the
/// tree, or could hold what the tree does not.
pub fn pack(
    tree: &SourceTree,
    opts: &PackOptions,
    spool_dir: &Path,
    on_event: &mut dyn FnMut(PackEvent<'_>),
) -> Result<PackedLayer> {
    pack_teeing(tree, opts, spool_dir, on_event, &mut |_| {})
}

/// How far packing has got, for callers that act before it ends.
#[derive(Debug)]
pub enum PackEvent<'a> {
    /// This entry is in the tar stream.
    Appended(&'a SourceEntry),
    /// The tar stream is complete, with this digest (the layer's diff id);
    /// the compressor's last blocks are still to come.
    TarDone(&'a Digest),
}

/// Like [`pack`], and hands every run of compressed bytes to `tee` as it is
/// written to the spool file, so the layer can be uploaded while it is
/// being packed.
pub fn pack_teeing(
    tree: &SourceTree,
    opts: &PackOptions,
    spool_dir: &Path,
    on_event: &mut dyn FnMut(PackEvent<'_>),
    tee: &mut dyn FnMut(&[u8]),
) -> Result<PackedLayer> {
    let level = opts.compression.level(Some(opts.compression_level))?;
    let suffix = match opts.compression {
        Compression::None => ".tar",
        Compression::Gzip => ".tar.gz",
        Compression::Zstd => ".tar.zst",
    };
    let file = tempfile::Builder::new()
        .prefix(".ocistep-layer-")
        .suffix(suffix)
        .tempfile_in(spool_dir)
        .map_err(|e| Error::io("creating a spool file in", spool_dir, e))?;
    let sink = Tee {
        inner: BufWriter::with_capacity(BUFFER_SIZE, file.as_file()),
        tee,
    };
    let source = Source {
        root: tree.root.as_fd(),
        entries: &tree.entries,
    };
    let written = write_layer(source, opts.mtime, opts.compression, level, sink, on_event)
        .map_err(|e| e.at_spool(file.path()))?;
    file.as_file()
        .rewind()
        .map_err(|e| Error::io("rewinding spool file", file.path(), e))?;
    Ok(PackedLayer {
        digest: written.digest,
        size: written.size,
        diff_id: written.diff_id,
        entries: tree.entries.len() as u64,
        uncompressed_size: written.uncompressed_size,
        file,
    })
}

/// A writer that also shows what it writes to a callback.
struct Tee<'a, W: Write> {
    inner: W,
    tee: &'a mut dyn FnMut(&[u8]),
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.tee)(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The writer stack: tar, hashed for the diff id, compressed, hashed for
/// the layer digest, into the sink.
type LayerWriter<W> = tar::Builder<HashingWriter<Encoder<HashingWriter<W>>>>;

/// Digests and sizes of a written layer.
struct Written {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    uncompressed_size: u64,
}

/// A failure while writing a layer: either a problem with the source tree,
/// or an I/O error on the spool, whose path is only known to the caller.
#[derive(Debug)]
enum WriteError {
    Source(Error),
    Spool(io::Error),
}

impl WriteError {
    fn at_spool(self, spool: &Path) -> Error {
        match self {
            WriteError::Source(e) => e,
            WriteError::Spool(e) => Error::io("writing spool file", spool, e),
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Spool(e)
    }
}

/// What a layer is packed from: entries and the root their files are
/// opened beneath.
#[derive(Clone, Copy)]
struct Source<'a> {
    root: BorrowedFd<'a>,
    entries: &'a [SourceEntry],
}

/// Streams the compressed tar of `source` into `sink`, hashing both layers.
fn write_layer<W: Write>(
    source: Source<'_>,
    mtime: u64,
    compression: Compression,
    level: u32,
    sink: W,
    on_event: &mut dyn FnMut(PackEvent<'_>),
) -> Result<Written, WriteError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write_layer_with(source, mtime, compression, level, threads, sink, on_event)
}

/// [`write_layer`] on `threads` threads.
fn write_layer_with<W: Write>(
    source: Source<'_>,
    mtime: u64,
    compression: Compression,
    level: u32,
    threads: usize,
    sink: W,
    on_event: &mut dyn FnMut(PackEvent<'_>),
) -> Result<Written, WriteError> {
    let encoder = Encoder::new(HashingWriter::new(sink), compression, level, threads)?;
    let mut tar: LayerWriter<W> = tar::Builder::new(HashingWriter::new(encoder));
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut opener = SourceOpener::new(source.root);
    for entry in source.entries {
        append_entry(&mut tar, entry, mtime, &mut opener, &mut buffer)?;
        on_event(PackEvent::Appended(entry));
    }
    let (encoder, diff_id, uncompressed_size) = tar.into_inner()?.finish();
    on_event(PackEvent::TarDone(&diff_id));
    let (mut sink, digest, size) = encoder.finish()?.finish();
    sink.flush()?;
    Ok(Written {
        digest,
        size,
        diff_id,
        uncompressed_size,
    })
}

/// A header with every field the archive carries set to a fixed value.
fn header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Appends one entry to the archive.
fn append_entry<W: ReadInto>(
    tar: &mut tar::Builder<W>,
    entry: &SourceEntry,
    mtime: u64,
    opener: &mut SourceOpener,
    buffer: &mut [u8],
) -> Result<(), WriteError> {
    match &entry.kind {
        SourceKind::Dir => {
            let mut h = header(EntryType::Directory, DIR_MODE, 0, mtime);
            tar.append_data(&mut h, format!("{}/", entry.rel), io::empty())
                .map_err(|e| header_error(entry, e))?;
        }
        SourceKind::Symlink { target } => {
            let mut h = header(EntryType::Symlink, LINK_MODE, 0, mtime);
            tar.append_link(&mut h, &entry.rel, target)
                .map_err(|e| header_error(entry, e))?;
        }
        SourceKind::File {
            path,
            at,
            size,
            executable,
            stamp,
        } => {
            let mode = if *executable { EXEC_MODE } else { FILE_MODE };
            let mut h = header(EntryType::Regular, mode, *size, mtime);
            let seen = Seen {
                rel: &entry.rel,
                path,
                at,
                size: *size,
                stamp,
            };
            let mut content = open_source(&seen, opener, buffer)?;
            // The tar writer writes the header (after a long-name entry if
            // the name needs one) and no data; the content goes straight to
            // the layer in the buffer's large pieces rather than through the
            // tar writer's small copies, then the padding to the next block.
            tar.append_data(&mut h, &entry.rel, io::empty())
                .map_err(|e| header_error(entry, e))?;
            let out = tar.get_mut();
            if let Err(e) = content.copy_into(out) {
                return Err(content.into_error(e));
            }
            let padding = (TAR_BLOCK - *size % TAR_BLOCK) % TAR_BLOCK;
            out.write_all(&[0; TAR_BLOCK as usize][..padding as usize])?;
        }
    }
    Ok(())
}

/// Classifies an error from appending an entry: the tar crate refuses a name
/// or link target it cannot encode with a plain `Other` error; everything
/// else comes from writing the spool.
fn header_error(entry: &SourceEntry, err: io::Error) -> WriteError {
    if err.kind() == io::ErrorKind::Other && err.raw_os_error().is_none() {
        WriteError::Source(Error::InvalidInput(format!(
            "{} cannot be stored in a tar archive: {err}; rename it or exclude it with --exclude",
            entry.rel
        )))
    } else {
        WriteError::Spool(err)
    }
}
