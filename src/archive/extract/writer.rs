//! A small pool of threads that write regular files for the extractor, so
//! that creating and filling files (the slow part of an extraction on most
//! filesystems: inode allocation happens in `open`) overlaps decompression
//! and tar parsing on the extracting thread.
//!
//! The pool only ever writes what it is told: every path it gets has been
//! validated, and its parent directories created and checked, by the
//! extractor before the path is handed over. Files are created beneath the
//! target's open handle, never through a symlink (see
//! [`crate::archive::beneath`]), with `O_CREAT | O_EXCL`, which
//! never reuses something already there: a directory another process swaps
//! for a symlink meanwhile fails the write rather than redirecting it.
//!
//! Memory stays bounded whatever the archive holds: file content travels in
//! chunks of at most [`CHUNK`] bytes, and no more than [`BUDGET`] bytes of
//! content are in flight at once; the extractor waits for writers when the
//! budget is spent. Each file goes to one writer, which receives its chunks
//! in order.
//!
//! The first write error stops every writer (what is still queued is
//! dropped) and is reported by the next call of the extractor; the caller
//! then discards the whole staging directory.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crate::archive::beneath::{self, Beneath};
use crate::error::{Error, Result};

/// Most bytes of file content sent to a writer in one message.
pub const CHUNK: usize = 512 * 1024;

/// Most bytes of file content queued for, or being written by, the writers.
pub const BUDGET: usize = 8 * 1024 * 1024;

/// Messages queued per writer (one per file whose content is one chunk).
const QUEUE: usize = 64;

/// Most writer threads.
const MAX_WRITERS: usize = 4;

/// In tests, writing a file of this name fails as if the disk were full.
#[cfg(test)]
pub(crate) const DISK_FULL_NAME: &str = "ocistep-test-disk-full";

/// A file to create: where (relative to the target), and the mode and time
/// it gets once complete.
struct NewFile {
    rel: String,
    mode: u32,
    mtime: Option<SystemTime>,
}

/// One step of writing a file, in order, to one writer.
enum Job {
    /// Create a new file (it must not exist) to receive the next chunks.
    Open(NewFile),
    /// The next bytes of the open file.
    Data(Vec<u8>),
    /// The content is complete: apply mode and modification time, close.
    Close,
    /// A whole file whose content is one chunk: `Open`, `Data` and `Close`
    /// in one message, which spares two hand-offs for every small file.
    File(NewFile, Vec<u8>),
}

/// State shared by the extractor and the writers.
struct Shared {
    state: Mutex<State>,
    /// Signalled when bytes or jobs are done, or a writer fails.
    changed: Condvar,
    /// Set on the first error (or when the pool is dropped): writers drop
    /// what is still queued instead of writing it.
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Bytes of content sent and not yet written (or dropped).
    in_flight: usize,
    /// Jobs sent and not yet done (or dropped).
    pending: usize,
    /// The first error of any writer, until it is reported.
    error: Option<Error>,
    /// Whether an error happened (stays set once the error is reported).
    failed: bool,
    /// Whether the extractor waits for a change (only it ever waits), so
    /// writers wake it only then.
    waiting: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer never panics while holding the lock; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state and waits, woken by every change, while `blocked`
    /// holds for it.
    fn wait_while(&self, mut blocked: impl FnMut(&mut State) -> bool) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        while blocked(&mut state) {
            state.waiting = true;
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.waiting = false;
        state
    }

    fn fail(&self, error: Error) {
        let mut state = self.lock();
        if !state.failed {
            state.failed = true;
            state.error = Some(error);
        }
        self.stop.store(true, Ordering::SeqCst);
        drop(state);
        self.changed.notify_all();
    }

    /// Marks one job done, releasing `bytes` of the budget.
    fn done(&self, bytes: usize) {
        let mut state = self.lock();
        state.in_flight -= bytes;
        state.pending -= 1;
        let wake = state.waiting;
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }
}

/// The error to report once a writer failed: the writer's own, the first
/// time, then a generic one.
fn take_error(state: &mut State) -> Error {
    state.error.take().unwrap_or_else(|| Error::Io {
        action: "writing",
        path: PathBuf::from("the extraction target"),
        source: std::io::Error::other("an earlier write failed"),
    })
}

/// Writer threads and the queues feeding them. Dropping the pool stops the
/// writers and waits for them, so nothing is written once it is gone.
pub struct WriterPool {
    senders: Vec<SyncSender<Job>>,
    handles: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The writer that received the last `Open`.
    current: usize,
    /// The file started last and its first chunk, not sent yet: if it
    /// closes after one chunk, it goes to its writer as one `File`.
    held: Option<Held>,
}

