//! The walk's shared queue of directories, and the reader that hands their
//! entries out in bundle order while the rest of the tree is still being
//! listed.
//!
//! Bundle order is byte order of the entries' paths. Everything below a
//! directory `d` sorts together, as the paths starting with `d/`, so a
//! directory's listing can be put in order on its own: its entries by
//! path, and each subdirectory's contents as one step keyed `d/sub/`,
//! filled in once that subdirectory is listed. The walking threads take
//! the pending directory that comes first in that order, so the reader
//! rarely waits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::bundle::walk::SourceEntry;
use crate::error::{Error, Result};

/// A directory still to be listed, as the queue knows it.
pub struct Queued<P> {
    /// Its number, which its listing is filed under.
    pub id: usize,
    /// Its place in bundle order: its path inside the bundle and a `/`
    /// (empty for the root).
    pub key: String,
    /// Whatever the walking threads need to list it.
    pub dir: P,
}

/// What listing one directory found.
#[derive(Default)]
pub struct Listing {
    /// Its entries, in any order.
    pub entries: Vec<SourceEntry>,
    /// Its subdirectories, each with its key and number.
    pub subdirs: Vec<(String, usize)>,
    /// Something in it could not be walked: the reader stops there.
    pub failed: bool,
    /// The summed weight of `entries` (see [`WorkQueue::new`]).
    pub weight: u64,
}

/// The directories to list and the listings not yet read, shared by the
/// walking threads and the reader.
pub struct WorkQueue<P> {
    state: Mutex<QueueState<P>>,
    changed: Condvar,
    next_id: AtomicUsize,
}

struct QueueState<P> {
    /// Directories waiting, by key: threads take the first.
    pending: BTreeMap<String, Queued<P>>,
    /// Directories taken and not yet done: they may add more.
    listing: usize,
    /// Listings done and not yet read, by directory number.
    listed: HashMap<usize, Listing>,
    /// The summed weight of every entry listed so far.
    weight: u64,
}

impl<P> WorkQueue<P> {
    /// A queue holding the root directory (number 0, key "").
    pub fn new(root: P) -> Self {
        let root = Queued {
            id: 0,
            key: String::new(),
            dir: root,
        };
        WorkQueue {
            state: Mutex::new(QueueState {
                pending: BTreeMap::from([(String::new(), root)]),
                listing: 0,
                listed: HashMap::new(),
                weight: 0,
            }),
            changed: Condvar::new(),
            next_id: AtomicUsize::new(1),
        }
    }

    /// A number for a newly found directory.
    pub fn new_id(&self) -> usize {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<P>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, QueueState<P>>) -> MutexGuard<'g, QueueState<P>> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The first directory in bundle order still to list, waiting while
    /// other threads may still find some; `None` once every directory is
    /// listed.
    pub fn take(&self) -> Option<Queued<P>> {
        let mut state = self.lock();
        loop {
            if let Some((_, dir)) = state.pending.pop_first() {
                state.listing += 1;
                return Some(dir);
            }
            if state.listing == 0 {
                return None;
            }
            state = self.wait(state);
        }
    }

    /// Ends the listing of directory `id`, taken with [`WorkQueue::take`],
    /// queueing the subdirectories it found.
    pub fn done(&self, id: usize, listing: Listing, subdirs: Vec<Queued<P>>) {
        let mut state = self.lock();
        state.listing -= 1;
        state.weight += listing.weight;
        state.listed.insert(id, listing);
        for dir in subdirs {
            state.pending.insert(dir.key.clone(), dir);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The listing of directory `id`, once it is done.
    fn listing_of(&self, id: usize) -> Listing {
        let mut state = self.lock();
        loop {
            if let Some(listing) = state.listed.remove(&id) {
                return listing;
            }
            state = self.wait(state);
        }
    }

    /// The summed weight of all entries, once every directory is listed.
    fn total_weight(&self) -> Option<u64> {
        let state = self.lock();
        (state.pending.is_empty() && state.listing == 0).then_some(state.weight)
    }
}

/// A directory being listed: dropped, even by a panic, it hands its
/// listing (marked failed unless [`Taken::finish`] was called) to the
/// queue, so neither the other threads nor the reader wait for it in vain.
pub struct Taken<'q, P> {
    queue: &'q WorkQueue<P>,
    id: usize,
    result: Option<(Listing, Vec<Queued<P>>)>,
}

impl<'q, P> Taken<'q, P> {
    /// Marks directory `id` of `queue` as being listed.
    pub fn new(queue: &'q WorkQueue<P>, id: usize) -> Self {
        Taken {
            queue,
            id,
            result: None,
        }
    }

