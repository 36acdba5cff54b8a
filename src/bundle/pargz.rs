//! Parallel gzip: the input is cut into fixed 1 MiB blocks, each compressed
//! on a worker thread as raw deflate ending in a sync flush (the last one
//! finished), and the pieces are written in order as one gzip member, as
//! pigz does. The block size, not the thread count, decides the bytes, so
//! the output is the same on any machine.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// Uncompressed bytes per block.
pub const BLOCK_SIZE: usize = 1 << 20;

/// The gzip OS byte for "unknown", so the output does not depend on the host.
const OS_UNKNOWN: u8 = 255;

struct Job {
    index: u64,
    data: Vec<u8>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// A `Write` that gzip-compresses on `threads` worker threads.
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    level: Compression,
    block: Vec<u8>,
    crc: Crc,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    pending: BTreeMap<u64, Vec<u8>>,
    next_index: u64,
    next_to_write: u64,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// Writes the gzip header to `inner` and starts the workers.
    pub fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let xfl = match level.level() {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN])?;
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let job_rx = job_rx.clone();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || worker(&job_rx, &done_tx, level))
            })
            .collect();
        Ok(ParallelGzWriter {
            inner,
            level,
            block: Vec::with_capacity(BLOCK_SIZE),
            crc: Crc::new(),
            jobs: Some(jobs),
            done,
            workers,
            pending: BTreeMap::new(),
            next_index: 0,
            next_to_write: 0,
            max_in_flight: (threads * 2) as u64,
        })
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        self.jobs = None;
        while self.next_to_write < self.next_index {
            self.receive_one()?;
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }

    /// The compression level in use.
    pub fn level(&self) -> Compression {
        self.level
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        jobs.send(Job {
            index: self.next_index,
            data,
            last,
        })
        .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.next_index += 1;
        while self.next_index - self.next_to_write > self.max_in_flight {
            self.receive_one()?;
        }
        while let Ok((index, result)) = self.done.try_recv() {
            self.store(index, result)?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let (index, result) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.store(index, result)
    }

    fn store(&mut self, index: u64, result: io::Result<Vec<u8>>) -> io::Result<()> {
        self.pending.insert(index, result?);
        while let Some(bytes) = self.pending.remove(&self.next_to_write) {
            self.inner.write_all(&bytes)?;
            self.next_to_write += 1;
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK_SIZE - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.block.len() == BLOCK_SIZE {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &mpsc::Sender<Done>, level: Compression) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if done
            .send((job.index, compress_block(&job.data, job.last, level)))
            .is_err()
        {
            return;
        }
    }
}

/// Raw deflate of one block: sync-flushed so the next block can follow, or
/// finished when it is the last.
fn compress_block(data: &[u8], last: bool, level: Compression) -> io::Result<Vec<u8>> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    encoder.write_all(data)?;
    if last {
        return encoder.finish();
    }
    encoder.flush()?;
    Ok(std::mem::take(encoder.get_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), Compression::new(6), threads).unwrap();
        for chunk in data.chunks(100_003) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn output_is_valid_gzip_and_independent_of_thread_count() {
        for len in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, 3 * BLOCK_SIZE + 17] {
            let data = sample(len);
            let one = gz(&data, 1);
            assert_eq!(one, gz(&data, 4), "len {len}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    #[test]
    fn gnu_gzip_accepts_it() {
        let data = sample(2 * BLOCK_SIZE + 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, gz(&data, 2)).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data);
    }
}
