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
//! a small pool of writer threads ([`writer`]) that create it with `O_EXCL`
//! and fill it, so file creation overlaps decompression.
//! Symlinks and hard links are made on the calling thread once every file
//! before them is complete, and directory times once all files are.
//!
//! Regular files get mode 0644, or 0755 when the archive marks them
//! executable; directories get 0755. Set-id and sticky bits, owners and
//! extended attributes are never applied. File and directory modification
//! times are taken from the archive.

mod limits;
mod names;
#[cfg(test)]
mod tests;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::EntryType;

use crate::archive::beneath::Beneath;
use crate::compress::{decompress, Compression};
use crate::error::{Error, Result};
use limits::Tally;
pub use limits::{ExtractLimits, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use names::{check_pax, check_symlink_target, classify, link_target, normalize_name};
use writer::{written_error, WriterPool, CHUNK};

/// Mode of directories, and of regular files marked executable.
const MODE_EXECUTABLE: u32 = 0o755;

/// Mode of regular files not marked executable.
const MODE_REGULAR: u32 = 0o644;

/// Mode reported for symlinks (their own permissions are meaningless).
const MODE_SYMLINK: u32 = 0o777;

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
    /// The modification time the archive gives the entry, in seconds since
    /// the epoch.
    pub mtime: u64,
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
    let tally = Tally::new(*limits);
    let (stream, format) = decompress::decoder(reader, compression);
    let archive = tar::Archive::new(tally.metered(stream));
    let dest = Beneath::open(dest).map_err(|e| Error::io("opening", dest, e))?;
    let mut extractor = Extractor::new(dest, tally, format)?;
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
        extractor.tally.begin_header();
        let next = entries.next();
        extractor.tally.end_header();
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
    /// What the archive has used of its limits.
    tally: Tally,
    /// "tar" or "tar+gzip", for error messages.
    format: &'static str,
    /// Everything created so far, by relative path (parents included).
    nodes: HashMap<String, Node>,
    /// Modification times of directory entries, applied at the end.
    dir_times: BTreeMap<String, SystemTime>,
    /// The name of the last entry seen, for messages about limits.
    last_name: Option<String>,
    stats: ExtractStats,
    /// Writes regular files, off this thread.
    pool: WriterPool,
}

impl Extractor {
    fn new(dest: Beneath, tally: Tally, format: &'static str) -> Result<Self> {
        let dest = Arc::new(dest);
        Ok(Extractor {
            pool: WriterPool::new(Arc::clone(&dest))?,
            dest,
            tally,
            format,
            nodes: HashMap::new(),
            dir_times: BTreeMap::new(),
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
        if let Some(exceeded) = self.tally.exceeded(&at) {
            return exceeded;
        }
        Error::BadContent(format!(
            "layer is not a valid {} stream: {e}; the bundle is corrupt or not a source bundle",
            self.format
        ))
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
        self.tally.count_header()?;
        self.tally.count_declared(entry.size(), &shown)?;

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
        let mtime_secs = header
            .mtime()
            .map_err(|e| self.bad_field("mtime", &shown, e))?;
        let mtime = UNIX_EPOCH.checked_add(Duration::from_secs(mtime_secs));

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
            mtime: mtime_secs,
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