    /// The listing is complete.
    pub fn finish(mut self, listing: Listing, subdirs: Vec<Queued<P>>) {
        self.result = Some((listing, subdirs));
    }
}

impl<P> Drop for Taken<'_, P> {
    fn drop(&mut self) {
        let (listing, subdirs) = self.result.take().unwrap_or_else(|| {
            let failed = Listing {
                failed: true,
                ..Listing::default()
            };
            (failed, Vec::new())
        });
        self.queue.done(self.id, listing, subdirs);
    }
}

/// One step of a directory's listing in bundle order.
enum Step {
    Entry(SourceEntry),
    /// The contents of the subdirectory with this number.
    Below(usize),
}

/// The entries of a walk in bundle order, each handed out as soon as
/// everything before it is listed. Where the walk failed it yields an
/// error and stops; which error the walk reports is decided once it ends
/// (the first in bundle order), so the error yielded here only stands in.
pub struct InOrder<'q, P> {
    queue: &'q WorkQueue<P>,
    /// The steps left in each directory being read, innermost last.
    stack: Vec<VecDeque<Step>>,
    started: bool,
    stopped: bool,
}

impl<'q, P> InOrder<'q, P> {
    /// Reads `queue`'s listings from the root on.
    pub fn new(queue: &'q WorkQueue<P>) -> Self {
        InOrder {
            queue,
            stack: Vec::new(),
            started: false,
            stopped: false,
        }
    }

    /// A handle on how far the walk has got, usable while this reader is
    /// borrowed elsewhere.
    pub fn progress(&self) -> WalkProgress<'q, P> {
        WalkProgress { queue: self.queue }
    }

    /// Puts directory `id`'s listing, once done, in order on the stack;
    /// false when that directory failed.
    fn descend(&mut self, id: usize) -> bool {
        let listing = self.queue.listing_of(id);
        if listing.failed {
            return false;
        }
        let mut steps: Vec<(String, Step)> = listing
            .entries
            .into_iter()
            .map(|entry| (entry.rel.clone(), Step::Entry(entry)))
            .chain(
                listing
                    .subdirs
                    .into_iter()
                    .map(|(key, id)| (key, Step::Below(id))),
            )
            .collect();
        steps.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.stack
            .push(steps.into_iter().map(|(_, step)| step).collect());
        true
    }

    fn stop(&mut self) -> Option<Result<SourceEntry>> {
        self.stopped = true;
        self.stack.clear();
        Some(Err(Error::InvalidInput(
            "the source directory could not be walked".to_string(),
        )))
    }
}

impl<P> Iterator for InOrder<'_, P> {
    type Item = Result<SourceEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        if !self.started {
            self.started = true;
            if !self.descend(0) {
                return self.stop();
            }
        }
        loop {
            let step = match self.stack.last_mut() {
                None => return None,
                Some(steps) => steps.pop_front(),
            };
            match step {
                None => {
                    self.stack.pop();
                }
                Some(Step::Entry(entry)) => return Some(Ok(entry)),
                Some(Step::Below(id)) => {
                    if !self.descend(id) {
                        return self.stop();
                    }
                }
            }
        }
    }
}

/// How far a walk has got, for a reader's consumer.
pub struct WalkProgress<'q, P> {
    queue: &'q WorkQueue<P>,
}

impl<P> Clone for WalkProgress<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for WalkProgress<'_, P> {}

