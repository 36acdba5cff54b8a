//! Parallel gzip: the input is cut into fixed 1 MiB blocks, each compressed
//! on a worker thread with libdeflate into gzip members of its own (see
//! [`gzip_member`]), written in order. Inside a block, runs of 64 KiB
//! segments that look incompressible (byte statistics close to random, as in
//! images or archives) are stored rather than deflated, which saves the
//! compressor's time where it would gain nothing. The block size, not the
//! thread count, decides the bytes, so the output is the same on any machine.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver};

use libdeflater::{CompressionLvl, Compressor};

use crate::compress::gzip_member;
use crate::compress::job_threads::JobThreads;
use crate::read_into::{ReadFn, ReadInto};

/// Uncompressed bytes per block.
pub const BLOCK_SIZE: usize = 1 << 20;

/// Bytes classified together as compressible or not.
const SEGMENT_SIZE: usize = 64 * 1024;

/// A segment is stored when its bytes' collision entropy is at least
/// log2 of this (about 7.9 bits per byte of 8): deflate could save at most a
/// percent or so there.
const INCOMPRESSIBLE_SYMBOLS: u64 = 240;

/// Bytes looked at first; below log2 of [`PROBE_SYMBOLS`] (7 bits per byte)
/// there, a segment is compressed without a look at the rest. Random bytes
/// score about 7.9 even on this few.
const PROBE_SIZE: usize = 4096;
const PROBE_SYMBOLS: u64 = 128;

/// A block to compress (the first `len` bytes of `data`), with a buffer to
/// write its members into.
struct Job {
    index: u64,
    data: Vec<u8>,
    len: usize,
    out: Vec<u8>,
}

/// A compressed block, and its input buffer back for the next block.
struct Done {
    index: u64,
    members: io::Result<Vec<u8>>,
    data: Vec<u8>,
}

