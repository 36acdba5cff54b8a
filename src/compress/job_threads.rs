//! A fixed set of threads taking jobs from one queue, each with state of its
//! own (a compressor, a decompressor) made once on the thread. The parallel
//! gzip writer and reader both run their libdeflate work on one.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Threads that run jobs of type `J`; dropping them (or [`JobThreads::finish`])
/// closes the queue and waits until every job taken has run.
pub struct JobThreads<J> {
    jobs: Option<SyncSender<J>>,
    workers: Vec<JoinHandle<()>>,
    /// What the threads do, for errors: "compression", "inflating".
    what: &'static str,
}

impl<J: Send + 'static> JobThreads<J> {
    /// Starts `threads` threads (at least one), each making its state with
    /// `init` and then passing it with every job it takes to `run`; a `run`
    /// that returns false ends its thread. Up to `threads` jobs wait in the
    /// queue.
    pub fn start<S, I, R>(threads: usize, what: &'static str, init: I, run: R) -> Self
    where
        I: Fn() -> S + Send + Clone + 'static,
        R: Fn(&mut S, J) -> bool + Send + Clone + 'static,
    {
        let threads = threads.max(1);
        let (jobs, job_rx) = mpsc::sync_channel::<J>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let (init, run) = (init.clone(), run.clone());
                std::thread::spawn(move || {
                    let mut state = init();
                    while let Some(job) = next_job(&job_rx) {
                        if !run(&mut state, job) {
                            return;
                        }
                    }
                })
            })
            .collect();
        JobThreads {
            jobs: Some(jobs),
            workers,
            what,
        }
    }

    /// Queues `job`, waiting while the queue is full.
    pub fn submit(&self, job: J) -> io::Result<()> {
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("the {} threads were stopped", self.what)))?
            .send(job)
            .map_err(|_| io::Error::other(format!("a {} thread stopped", self.what)))
    }
}

impl<J> JobThreads<J> {
    /// Closes the queue and waits for the threads to run what is in it.
    pub fn finish(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl<J> Drop for JobThreads<J> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The next job from the shared queue; None once it is closed and empty.
fn next_job<J>(jobs: &Mutex<Receiver<J>>) -> Option<J> {
    jobs.lock().ok()?.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_on_a_thread_with_its_own_state() {
        let (done_tx, done_rx) = mpsc::channel();
        let mut threads = JobThreads::start(
            3,
            "test",
            || 0u32,
            move |taken: &mut u32, job: u32| {
                *taken += 1;
                done_tx.send((job, *taken)).is_ok()
            },
        );
        for job in 0..100 {
            threads.submit(job).unwrap();
        }
        threads.finish();
        let mut jobs: Vec<u32> = done_rx.try_iter().map(|(job, _)| job).collect();
        jobs.sort_unstable();
        assert_eq!(jobs, (0..100).collect::<Vec<_>>());
        assert!(threads.submit(1).is_err(), "no jobs after finish");
    }

    #[test]
    fn a_thread_that_stops_is_reported_to_the_submitter() {
        let threads = JobThreads::start(1, "test", || (), |_: &mut (), _: u32| false);
        // The one thread stops after its first job; the queue holds one
        // more, and the next send finds no receiver.
        let results: Vec<bool> = (0..4).map(|job| threads.submit(job).is_ok()).collect();
        assert!(results.contains(&false), "{results:?}");
    }
}
