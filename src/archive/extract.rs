//! Safe extraction of a source bundle layer (a tar stream, usually gzip
//! compressed) into an empty staging directory.
//!
//! Nothing is ever written outside the target directory:
//!
//! - entry names must be relative, free of `..` components and NUL bytes,
//!   and valid UTF-8 (a leading `./` is stripped, a `.` directory entry is
//!   skipped);
//! - no entry may pass through a symlink, whether the archive created it or
//!   it is found on disk, and no entry may replace a symlink;
//! - symlink targets must be relative and stay inside the target directory:
//!   `..` components are only allowed at the start of a target, and no more
//!   of them than the link's own depth, so that targets still stay inside
//!   when they lead through other symlinks of the archive;
//! - hard links may only point to regular files extracted earlier from the
//!   same archive;
//! - devices, fifos, sparse files and unknown entry types are refused;
//! - the number of entries, the sum of entry sizes and the number of bytes
//!   coming out of the decompressor are limited, which stops decompression
//!   bombs before they fill the disk or the memory.
//!
//! Every path is created, inspected or removed beneath an open handle on the
//! target, never through a symlink (see [`beneath`](crate::archive::beneath)):
//! should another process swap a directory of the target for a symlink while
//! the extraction runs, the next write there fails rather than leaving the
//! target.
//!
//! Every check above, and the creation of directories, happens on the
//! calling thread, in archive order. Only then is a regular file handed to
//! a small pool of writer threads ([`crate::archive::writer`]) that create
//! it with `O_EXCL` and fill it, so file creation overlaps decompression.
//! Symlinks and hard links are made on the calling thread once every file
//! before them is complete, and directory times once all files are.
//!
//! Regular files get mode 0644, or 0755 when the archive marks them
//! executable; directories get 0755. Set-id and sticky bits, owners and
//! extended attributes are never applied. File and directory modification
//! times are taken from the archive.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::EntryType;

use crate::archive::beneath::Beneath;
use crate::archive::writer::{written_error, WriterPool, CHUNK};
use crate::compress::{decompress, Compression};
use crate::error::{Error, Result};

/// Default for [`ExtractLimits::max_bytes`]: 10 GiB of file content.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Default for [`ExtractLimits::max_entries`]: one million entries.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// Decompressed bytes allowed on top of `max_bytes` for the archive itself,
/// before any entry has been seen (end-of-archive blocks, a global header).
const STREAM_BASE_OVERHEAD: u64 = 1024 * 1024;

/// Decompressed bytes allowed on top of `max_bytes` for each entry: its
/// header, its padding, and long-name or pax headers describing it.
const STREAM_OVERHEAD_PER_ENTRY: u64 = 16 * 1024;

/// Most bytes read between two entries (the padding of the previous entry,
/// the next header and the long-name or pax headers before it). Those
/// extension headers are held in memory, so they must stay small.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// Mode of directories, and of regular files marked executable.
const MODE_EXECUTABLE: u32 = 0o755;

/// Mode of regular files not marked executable.
const MODE_REGULAR: u32 = 0o644;

/// Mode reported for symlinks (their own permissions are meaningless).
const MODE_SYMLINK: u32 = 0o777;

