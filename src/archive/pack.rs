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

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tar::{EntryType, Header};

use crate::archive::beneath;
use crate::archive::walk::{self, FileAt, FileStamp, SourceEntry, SourceKind, SourceTree};
use crate::compress::pargz::ParallelGzWriter;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::oci::digest::{Digest, HashingWriter};
use crate::read_into::{read_then_write, ReadFn, ReadInto};

/// Buffer size of the spool file writer and of the file content reads.
const BUFFER_SIZE: usize = 256 * 1024;

/// Size of a tar block: every entry's content is padded to a multiple of it.
const TAR_BLOCK: u64 = 512;

/// The gzip level used when none is given.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Most zstd worker threads used. More threads do not change the output
/// (libzstd cuts the input into jobs by the level's window size, not by the
/// thread count), only the memory used.
const MAX_ZSTD_WORKERS: usize = 8;

/// Most bytes handed to libzstd at once. Larger pieces let its
/// multi-threaded mode start more jobs at the same time, each with buffers
/// of its own: 256 KiB pieces took a 300 MB push from 78 to 116 MiB.
const ZSTD_WRITE: usize = 8 * 1024;

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

/// The compressing stage of the writer stack.
enum Encoder<W: Write> {
    Plain(W),
    Gzip(ParallelGzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder for `compression` at `level` (already validated) using up
    /// to `threads` threads.
    fn new(inner: W, compression: Compression, level: u32, threads: usize) -> io::Result<Self> {
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
    fn finish(self) -> io::Result<W> {
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

/// A regular file as the walk saw it.
struct Seen<'a> {
    rel: &'a str,
    path: &'a Path,
    at: &'a FileAt,
    size: u64,
    stamp: &'a FileStamp,
}

/// Why a source file could not be opened.
enum OpenFailure {
    /// A symlink, a directory or another file is where the walk saw the
    /// file, or on the way to it.
    Replaced,
    /// Opening failed for another reason.
    Io(io::Error),
}

/// Opens source files beneath the tree's root, relative to a handle on
/// their directory that is kept while consecutive files share it: the
/// kernel then resolves one name per file rather than its whole path.
struct SourceOpener<'r> {
    root: BorrowedFd<'r>,
    /// The directory of the last file opened: its path under the root, and
    /// an `O_PATH` handle on it.
    dir: Option<(String, OwnedFd)>,
}

impl<'r> SourceOpener<'r> {
    fn new(root: BorrowedFd<'r>) -> Self {
        SourceOpener { root, dir: None }
    }

    /// Opens the file `seen` for reading and checks that it is the one the
    /// walk saw: a regular file with the same device and inode.
    fn open(&mut self, seen: &Seen<'_>) -> Result<File, OpenFailure> {
        // Non-blocking, so a FIFO put in a file's place does not hang the
        // open (a regular file ignores the flag).
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let opened = match seen.at {
            FileAt::Tree(rel) => self.open_beneath(rel, flags),
            FileAt::Outside => {
                rustix::fs::open(seen.path, flags, Mode::empty()).map_err(Into::into)
            }
        };
        let fd = opened.map_err(|e| match beneath::is_swapped(&e) {
            true => OpenFailure::Replaced,
            false => OpenFailure::Io(e),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| OpenFailure::Io(e.into()))?;
        #[allow(clippy::unnecessary_cast)]
        let same = stat.st_mode & libc::S_IFMT == libc::S_IFREG
            && stat.st_dev as u64 == seen.stamp.dev
            && stat.st_ino as u64 == seen.stamp.ino;
        if !same {
            return Err(OpenFailure::Replaced);
        }
        Ok(File::from(fd))
    }

    /// Opens `rel` beneath the root with `flags`, never through a symlink.
    fn open_beneath(&mut self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let Some((parent, name)) = rel.rsplit_once('/') else {
            return beneath::open_beneath(self.root, rel, flags, Mode::empty());
        };
        let dir = match self.dir.take() {
            Some((cached, fd)) if cached == parent => fd,
            _ => beneath::open_beneath(
                self.root,
                parent,
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            )?,
        };
        let file = beneath::open_beneath(dir.as_fd(), name, flags, Mode::empty());
        self.dir = Some((parent.to_string(), dir));
        file
    }
}

/// Opens a source file to be read as the regular file the walk saw.
/// Reading checks that its size did not change (see [`SourceReader::fill`]).
fn open_source<'a>(
    seen: &Seen<'a>,
    opener: &mut SourceOpener<'_>,
    buffer: &'a mut [u8],
) -> Result<SourceReader<'a>, WriteError> {
    let file = opener.open(seen).map_err(|failure| {
        WriteError::Source(match failure {
            OpenFailure::Replaced => replaced(seen.rel),
            OpenFailure::Io(e) => walk::unreadable(seen.path, &e),
        })
    })?;
    Ok(SourceReader {
        rel: seen.rel,
        path: seen.path,
        file,
        remaining: seen.size,
        buffer,
        at_end: false,
        failure: None,
    })
}

/// The error for a file that another file, a directory or a symlink took
/// the place of between walking and packing.
fn replaced(rel: &str) -> Error {
    Error::InvalidInput(format!(
        "file {rel} was replaced while packing (a symlink, a directory or another file is now \
         at its path or on the way to it), so it was not packed; stop whatever writes to the \
         source directory and try again"
    ))
}

/// The error for a file that changed between walking and packing.
fn changed(rel: &str) -> Error {
    Error::InvalidInput(format!(
        "file {rel} changed while packing; stop whatever writes to the source directory and \
         try again"
    ))
}

/// Why a [`SourceReader`] stopped early.
enum ReadFailure {
    /// The file was shorter or longer than its entry says, or is no longer
    /// a regular file.
    Changed,
    /// Reading the file failed.
    Io(io::Error),
}

impl ReadFailure {
    /// The failure a read error means: errors a regular file never gives
    /// (it is a directory now, or a FIFO with nothing in it) mean it was
    /// replaced.
    fn of(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::IsADirectory | io::ErrorKind::WouldBlock => ReadFailure::Changed,
            _ => ReadFailure::Io(err),
        }
    }
}

