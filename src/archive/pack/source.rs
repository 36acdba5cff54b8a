//! Reading the files of a tree to pack: each is opened beneath the root
//! without following a symlink, checked to be the file the walk saw, and
//! read for exactly the size the walk recorded, so that a file replaced or
//! changed since the walk is refused, naming it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::WriteError;
use crate::archive::beneath;
use crate::archive::walk::{self, FileAt, FileStamp};
use crate::error::Error;
use crate::read_into::ReadInto;

/// A regular file as the walk saw it.
pub(super) struct Seen<'a> {
    pub(super) rel: &'a str,
    pub(super) path: &'a Path,
    pub(super) at: &'a FileAt,
    pub(super) size: u64,
    pub(super) stamp: &'a FileStamp,
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
pub(super) struct SourceOpener<'r> {
    root: BorrowedFd<'r>,
    /// The directory of the last file opened: its path under the root, and
    /// an `O_PATH` handle on it.
    dir: Option<(String, OwnedFd)>,
}

impl<'r> SourceOpener<'r> {
    pub(super) fn new(root: BorrowedFd<'r>) -> Self {
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
pub(super) fn open_source<'a>(
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
pub(super) struct SourceReader<'a> {
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
    pub(super) fn copy_into(&mut self, out: &mut dyn ReadInto) -> io::Result<()> {
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
    pub(super) fn into_error(self, err: io::Error) -> WriteError {
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
    use crate::archive::pack::tests::put;
    use crate::archive::pack::{pack, PackOptions};
    use crate::archive::walk::{walk, WalkOptions};
    use crate::read_into::Plain;
    use std::fs;
    use std::os::unix::fs::symlink;

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
}