/// A file whose start is held back by the pool (see [`Job::File`]).
struct Held {
    file: NewFile,
    data: Option<Vec<u8>>,
}

impl WriterPool {
    /// Starts one writer per available core, at least two and at most
    /// four, writing beneath `dest`.
    pub fn new(dest: Arc<Beneath>) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_writers(dest, cores.clamp(2, MAX_WRITERS))
    }

    /// Starts `writers` writer threads (at least one) writing beneath
    /// `dest`.
    pub fn with_writers(dest: Arc<Beneath>, writers: usize) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut pool = WriterPool {
            senders: Vec::new(),
            handles: Vec::new(),
            shared,
            current: 0,
            held: None,
        };
        for i in 0..writers.max(1) {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            let shared = Arc::clone(&pool.shared);
            let dest = Arc::clone(&dest);
            let handle = std::thread::Builder::new()
                .name(format!("ocistep-writer-{i}"))
                .spawn(move || run_writer(rx, &dest, shared))
                .map_err(|e| Error::io("starting a writer thread for", "the extraction", e))?;
            pool.senders.push(tx);
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// Starts a new file at `rel` under the target (its parents must exist
    /// and be checked; nothing may be at `rel`). Its content follows with
    /// [`write`], then [`close`].
    ///
    /// [`write`]: WriterPool::write
    /// [`close`]: WriterPool::close
    pub fn open(&mut self, rel: String, mode: u32, mtime: Option<SystemTime>) -> Result<()> {
        self.release()?;
        {
            let mut state = self.shared.lock();
            if state.failed {
                return Err(take_error(&mut state));
            }
        }
        self.current = (self.current + 1) % self.senders.len();
        self.held = Some(Held {
            file: NewFile { rel, mode, mtime },
            data: None,
        });
        Ok(())
    }

    /// Queues the next bytes of the open file (at most [`CHUNK`] at once,
    /// so the budget can hold them), waiting while the budget is spent.
    pub fn write(&mut self, data: Vec<u8>) -> Result<()> {
        if let Some(held) = self.held.as_mut().filter(|h| h.data.is_none()) {
            held.data = Some(data);
            return Ok(());
        }
        self.release()?;
        let len = data.len();
        self.send(Job::Data(data), len)
    }

    /// Finishes the open file.
    pub fn close(&mut self) -> Result<()> {
        match self.held.take() {
            Some(Held { file, data }) => {
                let data = data.unwrap_or_default();
                let len = data.len();
                self.send(Job::File(file, data), len)
            }
            None => self.send(Job::Close, 0),
        }
    }

    /// Sends the held start of a file (its `Open` and first chunk), once
    /// it turns out to have more than one chunk.
    fn release(&mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.send(Job::Open(held.file), 0)?;
        match held.data {
            Some(data) => {
                let len = data.len();
                self.send(Job::Data(data), len)
            }
            None => Ok(()),
        }
    }

    /// Waits until everything queued is written; fails with the first
    /// write error, if any.
    pub fn flush(&mut self) -> Result<()> {
        self.release()?;
        let mut state = self.shared.wait_while(|s| s.pending > 0 && !s.failed);
        if state.failed {
            return Err(take_error(&mut state));
        }
        Ok(())
    }

    /// Whether a write error happened and was already returned by a call.
    pub fn reported(&self) -> bool {
        let state = self.shared.lock();
        state.failed && state.error.is_none()
    }

    /// Whether files are queued or being written.
    pub fn busy(&self) -> bool {
        self.shared.lock().pending > 0
    }

    fn send(&mut self, job: Job, bytes: usize) -> Result<()> {
        {
            let mut state = self
                .shared
                .wait_while(|s| !s.failed && s.in_flight > 0 && s.in_flight + bytes > BUDGET);
            if state.failed {
                return Err(take_error(&mut state));
            }
            state.in_flight += bytes;
            state.pending += 1;
        }
        if self.senders[self.current].send(job).is_err() {
            // The writer is gone (it can only end early by panicking).
            self.shared.fail(Error::Io {
                action: "writing",
                path: PathBuf::from("the extraction target"),
                source: std::io::Error::other("a writer thread stopped unexpectedly"),
            });
            let mut state = self.shared.lock();
            return Err(take_error(&mut state));
        }
        Ok(())
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.senders.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Reports a panicking writer, so the extractor never waits for it forever.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(Error::Io {
                action: "writing",
                path: PathBuf::from("the extraction target"),
                source: std::io::Error::other("a writer thread panicked"),
            });
        }
    }
}

/// The file a writer is filling.
struct Open {
    file: File,
    new: NewFile,
}

