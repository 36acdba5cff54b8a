//! The limits of an extraction: how many entries an archive may hold, how
//! many bytes its entries may declare, and how many bytes may come out of
//! the decompressor, counted as they are read so that a decompression bomb
//! stops before it fills the disk or the memory.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

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

/// Counts what an archive holds against its [`ExtractLimits`]: headers and
/// the sizes they declare as each entry is met, and the bytes coming out of
/// the decompressor through a shared [`Meter`].
pub(super) struct Tally {
    limits: ExtractLimits,
    meter: Rc<Meter>,
    /// Headers seen, extracted or not.
    headers: u64,
    /// Sum of the sizes in the headers seen.
    declared: u64,
}

impl Tally {
    /// A tally with nothing counted yet.
    pub(super) fn new(limits: ExtractLimits) -> Self {
        Tally {
            meter: Rc::new(Meter::new(
                limits.max_bytes.saturating_add(STREAM_BASE_OVERHEAD),
            )),
            limits,
            headers: 0,
            declared: 0,
        }
    }

    /// Wraps the decompressed stream so every byte read from it is counted.
    pub(super) fn metered<R: Read>(&self, inner: R) -> MeteredReader<R> {
        MeteredReader {
            inner,
            meter: Rc::clone(&self.meter),
        }
    }

    /// Starts a run of headers (reading towards the next entry).
    pub(super) fn begin_header(&self) {
        self.meter.begin_header();
    }

    /// Ends a run of headers (the next entry, if any, has been read).
    pub(super) fn end_header(&self) {
        self.meter.end_header();
    }

    /// Counts one header against the entry limit.
    pub(super) fn count_header(&mut self) -> Result<()> {
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
    pub(super) fn count_declared(&mut self, size: u64, shown: &str) -> Result<()> {
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

    /// The error for a failed read of the stream when it failed because a
    /// limit was exceeded; `at` tells where, for the message.
    pub(super) fn exceeded(&self, at: &str) -> Option<Error> {
        match self.meter.tripped.get()? {
            Trip::Total => Some(Error::UnsafeArchive(format!(
                "archive expands to more than {} bytes{at}; raise --max-extract-size if this is expected",
                self.limits.max_bytes
            ))),
            Trip::Header => Some(Error::UnsafeArchive(format!(
                "archive has more than {MAX_HEADER_BYTES} bytes of long-name or pax headers{at}; \
                 this is not a source bundle ocistep can extract"
            ))),
        }
    }
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
pub(super) struct MeteredReader<R> {
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
