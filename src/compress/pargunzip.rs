//! Reading gzip with the members ocistep writes ([`gzip_member`]) inflated
//! in parallel: their headers give their sizes, so the stream is cut into
//! members as it arrives and each is inflated whole by libdeflate on a
//! worker thread, while the output is handed back in order. Any other member
//! (gzip written by another tool) is inflated in line as a stream, so every
//! valid gzip reads the same as with a plain decoder, and whatever follows
//! the last member must be gzip too.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};

use flate2::bufread::GzDecoder;
use libdeflater::Decompressor;

use crate::compress::gzip_member::{self, HEADER_LEN};
use crate::compress::job_threads::JobThreads;
use crate::compress::pargz::BLOCK_SIZE;

/// Largest member taken whole: a block stored uncompressed plus framing fits
/// well within it. A bigger recorded size is read as a stream.
const MAX_MEMBER_SIZE: usize = 2 * BLOCK_SIZE;

/// Most inflating threads.
const MAX_THREADS: usize = 4;

/// Size of the input buffer.
const INPUT_BUFFER: usize = 256 * 1024;

/// What a worker hands back: the member's buffer (for reuse) and the
/// inflated bytes.
type Inflated = (Vec<u8>, io::Result<Vec<u8>>);

/// A member to inflate, a buffer to inflate it into, and where to answer.
struct Job {
    member: Vec<u8>,
    out: Vec<u8>,
    answer: SyncSender<Inflated>,
}

/// A `Read` of the uncompressed bytes of a gzip stream.
pub struct ParallelGzReader<R: Read> {
    input: Option<Input<R>>,
    streaming: Option<GzDecoder<Input<R>>>,
    pool: Option<JobThreads<Job>>,
    queue: VecDeque<Receiver<Inflated>>,
    out: Vec<u8>,
    pos: usize,
    /// Buffers that served before, so memory stays flat over a long stream.
    spare_members: Vec<Vec<u8>>,
    spare_outs: Vec<Vec<u8>>,
    threads: usize,
    /// The next member is not one of ours: inflate it as a stream once the
    /// queue is drained.
    stream_next: bool,
    /// At least one member was read, so the end of input is a clean end.
    started: bool,
    done: bool,
}

impl<R: Read> ParallelGzReader<R> {
    /// Reads gzip from `inner`, inflating on up to as many threads as there
    /// are cores (at most four).
    pub fn new(inner: R) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(inner, cores.min(MAX_THREADS))
    }

    /// Reads gzip from `inner`, inflating on `threads` threads.
    pub fn with_threads(inner: R, threads: usize) -> Self {
        ParallelGzReader {
            input: Some(Input::new(inner)),
            streaming: None,
            pool: None,
            queue: VecDeque::new(),
            out: Vec::new(),
            pos: 0,
            spare_members: Vec::new(),
            spare_outs: Vec::new(),
            threads: threads.max(1),
            stream_next: false,
            started: false,
            done: false,
        }
    }

    /// Reads members ahead while there is room in the queue.
    fn fill_queue(&mut self) -> io::Result<()> {
        while !self.done && !self.stream_next && self.queue.len() < self.threads {
            let input = self.input.as_mut().ok_or_else(lost_input)?;
            let header = input.peek(HEADER_LEN)?;
            if header.is_empty() && self.started {
                self.done = true;
                break;
            }
            match gzip_member::recorded_size(header).filter(|&s| s <= MAX_MEMBER_SIZE) {
                Some(size) => {
                    let mut member = self.spare_members.pop().unwrap_or_default();
                    input.take(size, &mut member)?;
                    let (answer, rx) = mpsc::sync_channel(1);
                    let out = self.spare_outs.pop().unwrap_or_default();
                    let threads = self.threads;
                    self.pool
                        .get_or_insert_with(|| inflating_threads(threads))
                        .submit(Job {
                            member,
                            out,
                            answer,
                        })?;
                    self.queue.push_back(rx);
                    self.started = true;
                }
                None => self.stream_next = true,
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ParallelGzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some(decoder) = self.streaming.as_mut() {
                let n = decoder.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.input = self.streaming.take().map(GzDecoder::into_inner);
                continue;
            }
            self.fill_queue()?;
            if let Some(next) = self.queue.pop_front() {
                let (member, inflated) = next
                    .recv()
                    .map_err(|_| io::Error::other("an inflating thread stopped"))?;
                self.spare_members.push(member);
                let done = std::mem::replace(&mut self.out, inflated?);
                self.spare_outs.push(done);
                self.pos = 0;
                continue;
            }
            if self.stream_next {
                self.stream_next = false;
                self.started = true;
                let input = self.input.take().ok_or_else(lost_input)?;
                self.streaming = Some(GzDecoder::new(input));
                continue;
            }
            return Ok(0);
        }
    }
}