/// Reads exactly the size recorded for a file, through a reused buffer, and
/// remembers why it failed so the error can name the file rather than the
/// archive.
struct SourceReader<'a> {
    rel: &'a str,
    path: &'a Path,
    file: File,
    /// Bytes still expected from the file.
    remaining: u64,
    buffer: &'a mut [u8],
    /// Whether the last read already met the end of the file.
    at_end: bool,
    failure: Option<ReadFailure>,
}

impl SourceReader<'_> {
    /// Writes the file's content to `out`, read straight into its buffer
    /// where it lends one, checking that it has exactly the expected size.
    fn copy_into(&mut self, out: &mut dyn ReadInto) -> io::Result<()> {
        let scratch = std::mem::take(&mut self.buffer);
        let copied = loop {
            match out.read_into(scratch, &mut |room: &mut [u8]| self.fill(room)) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.buffer = scratch;
        copied
    }

    /// Reads the next piece into `room` and returns its length; at the
    /// expected end, checks that the file did not grow and returns 0. A
    /// file that ends early or goes on, or that reads as what is no longer
    /// a regular file (a directory, an empty FIFO), has changed.
    fn fill(&mut self, room: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            if self.at_end {
                return Ok(0);
            }
            let mut probe = [0u8; 1];
            return match read_retrying(&mut self.file, &mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(ReadFailure::Changed)),
                Err(e) => Err(self.fail(ReadFailure::of(e))),
            };
        }
        // When the rest fits, ask for one byte more: a read that stops
        // exactly at the expected end has met the end of the file, which
        // spares a second read to check that the file did not grow.
        let (want, past_end) = match usize::try_from(self.remaining) {
            Ok(r) if r < room.len() => (r + 1, true),
            _ => (room.len(), false),
        };
        match read_retrying(&mut self.file, &mut room[..want]) {
            Ok(0) => Err(self.fail(ReadFailure::Changed)),
            Ok(n) if past_end && n == want => Err(self.fail(ReadFailure::Changed)),
            Ok(n) => {
                self.remaining -= n as u64;
                self.at_end = past_end && self.remaining == 0;
                Ok(n)
            }
            Err(e) => Err(self.fail(ReadFailure::of(e))),
        }
    }

    /// Records the failure and returns a stand-in error for the writer.
    fn fail(&mut self, failure: ReadFailure) -> io::Error {
        self.failure = Some(failure);
        io::Error::other("source file could not be read")
    }

    /// The error to report once copying the content failed with `err`:
    /// the file's problem if it had one, else the spool's.
    fn into_error(self, err: io::Error) -> WriteError {
        match self.failure {
            Some(ReadFailure::Changed) => WriteError::Source(changed(self.rel)),
            Some(ReadFailure::Io(e)) => WriteError::Source(Error::io("reading", self.path, e)),
            None => WriteError::Spool(err),
        }
    }
}

