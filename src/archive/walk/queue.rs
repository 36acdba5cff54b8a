//! The queue of directories still to be listed, which several threads
//! share while walking a tree: each takes a directory, lists it, and hands
//! back the subdirectories it found, until none is left and none is being
//! listed.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::SourceEntry;
use crate::archive::ignore_rules::NestedRules;
use crate::error::Error;

/// Threads walking a tree, whatever the number of cores: listing waits on
/// the kernel's directory locks as well as on the CPU, so even on 2 cores 4
/// threads gain over 2, and more gain nothing.
const WALK_THREADS: usize = 4;

/// A directory still to be listed.
pub(super) struct Pending {
    /// The open directory it is in (the root itself for the root).
    pub(super) parent: Arc<OwnedFd>,
    /// Its name in `parent` (`.` for the root).
    pub(super) name: CString,
    /// Its absolute path, for messages and ignore rules.
    pub(super) path: PathBuf,
    /// Its path inside the bundle (empty for the root).
    pub(super) rel: String,
    /// The `.shpignore` rules of the directories above it.
    pub(super) rules: Option<Arc<NestedRules>>,
}

/// What listing some directories found.
#[derive(Default)]
pub(super) struct Found {
    pub(super) entries: Vec<SourceEntry>,
    pub(super) warnings: Vec<String>,
    /// Each failure with the bundle path it concerns, so the first in bundle
    /// order can be reported whatever thread met it first.
    pub(super) errors: Vec<(String, Error)>,
    /// Subdirectories of the directory just listed, handed to the queue
    /// after each one (so never merged by [`Found::absorb`]).
    pub(super) subdirs: Vec<Pending>,
}

impl Found {
    fn absorb(&mut self, other: Found) {
        self.entries.extend(other.entries);
        self.warnings.extend(other.warnings);
        self.errors.extend(other.errors);
    }
}

/// Lists `root` and every directory below it on [`WALK_THREADS`] threads,
/// which take directories from one queue: a thread that finishes a
/// directory starts on the next at once, without waiting for the others to
/// end a level of the tree. `list` lists one directory into a [`Found`],
/// with the subdirectories to list next in [`Found::subdirs`].
pub(super) fn list_in_parallel<F>(root: Pending, list: F) -> Found
where
    F: Fn(&Pending, &mut Found) + Sync,
{
    let queue = WorkQueue::new(root);
    let list_all = || {
        let mut found = Found::default();
        while let Some(dir) = queue.take() {
            let mut taken = Taken {
                queue: &queue,
                subdirs: Vec::new(),
            };
            list(&dir, &mut found);
            taken.subdirs = std::mem::take(&mut found.subdirs);
        }
        found
    };
    let merged = Mutex::new(Found::default());
    std::thread::scope(|scope| {
        for _ in 0..WALK_THREADS {
            scope.spawn(|| {
                let found = list_all();
                let mut merged = merged.lock().unwrap_or_else(PoisonError::into_inner);
                merged.absorb(found);
            });
        }
    });
    merged.into_inner().unwrap_or_else(PoisonError::into_inner)
}

/// The directories still to be listed, shared by the walking threads.
struct WorkQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    pending: Vec<Pending>,
    /// Directories taken and not yet done: they may add more.
    listing: usize,
}

impl WorkQueue {
    fn new(root: Pending) -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                pending: vec![root],
                listing: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// The next directory to list, waiting while other threads may still
    /// find some; `None` once every directory is listed.
    fn take(&self) -> Option<Pending> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(dir) = state.pending.pop() {
                state.listing += 1;
                return Some(dir);
            }
            if state.listing == 0 {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Ends the listing of a directory taken with [`WorkQueue::take`],
    /// queueing the subdirectories it found.
    fn done(&self, subdirs: Vec<Pending>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.listing -= 1;
        let wake = !subdirs.is_empty() || state.listing == 0;
        state.pending.extend(subdirs);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }
}

/// A directory being listed: dropped, even by a panic, it tells the queue
/// the listing is over (with the subdirectories found), so the other
/// threads never wait for it in vain.
struct Taken<'q> {
    queue: &'q WorkQueue,
    subdirs: Vec<Pending>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.queue.done(std::mem::take(&mut self.subdirs));
    }
}