/// A `Write` that gzip-compresses on `threads` worker threads.
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    /// The block being filled: always [`BLOCK_SIZE`] long, so a reader can
    /// fill it in place (see [`ReadInto`]); its first `filled` bytes are data.
    block: Vec<u8>,
    filled: usize,
    done: Receiver<Done>,
    workers: JobThreads<Job>,
    pending: BTreeMap<u64, Vec<u8>>,
    /// Buffers of blocks already compressed or written, used again rather
    /// than allocated (and zeroed and page-faulted in) for every block.
    spare_blocks: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    next_index: u64,
    next_to_write: u64,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// Starts the workers for gzip `level` (1 to 9).
    pub fn new(inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let level = CompressionLvl::new(level as i32)
            .map_err(|_| io::Error::other(format!("gzip level {level} is not between 1 and 9")))?;
        let xfl = match i32::from(level) {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        let (done_tx, done) = mpsc::channel::<Done>();
        let workers = JobThreads::start(
            threads,
            "compression",
            move || (Compressor::new(level), Vec::new()),
            move |(compressor, scratch): &mut (Compressor, Vec<u8>), job: Job| {
                let Job {
                    index,
                    data,
                    len,
                    out,
                } = job;
                let members = compress_block(&data[..len], out, compressor, scratch, xfl);
                done_tx
                    .send(Done {
                        index,
                        members,
                        data,
                    })
                    .is_ok()
            },
        );
        Ok(ParallelGzWriter {
            inner,
            block: vec![0; BLOCK_SIZE],
            filled: 0,
            done,
            workers,
            pending: BTreeMap::new(),
            spare_blocks: Vec::new(),
            spare_outputs: Vec::new(),
            next_index: 0,
            next_to_write: 0,
            max_in_flight: (threads * 2) as u64,
        })
    }

    /// Compresses what is left and returns the inner writer. An empty input
    /// still gives one (empty) member, so the output is valid gzip.
    pub fn finish(mut self) -> io::Result<W> {
        if self.filled > 0 || self.next_index == 0 {
            self.dispatch()?;
        }
        while self.next_to_write < self.next_index {
            self.receive_one()?;
        }
        self.workers.finish();
        Ok(self.inner)
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let next = self
            .spare_blocks
            .pop()
            .unwrap_or_else(|| vec![0; BLOCK_SIZE]);
        let data = std::mem::replace(&mut self.block, next);
        let len = std::mem::take(&mut self.filled);
        let out = self.spare_outputs.pop().unwrap_or_default();
        self.workers.submit(Job {
            index: self.next_index,
            data,
            len,
            out,
        })?;
        self.next_index += 1;
        while self.next_index - self.next_to_write > self.max_in_flight {
            self.receive_one()?;
        }
        while let Ok(done) = self.done.try_recv() {
            self.store(done)?;
        }
        Ok(())
    }

    /// Counts `n` more bytes in the block, and sends it off once it is full.
    fn took(&mut self, n: usize) -> io::Result<()> {
        self.filled += n;
        if self.filled == BLOCK_SIZE {
            self.dispatch()?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.store(done)
    }

    fn store(&mut self, done: Done) -> io::Result<()> {
        let Done {
            index,
            members,
            data,
        } = done;
        self.spare_blocks.push(data);
        self.pending.insert(index, members?);
        while let Some(mut bytes) = self.pending.remove(&self.next_to_write) {
            self.inner.write_all(&bytes)?;
            self.next_to_write += 1;
            bytes.clear();
            self.spare_outputs.push(bytes);
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK_SIZE - self.filled);
        self.block[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.took(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> ReadInto for ParallelGzWriter<W> {
    /// `read` fills the rest of the current block in place.
    fn read_into(&mut self, _scratch: &mut [u8], read: &mut ReadFn<'_>) -> io::Result<usize> {
        let n = read(&mut self.block[self.filled..])?;
        self.took(n)?;
        Ok(n)
    }
}

/// One block as gzip members, written into `out` (empty): one per run of
/// segments that are all compressible (deflated) or all incompressible
/// (stored). Deflate writes into `scratch`, which is zeroed only when it
/// grows, and the bytes it wrote are copied to `out`: cheaper than zeroing
/// room for the worst case in `out` for every run.
fn compress_block(
    data: &[u8],
    mut out: Vec<u8>,
    compressor: &mut Compressor,
    scratch: &mut Vec<u8>,
    xfl: u8,
) -> io::Result<Vec<u8>> {
    out.reserve(data.len() / 2 + 256);
    for (stored, run) in runs(data) {
        gzip_member::write(&mut out, run, xfl, |out| {
            if stored {
                gzip_member::store(out, run);
                return Ok(());
            }
            let bound = compressor.deflate_compress_bound(run.len());
            if scratch.len() < bound {
                scratch.resize(bound, 0);
            }
            let n = compressor
                .deflate_compress(run, scratch)
                .map_err(io::Error::other)?;
            out.extend_from_slice(&scratch[..n]);
            Ok(())
        })?;
    }
    Ok(out)
}

/// `data` cut into maximal runs of segments of the same kind, each with
/// whether it is incompressible. Empty data is one empty stored run.
fn runs(data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut runs: Vec<(bool, &[u8])> = Vec::new();
    let mut start = 0;
    let mut kind = None;
    for (i, segment) in data.chunks(SEGMENT_SIZE).enumerate() {
        let stored = incompressible(segment);
        let offset = i * SEGMENT_SIZE;
        if let Some(previous) = kind.filter(|&k| k != stored) {
            runs.push((previous, &data[start..offset]));
            start = offset;
        }
        kind = Some(stored);
    }
    runs.push((kind.unwrap_or(true), &data[start..]));
    runs
}

/// Whether the byte statistics of `segment` are close to those of random
/// data: its collision entropy, -log2 of the sum of squared byte
/// frequencies, is above log2([`INCOMPRESSIBLE_SYMBOLS`]). A look at its
/// first [`PROBE_SIZE`] bytes settles most segments (text is far from
/// random) at a fraction of the cost. Integer arithmetic only, so every
/// machine decides alike.
fn incompressible(segment: &[u8]) -> bool {
    segment.len() >= SEGMENT_SIZE / 4
        && looks_random(&segment[..PROBE_SIZE.min(segment.len())], PROBE_SYMBOLS)
        && looks_random(segment, INCOMPRESSIBLE_SYMBOLS)
        && !has_repeats(segment)
}

/// Whether more than 1% of the 8-byte strings of `bytes` (at every 4th
/// position) occurred earlier in it: the repeats deflate would find and
/// byte statistics cannot show (periodic data, a file stored twice).
fn has_repeats(bytes: &[u8]) -> bool {
    const TABLE_BITS: u32 = 13;
    let mut last = [u32::MAX; 1 << TABLE_BITS];
    let (mut samples, mut repeats) = (0usize, 0usize);
    for i in (0..bytes.len().saturating_sub(8)).step_by(4) {
        let word = &bytes[i..i + 8];
        let hash = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let slot = (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TABLE_BITS)) as usize;
        let earlier = last[slot] as usize;
        if earlier != u32::MAX as usize && bytes[earlier..earlier + 8] == *word {
            repeats += 1;
        }
        last[slot] = i as u32;
        samples += 1;
    }
    repeats * 100 > samples
}

/// Whether `bytes` have a collision entropy of at least log2(`symbols`).
fn looks_random(bytes: &[u8], symbols: u64) -> bool {
    let mut counts = [[0u32; 256]; 4];
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let squares: u64 = (0..256)
        .map(|i| {
            let c = counts.iter().map(|t| u64::from(t[i])).sum::<u64>();
            c * c
        })
        .sum();
    let n = bytes.len() as u64;
    n * n >= symbols * squares
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads).unwrap();
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
            flate2::read::MultiGzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    fn random(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn random_runs_are_stored_and_the_rest_deflated() {
        let text = sample(3 * SEGMENT_SIZE);
        let noise = random(5 * SEGMENT_SIZE);
        assert!(incompressible(&noise[..SEGMENT_SIZE]));
        assert!(!incompressible(&text[..SEGMENT_SIZE]));
        assert!(!incompressible(&noise[..1000]), "too short to tell");
        // Random bytes repeated: byte statistics of noise, yet deflate halves it.
        let twice = [&noise[..SEGMENT_SIZE / 2], &noise[..SEGMENT_SIZE / 2]].concat();
        assert!(!incompressible(&twice));
        let mixed = [&text[..], &noise[..], &text[..]].concat();
        let kinds: Vec<(bool, usize)> = runs(&mixed).iter().map(|(k, r)| (*k, r.len())).collect();
        assert_eq!(
            kinds,
            [
                (false, text.len()),
                (true, noise.len()),
                (false, text.len())
            ]
        );
        // Stored: the size of the input plus a few bytes per 64 KiB.
        let stored = gz(&noise, 2).len();
        assert!(
            stored > noise.len() && stored < noise.len() + noise.len() / 1000,
            "{stored}"
        );
        assert!(gz(&text, 2).len() < text.len() / 10);
    }

    #[test]
    fn reused_buffers_leave_nothing_behind() {
        // Stored blocks (large members) and deflated ones (small) take turns,
        // so each block's buffers held another kind of block before; every
        // block must still come out exactly as when it is compressed alone.
        let mut data: Vec<u8> = (0..10)
            .flat_map(|i| {
                if i % 2 == 0 {
                    random(BLOCK_SIZE)
                } else {
                    sample(BLOCK_SIZE)
                }
            })
            .collect();
        data.extend(sample(12_345));
        let alone: Vec<u8> = data.chunks(BLOCK_SIZE).flat_map(|b| gz(b, 1)).collect();
        assert_eq!(gz(&data, 2), alone);
        assert_eq!(gz(&data, 1), alone);
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