impl<P> WalkProgress<'_, P> {
    /// The summed weight of every entry of the walk, once every directory
    /// is listed.
    pub fn total_weight(&self) -> Option<u64> {
        self.queue.total_weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::walk::SourceKind;
    use std::sync::mpsc;
    use std::time::Duration;

    fn entry(rel: &str) -> SourceEntry {
        SourceEntry {
            rel: rel.to_string(),
            kind: SourceKind::Dir,
        }
    }

    /// Lists directory `id` as having `names` in it, of which `subdirs` are
    /// directories (numbered by the caller), each of weight 1.
    fn list(queue: &WorkQueue<()>, id: usize, names: &[&str], subdirs: &[(&str, usize)]) {
        let listing = Listing {
            entries: names.iter().map(|n| entry(n)).collect(),
            subdirs: subdirs.iter().map(|(k, i)| (k.to_string(), *i)).collect(),
            failed: false,
            weight: names.len() as u64,
        };
        let queued = subdirs
            .iter()
            .map(|(key, id)| Queued {
                id: *id,
                key: key.to_string(),
                dir: (),
            })
            .collect();
        queue.done(id, listing, queued);
    }

    /// Names the reader hands out within `wait`, or None if it waits longer.
    fn next_name(rx: &mpsc::Receiver<Result<String>>, wait: Duration) -> Option<String> {
        rx.recv_timeout(wait).ok().map(|r| r.unwrap())
    }

    #[test]
    fn entries_come_out_in_bundle_order_as_soon_as_what_sorts_before_them_is_listed() {
        let queue = WorkQueue::new(());
        assert_eq!(queue.take().map(|q| q.id), Some(0));
        // The root holds a, a-b, a.b, c and the directories a and b.
        list(
            &queue,
            0,
            &["c", "a", "b", "a-b", "a.b"],
            &[("b/", 2), ("a/", 1)],
        );
        // Threads take the directory that comes first in bundle order.
        let a = queue.take().unwrap();
        assert_eq!((a.id, a.key.as_str()), (1, "a/"));
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            let reading = &queue;
            scope.spawn(move || {
                for item in InOrder::new(reading) {
                    let _ = tx.send(item.map(|e| e.rel));
                }
            });
            let short = Duration::from_millis(200);
            let long = Duration::from_secs(10);
            // "a-b" and "a.b" sort before "a/...": a's listing is not needed.
            for expected in ["a", "a-b", "a.b"] {
                assert_eq!(next_name(&rx, long).as_deref(), Some(expected));
            }
            assert_eq!(next_name(&rx, short), None, "waits for a's listing");
            assert_eq!(queue.total_weight(), None, "a and b are not listed");
            list(&queue, 1, &["a/0"], &[]);
            assert_eq!(next_name(&rx, long).as_deref(), Some("a/0"));
            assert_eq!(next_name(&rx, long).as_deref(), Some("b"));
            assert_eq!(next_name(&rx, short), None, "waits for b's listing");
            let b = queue.take().unwrap();
            assert_eq!(b.id, 2);
            list(&queue, 2, &["b/1"], &[]);
            for expected in ["b/1", "c"] {
                assert_eq!(next_name(&rx, long).as_deref(), Some(expected));
            }
            assert_eq!(next_name(&rx, long), None, "and then nothing");
            assert_eq!(queue.total_weight(), Some(7));
        });
    }

    #[test]
    fn a_failed_directory_stops_the_reader() {
        let queue = WorkQueue::new(());
        queue.take().unwrap();
        list(&queue, 0, &["a", "b"], &[("a/", 1)]);
        let a = queue.take().unwrap();
        // Dropped without finishing, as by a panic: the listing is failed.
        drop(Taken::new(&queue, a.id));
        let items: Vec<_> = InOrder::new(&queue).collect();
        assert_eq!(items.len(), 2, "a, then the stop");
        assert_eq!(items[0].as_ref().unwrap().rel, "a");
        assert!(items[1].is_err());
        assert!(
            queue.take().is_none(),
            "the other threads are not kept waiting"
        );
    }
}