fn run_writer(rx: Receiver<Job>, dest: &Beneath, shared: Arc<Shared>) {
    let _guard = PanicGuard(&shared);
    let mut open: Option<Open> = None;
    for job in rx {
        let stopped = shared.stop.load(Ordering::SeqCst);
        let bytes = match &job {
            Job::Data(data) | Job::File(_, data) => data.len(),
            Job::Open(_) | Job::Close => 0,
        };
        if stopped {
            open = None;
        } else if let Err(e) = perform(dest, job, &mut open) {
            open = None;
            shared.fail(e);
        }
        shared.done(bytes);
    }
}

fn perform(dest: &Beneath, job: Job, open: &mut Option<Open>) -> Result<()> {
    let failed = |rel: &str, e: std::io::Error| written_error(dest, rel, e);
    match job {
        Job::Open(new) => {
            // Fails if anything is there, or if a symlink is on the way.
            let file = dest
                .create_file(&new.rel, 0o600)
                .map_err(|e| failed(&new.rel, e))?;
            *open = Some(Open { file, new });
        }
        Job::Data(data) => {
            if let Some(o) = open.as_mut() {
                #[cfg(test)]
                if o.new.rel.rsplit('/').next() == Some(DISK_FULL_NAME) {
                    let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
                    return Err(failed(&o.new.rel, full));
                }
                o.file.write_all(&data).map_err(|e| failed(&o.new.rel, e))?;
            }
        }
        Job::File(new, data) => {
            perform(dest, Job::Open(new), open)?;
            perform(dest, Job::Data(data), open)?;
            perform(dest, Job::Close, open)?;
        }
        Job::Close => {
            if let Some(o) = open.take() {
                o.file
                    .set_permissions(Permissions::from_mode(o.new.mode))
                    .map_err(|e| failed(&o.new.rel, e))?;
                if let Some(mtime) = o.new.mtime {
                    o.file
                        .set_modified(mtime)
                        .map_err(|e| failed(&o.new.rel, e))?;
                }
            }
        }
    }
    Ok(())
}

/// The error for a failure to write `rel` beneath `dest`. A name too long
/// for the file system (`ENAMETOOLONG`) makes the archive unsafe to extract
/// here (its name is shown shortened). A symlink or a file met on its way,
/// a directory gone that the extraction made, or an entry where it made
/// none, means another process changed the target while it was written.
/// Anything else is a local I/O error.
pub(crate) fn written_error(dest: &Beneath, rel: &str, e: std::io::Error) -> Error {
    use std::io::ErrorKind::{AlreadyExists, NotFound};
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        let shown: String = rel.chars().take(60).collect();
        Error::UnsafeArchive(format!(
            "entry name too long for the file system ({} bytes, \"{shown}…\"); the archive \
             cannot be extracted here",
            rel.len()
        ))
    } else if beneath::is_swapped(&e) || matches!(e.kind(), NotFound | AlreadyExists) {
        Error::UnsafeArchive(format!(
            "{:?} was removed, replaced (by a symlink or a file) or created by another process \
             while the pull wrote to it; nothing was written through a symlink, and the pull \
             was stopped: make sure nothing else writes to the target directory during a pull",
            dest.shown(rel)
        ))
    } else {
        Error::io("writing", dest.shown(rel), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_files_in_chunks_and_applies_modes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Arc::new(Beneath::open(dir.path()).unwrap());
        let mut pool = WriterPool::with_writers(dest, 2).unwrap();
        // Empty, one-chunk (sent as one message) and three-chunk files.
        let chunks = |i: usize| [0, 1, 3][i % 3];
        for i in 0..20 {
            pool.open(format!("f{i}"), 0o755, None).unwrap();
            for _ in 0..chunks(i) {
                pool.write(vec![i as u8; 1000]).unwrap();
            }
            pool.close().unwrap();
        }
        pool.flush().unwrap();
        assert!(!pool.busy());
        for i in 0..20 {
            let path = dir.path().join(format!("f{i}"));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                vec![i as u8; 1000 * chunks(i)]
            );
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o755);
        }
    }

    #[test]
    fn first_error_is_reported_and_stops_the_writers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taken"), "x").unwrap();
        let dest = Arc::new(Beneath::open(dir.path()).unwrap());
        let mut pool = WriterPool::with_writers(dest, 2).unwrap();
        pool.open("taken".to_string(), 0o644, None).unwrap();
        pool.write(b"y".to_vec()).unwrap();
        pool.close().unwrap();
        let e = pool.flush().unwrap_err();
        assert!(e.to_string().contains("taken"), "{e}");
        // Later calls fail too, without writing anything.
        let later = pool.open("later".to_string(), 0o644, None);
        assert!(later.is_err());
        drop(pool);
        assert!(!dir.path().join("later").exists());
        assert_eq!(std::fs::read(dir.path().join("taken")).unwrap(), b"x");
    }
}