/// One read from `file`, retrying on interruption.
fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::walk::{walk, WalkOptions};
    use crate::read_into::Plain;
    use flate2::read::MultiGzDecoder;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    /// Writes `rel` with `content` and `mode` below `root`, creating parents.
    fn put(root: &Path, rel: &str, content: &[u8], mode: u32) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn set_mtime(path: &Path, secs: u64) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    fn pack_dir(root: &Path, opts: &PackOptions) -> PackedLayer {
        let entries = walk(root, &WalkOptions::default(), &mut |_| {}).unwrap();
        pack(&entries, opts, &std::env::temp_dir(), &mut |_| {}).unwrap()
    }

    /// The fixed tree of the known-digest test.
    fn sample_tree(root: &Path) {
        put(root, "a.txt", b"hello\n", 0o644);
        put(root, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
        fs::create_dir(root.join("empty")).unwrap();
        symlink("a.txt", root.join("link")).unwrap();
    }

    #[test]
    fn known_digest() {
        // Pinned on purpose: a change of deflate backend, of the parallel
        // gzip block size or of the tar layout changes these values, and must
        // be a deliberate decision.
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let layer = pack_dir(
            dir.path(),
            &PackOptions {
                mtime: 0,
                compression: Compression::Gzip,
                compression_level: 6,
            },
        );
        assert_eq!(
            layer.digest.as_str(),
            "sha256:0a5c6718cb1785804469b450cb399ac29b016aceedf5c882a16a4b2b769f40bb"
        );
        assert_eq!(
            layer.diff_id.as_str(),
            "sha256:2bbea6dd4d978b740e7d7e2800d9cacedfe07beb3f8bd40e356ae3fe2fad3900"
        );
    }

    #[test]
    fn same_tree_packs_identically() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8], bool); 5] = [
            ("README.md", b"readme\n", false),
            ("src/main.rs", b"fn main() {}\n", false),
            ("src/util/mod.rs", b"// util\n", false),
            ("scripts/build.sh", b"#!/bin/sh\n", true),
            ("z/last", b"", false),
        ];
        for (i, (rel, content, exec)) in files.iter().enumerate() {
            put(one.path(), rel, content, if *exec { 0o755 } else { 0o644 });
            set_mtime(&one.path().join(rel), 1_000 + i as u64);
        }
        for (i, (rel, content, exec)) in files.iter().enumerate().rev() {
            put(two.path(), rel, content, if *exec { 0o700 } else { 0o600 });
            set_mtime(&two.path().join(rel), 2_000_000_000 - i as u64);
        }
        fs::create_dir(one.path().join("empty")).unwrap();
        fs::create_dir(two.path().join("empty")).unwrap();
        fs::set_permissions(two.path().join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
        let opts = PackOptions {
            mtime: 1_700_000_000,
            compression: Compression::Gzip,
            compression_level: 6,
        };
        let a = pack_dir(one.path(), &opts);
        let b = pack_dir(two.path(), &opts);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!((a.size, a.uncompressed_size), (b.size, b.uncompressed_size));
        assert_eq!(
            fs::read(a.file.path()).unwrap(),
            fs::read(b.file.path()).unwrap()
        );
    }

    #[test]
    fn one_byte_changes_the_digest() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        put(one.path(), "f", b"content A", 0o644);
        put(two.path(), "f", b"content B", 0o644);
        let opts = PackOptions::default();
        let a = pack_dir(one.path(), &opts);
        let b = pack_dir(two.path(), &opts);
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.diff_id, b.diff_id);
    }

    #[test]
    fn digests_and_sizes_match_the_spool_file() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let mut layer = pack_dir(dir.path(), &PackOptions::default());
        let compressed = fs::read(layer.file.path()).unwrap();
        let mut from_handle = Vec::new();
        layer
            .file
            .as_file_mut()
            .read_to_end(&mut from_handle)
            .unwrap();
        assert!(
            from_handle == compressed,
            "the spool file is returned rewound"
        );
        assert_eq!(layer.size, compressed.len() as u64);
        assert_eq!(layer.digest, Digest::of(&compressed));
        let mut tar_bytes = Vec::new();
        MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(layer.uncompressed_size, tar_bytes.len() as u64);
        assert_eq!(layer.diff_id, Digest::of(&tar_bytes));
        assert_eq!(layer.entries, 5);
        // Fixed gzip header: no name, mtime 0, OS "unknown", the member size.
        assert_eq!(&compressed[..10], &[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255]);
        assert_eq!(
            crate::compress::gzip_member::recorded_size(&compressed),
            Some(compressed.len())
        );
    }

    #[test]
    fn output_is_a_valid_tar_gz() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        put(dir.path(), &long, b"long", 0o644);
        let opts = PackOptions {
            mtime: 1_234_567_890,
            compression: Compression::Gzip,
            compression_level: 9,
        };
        let layer = pack_dir(dir.path(), &opts);
        let file = File::open(layer.file.path()).unwrap();
        let mut archive = tar::Archive::new(MultiGzDecoder::new(file));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(h.uid().unwrap(), 0, "{name}");
            assert_eq!(h.gid().unwrap(), 0, "{name}");
            assert_eq!(h.username().unwrap(), Some(""), "{name}");
            assert_eq!(h.groupname().unwrap(), Some(""), "{name}");
            assert_eq!(h.mtime().unwrap(), opts.mtime, "{name}");
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            seen.push((name, h.entry_type(), h.mode().unwrap(), link, content));
        }
        let expect = |name: &str, kind, mode, link: Option<&str>, content: &str| {
            (
                name.to_string(),
                kind,
                mode,
                link.map(str::to_string),
                content.to_string(),
            )
        };
        assert_eq!(
            seen,
            [
                expect("a.txt", EntryType::Regular, 0o644, None, "hello\n"),
                expect("bin/", EntryType::Directory, 0o755, None, ""),
                expect(
                    "bin/run.sh",
                    EntryType::Regular,
                    0o755,
                    None,
                    "#!/bin/sh\necho hi\n"
                ),
                expect(
                    &format!("{}/", "d".repeat(120)),
                    EntryType::Directory,
                    0o755,
                    None,
                    ""
                ),
                expect(&long, EntryType::Regular, 0o644, None, "long"),
                expect("empty/", EntryType::Directory, 0o755, None, ""),
                expect("link", EntryType::Symlink, 0o777, Some("a.txt"), ""),
            ]
        );
    }

    #[test]
    fn gnu_tar_lists_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let layer = pack_dir(dir.path(), &PackOptions::default());
        let listing = tar_listing(&["-tzvf"], layer.file.path());
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 5, "{listing}");
        assert!(
            lines[0].starts_with("-rw-r--r-- 0/0") && lines[0].ends_with(" a.txt"),
            "{listing}"
        );
        assert!(
            lines[1].starts_with("drwxr-xr-x 0/0") && lines[1].ends_with(" bin/"),
            "{listing}"
        );
        assert!(
            lines[2].starts_with("-rwxr-xr-x 0/0") && lines[2].ends_with(" bin/run.sh"),
            "{listing}"
        );
        assert!(
            lines[3].starts_with("drwxr-xr-x 0/0") && lines[3].ends_with(" empty/"),
            "{listing}"
        );
        assert!(
            lines[4].starts_with("lrwxrwxrwx 0/0") && lines[4].ends_with(" link -> a.txt"),
            "{listing}"
        );
    }

    #[test]
    fn large_file_streams_through() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..(3 * BUFFER_SIZE + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        put(dir.path(), "big", &content, 0o644);
        let layer = pack_dir(
            dir.path(),
            &PackOptions {
                mtime: 0,
                compression: Compression::Gzip,
                compression_level: 1,
            },
        );
        let file = File::open(layer.file.path()).unwrap();
        let mut archive = tar::Archive::new(MultiGzDecoder::new(file));
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mut read = Vec::new();
        entry.read_to_end(&mut read).unwrap();
        assert!(read == content);
    }

    #[test]
    fn on_event_sees_every_entry_in_order_then_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let entries = walk(dir.path(), &WalkOptions::default(), &mut |_| {}).unwrap();
        let mut seen = Vec::new();
        let layer = pack(
            &entries,
            &PackOptions::default(),
            &std::env::temp_dir(),
            &mut |event| {
                seen.push(match event {
                    PackEvent::Appended(e) => e.rel.clone(),
                    PackEvent::TarDone(diff_id) => diff_id.to_string(),
                })
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                "a.txt",
                "bin",
                "bin/run.sh",
                "empty",
                "link",
                &layer.diff_id.to_string()
            ]
        );
    }

    #[test]
    fn changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "f", b"12345", 0o644);
        let entries = walk(dir.path(), &WalkOptions::default(), &mut |_| {}).unwrap();
        fs::write(dir.path().join("f"), b"123").unwrap();
        let spool = tempfile::tempdir().unwrap();
        match pack(&entries, &PackOptions::default(), spool.path(), &mut |_| {}) {
            Err(Error::InvalidInput(msg)) => {
                assert!(msg.contains("file f changed while packing"), "{msg}")
            }
            other => panic!("unexpected {:?}", other.map(|l| l.digest)),
        }
    }

    #[test]
    fn a_file_replaced_after_the_walk_is_refused_naming_it() {
        /// Puts something in the place of `file` (given the outside file).
        type Replace = fn(&Path, &Path);
        let replacements: [(&str, Replace); 6] = [
            ("a directory", |_, f| fs::create_dir(f).unwrap()),
            ("a fifo", |_, f| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    f,
                    rustix::fs::FileType::Fifo,
                    Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap()
            }),
            (
                "a symlink to an outside file of the same size",
                |outside, f| symlink(outside, f).unwrap(),
            ),
            ("a symlink inside the tree", |_, f| symlink("g", f).unwrap()),
            ("another file of the same size", |_, f| {
                fs::write(f, b"54321").unwrap()
            }),
            ("a hard link to an outside file", |outside, f| {
                fs::hard_link(outside, f).unwrap()
            }),
        ];
        for (replacement, replace) in replacements {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            put(&root, "d/f", b"12345", 0o644);
            put(&root, "d/g", b"67890", 0o644);
            let outside = dir.path().join("secret");
            fs::write(&outside, b"SECRT").unwrap();
            let tree = walk(&root, &WalkOptions::default(), &mut |_| {}).unwrap();
            let f = root.join("d/f");
            // Held open, so the replacement cannot get the same inode.
            let _old = File::open(&f).unwrap();
            fs::remove_file(&f).unwrap();
            replace(&outside, &f);
            let spool = tempfile::tempdir().unwrap();
            match pack(&tree, &PackOptions::default(), spool.path(), &mut |_| {}) {
                Err(Error::InvalidInput(msg)) => assert!(
                    msg.contains("file d/f was replaced while packing"),
                    "{replacement}: {msg}"
                ),
                other => panic!("{replacement}: unexpected {:?}", other.map(|l| l.digest)),
            }
        }
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_after_the_walk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        put(&root, "d/f", b"12345", 0o644);
        let outside = dir.path().join("outside");
        put(&outside, "f", b"SECRT", 0o644);
        let tree = walk(&root, &WalkOptions::default(), &mut |_| {}).unwrap();
        fs::rename(root.join("d"), dir.path().join("moved")).unwrap();
        symlink(&outside, root.join("d")).unwrap();
        let spool = tempfile::tempdir().unwrap();
        match pack(&tree, &PackOptions::default(), spool.path(), &mut |_| {}) {
            Err(Error::InvalidInput(msg)) => {
                assert!(msg.contains("file d/f was replaced while packing"), "{msg}")
            }
            other => panic!("unexpected {:?}", other.map(|l| l.digest)),
        }
    }

    #[test]
    fn size_change_during_read_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "f", b"12345", 0o644);
        let path = dir.path().join("f");
        // The file ends before the recorded size (6), or goes on after it
        // (4), read through a buffer smaller than it (4) or larger (16).
        for (expected, buffer_size) in [(6, 4), (4, 4), (6, 16), (4, 16), (3, 2)] {
            let mut buffer = vec![0u8; buffer_size];
            let root = File::open(dir.path()).unwrap();
            let mut opener = SourceOpener::new(root.as_fd());
            let seen = Seen {
                rel: "f",
                path: &path,
                at: &FileAt::Tree("f".into()),
                size: 5,
                stamp: &FileStamp::of(&fs::metadata(&path).unwrap()),
            };
            let mut reader = open_source(&seen, &mut opener, &mut buffer).unwrap();
            reader.remaining = expected;
            let err = reader.copy_into(&mut Plain(io::sink())).unwrap_err();
            match reader.into_error(err) {
                WriteError::Source(Error::InvalidInput(msg)) => {
                    assert!(msg.contains("file f changed while packing"), "{msg}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn compression_level_is_validated() {
        let spool = tempfile::tempdir().unwrap();
        for (compression, level) in [
            (Compression::Gzip, 0),
            (Compression::Gzip, 10),
            (Compression::Zstd, 0),
            (Compression::Zstd, 20),
        ] {
            let opts = PackOptions {
                mtime: 0,
                compression,
                compression_level: level,
            };
            assert!(matches!(
                pack(&empty_tree(), &opts, spool.path(), &mut |_| {}),
                Err(Error::Usage(_))
            ));
        }
    }

    #[test]
    fn empty_bundle_is_a_valid_archive() {
        let spool = tempfile::tempdir().unwrap();
        let layer = pack(
            &empty_tree(),
            &PackOptions::default(),
            spool.path(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(layer.entries, 0);
        assert_eq!(layer.uncompressed_size, 1024);
        tar_listing(&["-tzf"], layer.file.path());
    }

    /// A tree with no entries.
    fn empty_tree() -> SourceTree {
        SourceTree {
            root: std::sync::Arc::new(File::open("/").unwrap().into()),
            entries: Vec::new(),
        }
    }

    /// What GNU tar lists of `archive` with `flags`; panics unless tar
    /// accepts it.
    fn tar_listing(flags: &[&str], archive: &Path) -> String {
        let out = Command::new("tar")
            .args(flags)
            .arg(archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

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