/// Limits that stop decompression bombs and archives with absurd entry counts.
#[derive(Debug, Clone, Copy)]
pub struct ExtractLimits {
    /// Most bytes of entry content the archive may expand to (the sum of
    /// the sizes in its headers, and about as many bytes out of the
    /// decompressor).
    pub max_bytes: u64,
    /// Most entries (files, directories, links, headers) the archive may hold.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// [`DEFAULT_MAX_BYTES`] and [`DEFAULT_MAX_ENTRIES`].
    fn default() -> Self {
        ExtractLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What one extracted entry was (for `--show-listing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo<'a> {
    /// Path relative to the target directory, `/`-separated, without a
    /// leading `./` and without a trailing slash for directories.
    pub path: &'a str,
    /// What kind of entry it was.
    pub kind: EntryKind,
    /// Bytes of content written: the file size for regular files, 0 for
    /// directories, symlinks and hard links.
    pub size: u64,
    /// Permission bits as applied on disk (0644 or 0755 for files and
    /// directories, the linked file's mode for hard links, 0777 for symlinks).
    pub mode: u32,
}

/// The kind of an extracted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to a regular file extracted earlier.
    Hardlink,
}

/// Totals of one extraction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries extracted (one per call of the `on_entry` callback).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Extracts a tar stream (optionally gzip-compressed) into `dest`, which must
/// be an existing, empty directory.
///
/// Reads the tar stream up to its end-of-archive marker; bytes after it (and
/// the end of the gzip stream) may be left unread for the caller to drain.
/// `on_entry` is called once for each entry extracted, in archive order.
///
/// Unsafe entries and exceeded limits fail with [`Error::UnsafeArchive`],
/// corrupt data with [`Error::BadContent`], a `dest` that is not an empty
/// directory with [`Error::TargetConflict`], and local write failures with
/// [`Error::Io`]. Whatever fails first in archive order is reported, as if
/// files were written one after the other. On error, `dest` may hold a
/// partial extraction: the caller removes it. Either way, nothing is written
/// into `dest` any more once this returns.
pub fn unpack(
    reader: &mut dyn Read,
    compression: Compression,
    dest: &Path,
    limits: &ExtractLimits,
    on_entry: &mut dyn FnMut(&EntryInfo<'_>),
) -> Result<ExtractStats> {
    check_dest(dest)?;
    let meter = Rc::new(Meter::new(
        limits.max_bytes.saturating_add(STREAM_BASE_OVERHEAD),
    ));
    let (stream, format) = decompress::decoder(reader, compression);
    let archive = tar::Archive::new(MeteredReader {
        inner: stream,
        meter: Rc::clone(&meter),
    });
    let dest = Beneath::open(dest).map_err(|e| Error::io("opening", dest, e))?;
    let mut extractor = Extractor::new(dest, *limits, format, meter)?;
    let outcome = extract_all(archive, compression, &mut extractor, on_entry);
    // Let the writers finish what they were given, even after an error: a
    // write that failed for an entry earlier in the archive is the error
    // to report, as when writing one file after the other.
    let reported = extractor.pool.reported();
    let written = extractor.pool.flush();
    match (outcome, written) {
        (Ok(()), Ok(())) => {}
        // The error already is the writers' (or came after theirs).
        (Err(e), _) if reported => return Err(e),
        (_, Err(write_error)) => return Err(write_error),
        (Err(e), Ok(())) => return Err(e),
    }
    extractor.finish()
}

/// Extracts every entry of `archive`, handing file contents to the writers,
/// then checks what follows the end of the archive.
fn extract_all<R: Read>(
    mut archive: tar::Archive<R>,
    compression: Compression,
    extractor: &mut Extractor,
    on_entry: &mut dyn FnMut(&EntryInfo<'_>),
) -> Result<()> {
    let mut entries = archive.entries().map_err(|e| extractor.stream_error(e))?;
    loop {
        extractor.meter.begin_header();
        let next = entries.next();
        extractor.meter.end_header();
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(extractor.stream_error(e)),
        };
        extractor.extract(&mut entry, on_entry)?;
        extractor.drain(&mut entry)?;
    }
    if compression != Compression::None {
        // Read what follows the end of the archive too, so the gzip trailer
        // (CRC and length) or the end of the zstd frame is checked: a stream
        // cut or corrupted there, or garbage after it, is refused.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| extractor.stream_error(e))?;
    }
    Ok(())
}

/// Refuses PAX extended headers that are malformed (a record that does not
/// parse, a size that is not a number) or that describe a sparse file: the
/// tar reader would otherwise quietly ignore them and write something else
/// than the archive says.
fn check_pax<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<()> {
    let refuse = |why: String| Error::UnsafeArchive(format!("entry {shown:?} {why}"));
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(|e| refuse(format!("has an unreadable PAX header: {e}")))?
    else {
        return Ok(());
    };
    for extension in extensions {
        let extension =
            extension.map_err(|e| refuse(format!("has a malformed PAX record: {e}")))?;
        let key = extension
            .key()
            .map_err(|_| refuse("has a PAX key that is not UTF-8".to_string()))?;
        let value = extension
            .value()
            .map_err(|_| refuse(format!("has a PAX {key} value that is not UTF-8")))?;
        if key.starts_with("GNU.sparse") {
            return Err(refuse(
                "is a sparse file (PAX GNU.sparse); sparse files are not supported".to_string(),
            ));
        }
        if key == "size" && value.parse::<u64>().is_err() {
            return Err(refuse(format!("has an invalid PAX size {value:?}")));
        }
    }
    Ok(())
}

/// Checks that `dest` is an existing, empty directory.
fn check_dest(dest: &Path) -> Result<()> {
    let meta = fs::metadata(dest).map_err(|e| Error::io("opening", dest, e))?;
    if !meta.is_dir() {
        return Err(Error::TargetConflict(format!(
            "extraction target {} is not a directory",
            dest.display()
        )));
    }
    let mut listing = fs::read_dir(dest).map_err(|e| Error::io("reading", dest, e))?;
    if listing.next().is_some() {
        return Err(Error::TargetConflict(format!(
            "extraction target {} is not empty; extract into a new, empty directory",
            dest.display()
        )));
    }
    Ok(())
}

/// Which stream limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    /// More decompressed bytes than content plus overhead allow.
    Total,
    /// An oversized run of headers between two entries.
    Header,
}

/// Counts the bytes coming out of the decompressor and enforces the limits
/// on them. Shared between the reader inside the tar archive and the loop
/// that walks its entries.
#[derive(Debug)]
struct Meter {
    /// Bytes read so far.
    total: Cell<u64>,
    /// Most bytes that may be read in total.
    limit: Cell<u64>,
    /// Where the current run of headers started, while one is being read.
    header_start: Cell<Option<u64>>,
    /// The limit that was exceeded, once one was.
    tripped: Cell<Option<Trip>>,
}

impl Meter {
    fn new(limit: u64) -> Self {
        Meter {
            total: Cell::new(0),
            limit: Cell::new(limit),
            header_start: Cell::new(None),
            tripped: Cell::new(None),
        }
    }

    /// Allows `extra` more bytes in total.
    fn grant(&self, extra: u64) {
        self.limit.set(self.limit.get().saturating_add(extra));
    }

    /// Starts a run of headers (reading towards the next entry).
    fn begin_header(&self) {
        self.header_start.set(Some(self.total.get()));
    }

    /// Ends a run of headers (the next entry, if any, has been read).
    fn end_header(&self) {
        self.header_start.set(None);
    }

    /// How many more bytes may be read before a limit is exceeded, and which.
    fn remaining(&self) -> (u64, Trip) {
        let total = self.total.get();
        let overall = self.limit.get().saturating_sub(total);
        match self.header_start.get() {
            Some(start) => {
                let headers = start.saturating_add(MAX_HEADER_BYTES).saturating_sub(total);
                if headers < overall {
                    (headers, Trip::Header)
                } else {
                    (overall, Trip::Total)
                }
            }
            None => (overall, Trip::Total),
        }
    }

    fn trip(&self, trip: Trip) -> io::Error {
        self.tripped.set(Some(trip));
        io::Error::other("extraction limit exceeded")
    }
}

/// A reader that counts every byte through a [`Meter`] and fails once a
/// limit is exceeded, never handing out a byte beyond it.
struct MeteredReader<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(trip) = self.meter.tripped.get() {
            return Err(self.meter.trip(trip));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let (remaining, trip) = self.meter.remaining();
        // Ask for one byte more than allowed, to tell "exactly at the limit"
        // from "over it".
        let want = usize::try_from(remaining.saturating_add(1))
            .map_or(buf.len(), |allowed| allowed.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        self.meter.total.set(self.meter.total.get() + n as u64);
        if n as u64 > remaining {
            return Err(self.meter.trip(trip));
        }
        Ok(n)
    }
}

/// What the extraction created at one path.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: EntryKind,
    mode: u32,
}

/// What is found on disk at a path, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    Nothing,
    Dir,
    File,
    Symlink,
    Other,
}

/// The state of one extraction.
struct Extractor {
    dest: Arc<Beneath>,
    limits: ExtractLimits,
    /// "tar" or "tar+gzip", for error messages.
    format: &'static str,
    meter: Rc<Meter>,
    /// Everything created so far, by relative path (parents included).
    nodes: HashMap<String, Node>,
    /// Modification times of directory entries, applied at the end.
    dir_times: BTreeMap<String, SystemTime>,
    /// Headers seen, extracted or not.
    headers: u64,
    /// Sum of the sizes in the headers seen.
    declared: u64,
    /// The name of the last entry seen, for messages about limits.
    last_name: Option<String>,
    stats: ExtractStats,
    /// Writes regular files, off this thread.
    pool: WriterPool,
}

impl Extractor {
    fn new(
        dest: Beneath,
        limits: ExtractLimits,
        format: &'static str,
        meter: Rc<Meter>,
    ) -> Result<Self> {
        let dest = Arc::new(dest);
        Ok(Extractor {
            pool: WriterPool::new(Arc::clone(&dest))?,
            dest,
            limits,
            format,
            meter,
            nodes: HashMap::new(),
            dir_times: BTreeMap::new(),
            headers: 0,
            declared: 0,
            last_name: None,
            stats: ExtractStats::default(),
        })
    }

    /// Waits for the writers when `path` names a file handed to them, so
    /// that what is on disk there is complete before it is checked,
    /// replaced or refused.
    fn settle(&mut self, path: &str) -> Result<()> {
        match self.nodes.get(path).map(|n| n.kind) {
            Some(EntryKind::File | EntryKind::Hardlink) => self.pool.flush(),
            _ => Ok(()),
        }
    }

    /// Maps an error from reading the archive: an exceeded limit, or a
    /// corrupt stream.
    fn stream_error(&self, e: io::Error) -> Error {
        let at = match &self.last_name {
            Some(name) => format!(" after entry {name:?}"),
            None => String::new(),
        };
        match self.meter.tripped.get() {
            Some(Trip::Total) => Error::UnsafeArchive(format!(
                "archive expands to more than {} bytes{at}; raise --max-extract-size if this is expected",
                self.limits.max_bytes
            )),
            Some(Trip::Header) => Error::UnsafeArchive(format!(
                "archive has more than {MAX_HEADER_BYTES} bytes of long-name or pax headers{at}; \
                 this is not a source bundle ocistep can extract"
            )),
            None => Error::BadContent(format!(
                "layer is not a valid {} stream: {e}; the bundle is corrupt or not a source bundle",
                self.format
            )),
        }
    }

    /// Counts one header against the entry limit.
    fn count_header(&mut self) -> Result<()> {
        self.headers += 1;
        if self.headers > self.limits.max_entries {
            return Err(Error::UnsafeArchive(format!(
                "archive has more than {} entries; raise --max-entries if this is expected",
                self.limits.max_entries
            )));
        }
        self.meter.grant(STREAM_OVERHEAD_PER_ENTRY);
        Ok(())
    }

    /// Counts the size an entry declares against the byte limit, before
    /// any of its content is written.
    fn count_declared(&mut self, size: u64, shown: &str) -> Result<()> {
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.limits.max_bytes {
            return Err(Error::UnsafeArchive(format!(
                "archive expands to more than {} bytes at entry {shown:?}; \
                 raise --max-extract-size if this is expected",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    /// Extracts one entry, or refuses it.
    fn extract<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        on_entry: &mut dyn FnMut(&EntryInfo<'_>),
    ) -> Result<()> {
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        self.last_name = Some(shown.clone());
        self.count_header()?;
        self.count_declared(entry.size(), &shown)?;

        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            return Ok(());
        }
        check_pax(entry, &shown)?;
        let kind = classify(entry_type, &shown)?;
        let Some(path) = normalize_name(&raw_name, kind == EntryKind::Dir, &shown)? else {
            return Ok(());
        };
        let header = entry.header();
        let header_mode = header
            .mode()
            .map_err(|e| self.bad_field("mode", &shown, e))?;
        let mtime = header
            .mtime()
            .map_err(|e| self.bad_field("mtime", &shown, e))?;
        let mtime = UNIX_EPOCH.checked_add(Duration::from_secs(mtime));

        let (size, mode) = match kind {
            EntryKind::Dir => (0, self.extract_dir(&path, mtime)?),
            EntryKind::File => {
                let mode = file_mode(header_mode);
                (self.extract_file(entry, &path, mode, mtime)?, mode)
            }
            EntryKind::Symlink => {
                let target = link_target(entry, &shown)?;
                self.extract_symlink(&path, &target)?;
                (0, MODE_SYMLINK)
            }
            EntryKind::Hardlink => {
                let target = link_target(entry, &shown)?;
                (0, self.extract_hardlink(&path, &target)?)
            }
        };
        self.stats.entries += 1;
        on_entry(&EntryInfo {
            path: &path,
            kind,
            size,
            mode,
        });
        Ok(())
    }

    fn bad_field(&self, field: &str, shown: &str, e: io::Error) -> Error {
        Error::BadContent(format!(
            "layer is not a valid {} stream: entry {shown:?} has an unreadable {field}: {e}",
            self.format
        ))
    }

    /// Reads whatever content of the entry was not used (directories and
    /// links normally have none), so the next headers are counted alone.
    fn drain<R: Read>(&self, entry: &mut R) -> Result<()> {
        io::copy(entry, &mut io::sink()).map_err(|e| self.stream_error(e))?;
        Ok(())
    }

    /// Creates (or keeps) a directory; returns its mode.
    fn extract_dir(&mut self, path: &str, mtime: Option<SystemTime>) -> Result<u32> {
        self.prepare_parents(path)?;
        self.settle(path)?;
        match self.on_disk(path)? {
            OnDisk::Nothing => self.create_dir(path)?,
            OnDisk::Dir => {}
            found => return Err(conflict(path, EntryKind::Dir, found)),
        }
        self.nodes.insert(
            path.to_string(),
            Node {
                kind: EntryKind::Dir,
                mode: MODE_EXECUTABLE,
            },
        );
        if let Some(mtime) = mtime {
            self.dir_times.insert(path.to_string(), mtime);
        }
        Ok(MODE_EXECUTABLE)
    }

    /// Writes a regular file (replacing an earlier one of the same name);
    /// returns the bytes written. The path is checked and its parents are
    /// created here; the writers create the file (with `create_new`, which
    /// never follows a symlink), fill it, then apply its mode and time.
    fn extract_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
        mode: u32,
        mtime: Option<SystemTime>,
    ) -> Result<u64> {
        self.prepare_parents(path)?;
        self.settle(path)?;
        self.clear_for_file(path, EntryKind::File)?;
        self.pool.open(path.to_string(), mode, mtime)?;
        self.nodes.insert(
            path.to_string(),
            Node {
                kind: EntryKind::File,
                mode,
            },
        );
        let expected = entry.size();
        let written = self.send_content(entry, expected)?;
        if written != expected {
            return Err(Error::BadContent(format!(
                "layer is not a valid {} stream: entry {path:?} is truncated ({written} of {expected} bytes)",
                self.format
            )));
        }
        self.pool.close()?;
        self.stats.bytes += written;
        Ok(written)
    }

    /// Reads up to `expected` bytes of an entry's content and hands them to
    /// the writers in chunks, telling read errors (the archive) from write
    /// errors (the target). Returns the bytes read.
    fn send_content<R: Read>(&mut self, entry: &mut R, expected: u64) -> Result<u64> {
        let mut written = 0u64;
        while written < expected {
            let want = (expected - written).min(CHUNK as u64);
            let mut chunk = Vec::with_capacity(want as usize);
            Read::take(&mut *entry, want)
                .read_to_end(&mut chunk)
                .map_err(|e| self.stream_error(e))?;
            if chunk.is_empty() {
                break;
            }
            written += chunk.len() as u64;
            self.pool.write(chunk)?;
        }
        Ok(written)
    }

    /// Creates a symlink after checking its target stays inside.
    fn extract_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        check_symlink_target(path, target)?;
        self.prepare_parents(path)?;
        // A symlink only appears once every file before it is complete
        // (files it may point to, or a file at its own path).
        self.pool.flush()?;
        match self.on_disk(path)? {
            OnDisk::Nothing => {}
            found => return Err(conflict(path, EntryKind::Symlink, found)),
        }
        self.dest
            .symlink(target, path)
            .map_err(|e| self.disk_error(path, e))?;
        self.nodes.insert(
            path.to_string(),
            Node {
                kind: EntryKind::Symlink,
                mode: MODE_SYMLINK,
            },
        );
        Ok(())
    }

    /// Creates a hard link to a regular file extracted earlier; returns the
    /// mode of that file.
    fn extract_hardlink(&mut self, path: &str, target: &str) -> Result<u32> {
        let escapes = || {
            Error::UnsafeArchive(format!(
                "hard link {path:?} -> {target:?} points outside the archive"
            ))
        };
        let linked = match normalize_name(target.as_bytes(), false, target) {
            Ok(Some(linked)) => linked,
            Ok(None) | Err(_) => return Err(escapes()),
        };
        let mode = match self.nodes.get(&linked) {
            Some(node) if matches!(node.kind, EntryKind::File | EntryKind::Hardlink) => node.mode,
            _ => {
                return Err(Error::UnsafeArchive(format!(
                    "hard link {path:?} -> {target:?} does not point to a regular file \
                     extracted earlier from this archive"
                )))
            }
        };
        if linked == path {
            return Err(Error::UnsafeArchive(format!(
                "hard link {path:?} points to itself"
            )));
        }
        // The linked file (and whatever is at the link's own path) must be
        // complete before it is linked.
        self.pool.flush()?;
        if self.on_disk(&linked)? != OnDisk::File {
            return Err(Error::UnsafeArchive(format!(
                "hard link {path:?} -> {target:?}: the target is no longer a regular file"
            )));
        }
        self.prepare_parents(path)?;
        self.clear_for_file(path, EntryKind::Hardlink)?;
        self.dest
            .hard_link(&linked, path)
            .map_err(|e| self.disk_error(path, e))?;
        self.nodes.insert(
            path.to_string(),
            Node {
                kind: EntryKind::Hardlink,
                mode,
            },
        );
        Ok(mode)
    }

    /// Makes room for a regular file or hard link at `path`: nothing may be
    /// there, or a regular file this archive wrote, which is removed (not
    /// truncated, so files hard-linked to it keep their content).
    ///
    /// A path this extraction has not made needs no look: the target was
    /// empty, and the file is created with `O_EXCL`, which refuses whatever
    /// another process may have put there.
    fn clear_for_file(&self, path: &str, kind: EntryKind) -> Result<()> {
        if !self.nodes.contains_key(path) {
            return Ok(());
        }
        match self.on_disk(path)? {
            OnDisk::Nothing => Ok(()),
            OnDisk::File
                if self
                    .nodes
                    .get(path)
                    .is_some_and(|n| matches!(n.kind, EntryKind::File | EntryKind::Hardlink)) =>
            {
                self.dest
                    .remove_file(path)
                    .map_err(|e| self.disk_error(path, e))
            }
            found => Err(conflict(path, kind, found)),
        }
    }

    /// Checks every parent of `path`, creating missing ones as directories.
    /// Refuses parents that are symlinks or files, whether the archive made
    /// them or they are found on disk.
    fn prepare_parents(&mut self, path: &str) -> Result<()> {
        let ends = path.match_indices('/').map(|(i, _)| i);
        for end in ends {
            let parent = &path[..end];
            match self.nodes.get(parent).map(|n| n.kind) {
                Some(EntryKind::Symlink) => {
                    return Err(Error::UnsafeArchive(format!(
                        "entry {path:?} passes through symlink {parent:?}"
                    )))
                }
                Some(EntryKind::File | EntryKind::Hardlink) => {
                    return Err(Error::UnsafeArchive(format!(
                        "entry {path:?} is inside {parent:?}, which is a file"
                    )))
                }
                // Checked (or created) before: directories are never
                // removed or replaced during an extraction.
                Some(EntryKind::Dir) => continue,
                None => {}
            }
            match self.on_disk(parent)? {
                OnDisk::Dir => {
                    self.nodes.insert(
                        parent.to_string(),
                        Node {
                            kind: EntryKind::Dir,
                            mode: MODE_EXECUTABLE,
                        },
                    );
                }
                OnDisk::Nothing => {
                    self.create_dir(parent)?;
                    self.nodes.insert(
                        parent.to_string(),
                        Node {
                            kind: EntryKind::Dir,
                            mode: MODE_EXECUTABLE,
                        },
                    );
                }
                OnDisk::Symlink => {
                    return Err(Error::UnsafeArchive(format!(
                        "entry {path:?} passes through symlink {parent:?}"
                    )))
                }
                OnDisk::File | OnDisk::Other => {
                    return Err(Error::UnsafeArchive(format!(
                        "entry {path:?} is inside {parent:?}, which is not a directory"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Creates one directory with mode 0755, whatever the umask.
    fn create_dir(&self, path: &str) -> Result<()> {
        self.dest
            .create_dir(path, MODE_EXECUTABLE)
            .map_err(|e| self.disk_error(path, e))
    }

    /// What is at `path` in the target, without following a symlink there.
    fn on_disk(&self, path: &str) -> Result<OnDisk> {
        let stat = self
            .dest
            .lstat(path)
            .map_err(|e| self.disk_error(path, e))?;
        Ok(match stat.map(|s| s.st_mode & libc::S_IFMT) {
            None => OnDisk::Nothing,
            Some(libc::S_IFLNK) => OnDisk::Symlink,
            Some(libc::S_IFDIR) => OnDisk::Dir,
            Some(libc::S_IFREG) => OnDisk::File,
            Some(_) => OnDisk::Other,
        })
    }

    /// The error for a failure to change `path` in the target.
    fn disk_error(&self, path: &str, e: io::Error) -> Error {
        written_error(&self.dest, path, e)
    }

    /// Applies directory modification times (after every file inside was
    /// written) and returns the totals.
    fn finish(self) -> Result<ExtractStats> {
        for (path, mtime) in self.dir_times.iter().rev() {
            if self.on_disk(path)? != OnDisk::Dir {
                continue;
            }
            self.dest
                .set_dir_modified(path, *mtime)
                .map_err(|e| self.disk_error(path, e))?;
        }
        Ok(self.stats)
    }
}

/// Maps a tar entry type to what is extracted, refusing everything else.
fn classify(entry_type: EntryType, shown: &str) -> Result<EntryKind> {
    let what = match entry_type {
        EntryType::Regular | EntryType::Continuous => return Ok(EntryKind::File),
        EntryType::Directory => return Ok(EntryKind::Dir),
        EntryType::Symlink => return Ok(EntryKind::Symlink),
        EntryType::Link => return Ok(EntryKind::Hardlink),
        EntryType::Char => "a character device".to_string(),
        EntryType::Block => "a block device".to_string(),
        EntryType::Fifo => "a fifo".to_string(),
        EntryType::GNUSparse => "a sparse file".to_string(),
        other => format!("of unsupported type {:?}", char::from(other.as_byte())),
    };
    Err(Error::UnsafeArchive(format!(
        "entry {shown:?} is {what}; source bundles may only hold files, directories and links"
    )))
}

/// Validates an entry name and returns it relative, `/`-separated, without
/// `.` components, empty components or a trailing slash. Returns `None` for
/// the archive root itself (`.` or `./`), which only a directory may name.
fn normalize_name(raw: &[u8], is_dir: bool, shown: &str) -> Result<Option<String>> {
    let unsafe_name = |reason: &str| Err(Error::UnsafeArchive(format!("entry {shown:?} {reason}")));
    if raw.is_empty() {
        return Err(Error::UnsafeArchive(
            "an entry has an empty name".to_string(),
        ));
    }
    if raw.contains(&0) {
        return unsafe_name("has a NUL byte in its name");
    }
    let Ok(name) = std::str::from_utf8(raw) else {
        return unsafe_name("has a name that is not valid UTF-8");
    };
    if name.starts_with('/') {
        return unsafe_name("has an absolute path");
    }
    if name.ends_with('/') && !is_dir {
        return unsafe_name("ends with '/' but is not a directory");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return unsafe_name("escapes the target directory"),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return if is_dir {
            Ok(None)
        } else {
            unsafe_name("does not name anything inside the target directory")
        };
    }
    Ok(Some(parts.join("/")))
}

/// Reads the link name of a symlink or hard link entry as UTF-8.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<String> {
    let raw = entry.link_name_bytes().unwrap_or_default();
    if raw.is_empty() {
        return Err(Error::UnsafeArchive(format!(
            "link {shown:?} has an empty target"
        )));
    }
    if raw.contains(&0) {
        return Err(Error::UnsafeArchive(format!(
            "link {shown:?} has a NUL byte in its target"
        )));
    }
    match std::str::from_utf8(&raw) {
        Ok(target) => Ok(target.to_string()),
        Err(_) => Err(Error::UnsafeArchive(format!(
            "link {shown:?} has a target that is not valid UTF-8"
        ))),
    }
}

/// Checks that a symlink target is relative and stays inside the target
/// directory. `..` components may only lead the target (so the check holds
/// even when the target passes through other symlinks), and there may be no
/// more of them than directories above the link.
fn check_symlink_target(path: &str, target: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::UnsafeArchive(format!(
            "symlink {path:?} -> {target:?} {reason}"
        )))
    };
    if target.starts_with('/') {
        return refuse(
            "has an absolute target; only relative targets inside the bundle are allowed",
        );
    }
    let mut depth = path.matches('/').count();
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => {
                return refuse(
                    "uses \"..\" after a directory name; only leading \"..\" are allowed",
                )
            }
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return refuse("escapes the target directory"),
            },
            _ => named = true,
        }
    }
    Ok(())
}

/// The mode a regular file gets: executable for everyone if any execute bit
/// is set in the archive, plain otherwise.
fn file_mode(header_mode: u32) -> u32 {
    if header_mode & 0o111 != 0 {
        MODE_EXECUTABLE
    } else {
        MODE_REGULAR
    }
}

/// The error for an entry whose path is already taken by something else.
fn conflict(path: &str, kind: EntryKind, found: OnDisk) -> Error {
    let new = match kind {
        EntryKind::File => "a file",
        EntryKind::Dir => "a directory",
        EntryKind::Symlink => "a symlink",
        EntryKind::Hardlink => "a hard link",
    };
    let old = match found {
        OnDisk::Dir => "a directory",
        OnDisk::File => "a file",
        OnDisk::Symlink => "a symlink",
        OnDisk::Other | OnDisk::Nothing => "something else",
    };
    Error::UnsafeArchive(format!(
        "entry {path:?} is {new}, but the archive already created {old} there"
    ))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn extracts_files_dirs_and_links() {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.dir("bin/")
            .file("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o700)
            .file("bin/suid", b"x", 0o4755)
            .file("bin/group-exec", b"g", 0o650)
            .file("sub/file", b"hello", 0o640)
            .dir("empty/")
            .file("deep/a/b/c.txt", b"deep", 0o644)
            .symlink("l", "sub/file")
            .symlink("sub/up", "../bin/run.sh")
            .hardlink("h", "sub/file");
        let (result, listing) = unpack_tar(&fx, &tar);
        let stats = result.unwrap();

        use EntryKind::*;
        let expected: Listing = vec![
            ("bin".into(), Dir, 0, 0o755),
            ("bin/run.sh".into(), File, 18, 0o755),
            ("bin/suid".into(), File, 1, 0o755),
            ("bin/group-exec".into(), File, 1, 0o755),
            ("sub/file".into(), File, 5, 0o644),
            ("empty".into(), Dir, 0, 0o755),
            ("deep/a/b/c.txt".into(), File, 4, 0o644),
            ("l".into(), Symlink, 0, 0o777),
            ("sub/up".into(), Symlink, 0, 0o777),
            ("h".into(), Hardlink, 0, 0o644),
        ];
        assert_eq!(listing, expected);
        assert_eq!(
            stats,
            ExtractStats {
                entries: 10,
                bytes: 29
            }
        );

        let d = &fx.dest;
        assert_eq!(
            fs::read(d.join("bin/run.sh")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(fs::read(d.join("sub/file")).unwrap(), b"hello");
        assert_eq!(fs::read(d.join("deep/a/b/c.txt")).unwrap(), b"deep");
        assert_eq!(mode_of(&d.join("bin/run.sh")), 0o755);
        assert_eq!(
            mode_of(&d.join("bin/suid")),
            0o755,
            "set-id bits must be dropped"
        );
        assert_eq!(mode_of(&d.join("bin/group-exec")), 0o755);
        assert_eq!(mode_of(&d.join("sub/file")), 0o644);
        for dir in ["bin", "sub", "empty", "deep", "deep/a", "deep/a/b"] {
            assert!(d.join(dir).is_dir(), "{dir} missing");
            assert_eq!(mode_of(&d.join(dir)), 0o755, "{dir}");
        }
        assert_eq!(fs::read_dir(d.join("empty")).unwrap().count(), 0);
        assert_eq!(fs::read_link(d.join("l")).unwrap(), Path::new("sub/file"));
        assert_eq!(
            fs::read_link(d.join("sub/up")).unwrap(),
            Path::new("../bin/run.sh")
        );
        assert_eq!(fs::read(d.join("sub/up")).unwrap(), b"#!/bin/sh\necho hi\n");
        let file = fs::metadata(d.join("sub/file")).unwrap();
        let link = fs::symlink_metadata(d.join("h")).unwrap();
        assert!(link.is_file());
        assert_eq!((link.dev(), link.ino()), (file.dev(), file.ino()));
        let mtime = UNIX_EPOCH + Duration::from_secs(MTIME);
        assert_eq!(mtime_of(&d.join("bin/run.sh")), mtime);
        assert_eq!(
            mtime_of(&d.join("bin")),
            mtime,
            "directory mtimes are set last"
        );
        assert_contained(&fx);
    }

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
    fn long_names_and_dot_entries_are_handled() {
        let fx = fixture();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        let mut tar = RawTar::default();
        tar.dir("./")
            .dir(".")
            .pax(EntryType::XGlobalHeader, "comment", b"0123abcd")
            .file("./a//b/./c", b"c", 0o644)
            .long_name(long.as_bytes())
            .file("placeholder", b"long", 0o644)
            .pax(EntryType::XHeader, "path", b"pax/named")
            .file("placeholder", b"pax", 0o644);
        let (result, listing) = unpack_tar(&fx, &tar);
        let stats = result.unwrap();
        let paths: Vec<_> = listing.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["a/b/c", long.as_str(), "pax/named"]);
        assert_eq!(stats.entries, 3);
        assert_eq!(fs::read(fx.dest.join(&long)).unwrap(), b"long");
        assert_eq!(fs::read(fx.dest.join("pax/named")).unwrap(), b"pax");
        assert!(!fx.dest.join("placeholder").exists());
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

    #[test]
    fn plain_tar_is_read_up_to_the_end_marker() {
        let mut tar = RawTar::default();
        tar.file("a", b"alpha", 0o600).dir("d/");
        let mut bytes = tar.finish();
        let end_marker = tar.out.len() as u64 + 512;
        bytes.extend_from_slice(b"trailing data the caller drains");
        let fx = fixture();
        let mut reader = Cursor::new(bytes);
        let (result, _) = unpack_with(
            &fx,
            &mut reader,
            Compression::None,
            ExtractLimits::default(),
        );
        assert_eq!(
            result.unwrap(),
            ExtractStats {
                entries: 2,
                bytes: 5
            }
        );
        assert_eq!(reader.position(), end_marker);
        assert_eq!(fs::read(fx.dest.join("a")).unwrap(), b"alpha");
        assert_eq!(mode_of(&fx.dest.join("a")), 0o644);
    }

    #[test]
    fn target_must_be_an_empty_directory() {
        let fx = fixture();
        fs::write(fx.dest.join("old"), b"old").unwrap();
        let mut tar = RawTar::default();
        tar.file("a", b"a", 0o644);
        let (result, _) = unpack_tar(&fx, &tar);
        assert!(
            matches!(result, Err(Error::TargetConflict(_))),
            "{result:?}"
        );
        assert!(!fx.dest.join("a").exists());
    }

    /// A file that passes every check of the archive, and only fails when
    /// a writer writes it (as if the disk were full).
    fn unwritable_name() -> String {
        format!("d/{}", crate::archive::writer::DISK_FULL_NAME)
    }

    #[test]
    fn a_writer_error_fails_the_extraction() {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.file("before", b"b", 0o644)
            .file(&unwritable_name(), b"content", 0o644);
        for i in 0..200 {
            tar.file(&format!("after/{i}"), &[7; 3000], 0o644);
        }
        let (result, _) = unpack_tar(&fx, &tar);
        match result {
            Err(Error::Io {
                action,
                path,
                source,
            }) => {
                assert_eq!(action, "writing");
                assert_eq!(source.kind(), io::ErrorKind::StorageFull);
                assert!(path.ends_with(unwritable_name()), "{path:?}");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        // Nothing is written once unpack has returned.
        let count = || fs::read_dir(&fx.dest).unwrap().count();
        let seen = count();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(count(), seen);
        assert_contained(&fx);
    }

    #[test]
    fn an_earlier_writer_error_wins_over_a_later_unsafe_entry() {
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.file(&unwritable_name(), &[1; 5000], 0o644)
            .file("ok", b"x", 0o644)
            .file("../evil", b"x", 0o644);
        let (result, _) = unpack_tar(&fx, &tar);
        assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
        assert_contained(&fx);

        // A bad trailer after files that were written fine still fails.
        let fx = fixture();
        let mut tar = RawTar::default();
        tar.file("a", &[3; 70_000], 0o644).file("b", b"b", 0o644);
        let mut gz = gzip(&tar.finish());
        let len = gz.len();
        gz[len - 5] ^= 0xff;
        let (result, _) = unpack_with(
            &fx,
            &mut Cursor::new(gz),
            Compression::Gzip,
            ExtractLimits::default(),
        );
        assert_bad_content(result);
    }

    #[test]
    fn a_failed_pull_leaves_the_target_unchanged() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "k").unwrap();
        let staging = crate::archive::staging::Staging::new(&target).unwrap();
        let mut tar = RawTar::default();
        tar.file("new", b"n", 0o644)
            .file(&unwritable_name(), b"x", 0o644);
        let gz = gzip(&tar.finish());
        let result = unpack(
            &mut Cursor::new(gz),
            Compression::Gzip,
            staging.path(),
            &ExtractLimits::default(),
            &mut |_| {},
        );
        assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
        drop(staging);
        let names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keep"]);
    }

    /// Content that differs at every offset, to catch reordered chunks.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 65_536) as u8)
            .collect()
    }

    #[test]
    fn a_file_larger_than_the_write_budget_extracts() {
        let fx = fixture();
        let big = pattern(crate::archive::writer::BUDGET + 3 * CHUNK + 123);
        let mut tar = RawTar::default();
        tar.file("small", b"s", 0o644)
            .file("dir/big", &big, 0o755)
            .file("after", b"a", 0o644);
        let (result, listing) = unpack_with(
            &fx,
            &mut Cursor::new(tar.finish()),
            Compression::None,
            ExtractLimits::default(),
        );
        let stats = result.unwrap();
        assert_eq!(stats.bytes, big.len() as u64 + 2);
        assert_eq!(
            listing[1],
            (
                "dir/big".to_string(),
                EntryKind::File,
                big.len() as u64,
                0o755
            )
        );
        assert!(fs::read(fx.dest.join("dir/big")).unwrap() == big);
        assert_eq!(mode_of(&fx.dest.join("dir/big")), 0o755);
        assert_eq!(
            mtime_of(&fx.dest.join("dir/big")),
            UNIX_EPOCH + Duration::from_secs(MTIME)
        );
        assert_eq!(fs::read(fx.dest.join("after")).unwrap(), b"a");
    }

    #[test]
    fn links_to_files_written_just_before_see_their_whole_content() {
        let fx = fixture();
        let big = pattern(3 * CHUNK + 1);
        let mut tar = RawTar::default();
        for i in 0..50 {
            tar.file(&format!("many/{i}"), &pattern(10_000 + i), 0o644);
        }
        tar.file("d/big", &big, 0o755)
            .hardlink("d/hard", "d/big")
            .symlink("d/soft", "big")
            .symlink("up", "d/big")
            .file("d/small", b"small", 0o644)
            .hardlink("hard-small", "d/small");
        let (result, listing) = unpack_with(
            &fx,
            &mut Cursor::new(tar.finish()),
            Compression::None,
            ExtractLimits::default(),
        );
        result.unwrap();
        assert_eq!(listing.len(), 56);
        for name in ["d/big", "d/hard", "d/soft", "up"] {
            assert!(fs::read(fx.dest.join(name)).unwrap() == big, "{name}");
        }
        assert_eq!(mode_of(&fx.dest.join("d/hard")), 0o755);
        assert_eq!(fs::read(fx.dest.join("hard-small")).unwrap(), b"small");
        let meta = fs::metadata(fx.dest.join("d/big")).unwrap();
        assert_eq!(meta.nlink(), 2);
        for i in 0..50 {
            assert!(fs::read(fx.dest.join(format!("many/{i}"))).unwrap() == pattern(10_000 + i));
        }
    }

    #[test]
    fn a_duplicate_of_a_large_file_replaces_it_whole() {
        let fx = fixture();
        let big = pattern(2 * CHUNK + 7);
        let mut tar = RawTar::default();
        tar.file("f", &big, 0o644)
            .hardlink("h", "f")
            .file("f", b"short", 0o755)
            .file("g", &big, 0o644)
            .symlink("g", "f");
        let (result, _) = unpack_with(
            &fx,
            &mut Cursor::new(tar.finish()),
            Compression::None,
            ExtractLimits::default(),
        );
        assert_unsafe(result, &["\"g\" is a symlink", "a file there"]);
        assert_eq!(fs::read(fx.dest.join("f")).unwrap(), b"short");
        assert!(fs::read(fx.dest.join("h")).unwrap() == big);
        assert!(fs::read(fx.dest.join("g")).unwrap() == big);
    }
}