fn lost_input() -> io::Error {
    io::Error::other("gzip reader lost its input")
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt gzip member: {what}"),
    )
}

/// Inflates one whole member into `out` and checks its length and CRC-32.
fn inflate(
    member: &[u8],
    mut out: Vec<u8>,
    decompressor: &mut Decompressor,
) -> io::Result<Vec<u8>> {
    let (crc, len) =
        gzip_member::trailer(member).ok_or_else(|| corrupt("shorter than its trailer".into()))?;
    if len > BLOCK_SIZE {
        return Err(corrupt(format!(
            "it claims {len} bytes, more than the {BLOCK_SIZE} a member holds"
        )));
    }
    out.clear();
    out.resize(len, 0);
    let n = decompressor
        .gzip_decompress(member, &mut out)
        .map_err(|e| corrupt(e.to_string()))?;
    if n != len || libdeflater::crc32(&out) != crc {
        return Err(corrupt(format!(
            "{n} bytes inflated do not match the {len} bytes and checksum its trailer records"
        )));
    }
    Ok(out)
}

/// Threads that inflate members, each answering on the job's own channel.
fn inflating_threads(threads: usize) -> JobThreads<Job> {
    JobThreads::start(
        threads,
        "inflating",
        Decompressor::new,
        |decompressor: &mut Decompressor, job: Job| {
            let Job {
                member,
                out,
                answer,
            } = job;
            let inflated = inflate(&member, out, decompressor);
            let _ = answer.send((member, inflated));
            true
        },
    )
}

/// A buffered reader that can look at the next bytes before deciding how to
/// read them.
struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0; INPUT_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The next `n` bytes without consuming them; fewer at the end of input.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(read) => self.end += read,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.start..self.end.min(self.start + n)])
    }

    /// The next `n` bytes, consumed into `out`; an error if the input ends
    /// first.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let buffered = n.min(self.end - self.start);
        out.clear();
        out.extend_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        out.resize(n, 0);
        self.inner.read_exact(&mut out[buffered..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), "the gzip stream ends inside a member")
            } else {
                e
            }
        })
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = loop {
                match self.inner.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::pargz::ParallelGzWriter;
    use std::io::Write;

    /// Text-like and random-looking bytes, so both deflated and stored
    /// members occur.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                if (i / 200_000) % 2 == 0 {
                    b"fn main() { let x = 42; }\n"[i % 26]
                } else {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                }
            })
            .collect()
    }

    fn ours(data: &[u8]) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn foreign(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Reads through tiny and odd-sized buffers, as tar does at times.
    fn read_all(gz: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let mut reader = ParallelGzReader::with_threads(gz, threads);
        let mut out = Vec::new();
        let mut buf = [0u8; 7919];
        loop {
            let n = reader.read(&mut buf[..1 + out.len() % 7918])?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn reads_its_own_members_and_any_other_gzip() {
        let data = sample(3 * BLOCK_SIZE + 12_345);
        let mixed = [
            ours(&data[..BLOCK_SIZE + 7]),
            foreign(&data[BLOCK_SIZE + 7..2 * BLOCK_SIZE]),
            ours(&data[2 * BLOCK_SIZE..]),
        ]
        .concat();
        for threads in [1, 3] {
            assert_eq!(read_all(&ours(&data), threads).unwrap(), data);
            assert_eq!(read_all(&foreign(&data), threads).unwrap(), data);
            assert_eq!(read_all(&mixed, threads).unwrap(), data);
            assert_eq!(read_all(&ours(b""), threads).unwrap(), b"");
        }
    }

    #[test]
    fn corruption_truncation_and_trailing_bytes_are_errors() {
        let data = sample(2 * BLOCK_SIZE);
        let good = ours(&data);
        let mut flipped = good.clone();
        let middle = flipped.len() / 3;
        flipped[middle] ^= 0x55;
        let mut inflated_len = good.clone();
        // The first member's recorded length, one byte too long.
        let first = gzip_member::recorded_size(&good).unwrap();
        inflated_len[first - 4] ^= 1;
        let cases = [
            ("flipped byte", flipped),
            ("length", inflated_len),
            ("truncated", good[..good.len() - 100].to_vec()),
            (
                "trailing garbage",
                [&good[..], b"garbage after the stream"].concat(),
            ),
        ];
        for (name, gz) in cases {
            assert!(read_all(&gz, 2).is_err(), "{name} was accepted");
        }
    }
}
