//! The packing thread's end of a streamed upload: compressed bytes go to
//! the PATCH until the tar stream is near its end, and the rest with the
//! closing PUT.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::Sender;

use crate::archive::walk::{SourceEntry, SourceKind};
use crate::registry::api::Feed;
use crate::signals;

/// Compressed chunks (up to about 1 MiB each) queued for a streamed upload.
pub const STREAM_CHUNKS_IN_FLIGHT: usize = 8;

/// Bytes a streamed PATCH must have carried before it may end early:
/// smaller layers go out in the PATCH whole.
const EARLY_END_AFTER: u64 = 1 << 20;

/// The PATCH of a streamed upload ends once this share of the tar stream is
/// written (or its last entry): the registry then stores and syncs what it
/// got while the rest is compressed, and the rest goes with the closing PUT.
/// Ending it with the tar leaves the registry's storing on the critical
/// path; ending it much earlier sends too much with the PUT.
const PATCH_SHARE: (u64, u64) = (31, 32);

/// How long the packing thread waits for room in the queue when streaming
/// only while the upload keeps up (into a repository that may already have
/// the layer): once the registry falls this far behind, the PATCH ends with
/// what it has and packing goes on at its own pace; the rest goes with the
/// closing PUT, if the registry does not turn out to have the layer. On a
/// loopback registry the queue never waits half as long.
pub const KEEP_UP_PATIENCE: Duration = Duration::from_millis(250);

/// The packing thread's end of a streamed upload.
pub struct StreamFeed {
    /// None once the stream is given up, or the PATCH ended.
    sender: Option<Sender<Feed>>,
    /// How long to wait for room in the queue before giving up.
    patience: Duration,
    /// Bytes handed to the PATCH.
    sent: u64,
}

impl StreamFeed {
    /// A feed into `sender` (none when not streaming), waiting at most
    /// `patience` for room in its queue.
    pub fn new(sender: Option<Sender<Feed>>, patience: Duration) -> Self {
        StreamFeed {
            sender,
            patience,
            sent: 0,
        }
    }

    /// Bytes handed to the PATCH.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Hands the next compressed bytes to the PATCH, or ends the PATCH
    /// before them once the tar stream is near its end (`ending`, see
    /// [`patch_end`]).
    pub fn offer(&mut self, bytes: &[u8], ending: bool) {
        let Some(sender) = &self.sender else {
            return;
        };
        if signals::received().is_some() {
            // Stopping: the PATCH ends here, so its session can be cancelled.
            self.sender = None;
            return;
        }
        if ending && self.sent >= EARLY_END_AFTER {
            let _ = send_within(sender, Feed::EndOfPatch, self.patience);
            self.sender = None;
            return;
        }
        // A stream that failed, or stopped taking bytes for longer than its
        // patience, is given up: the PATCH ends with the bytes queued so
        // far, and packing goes on into the spool file.
        let chunk = Feed::Bytes(Bytes::copy_from_slice(bytes));
        if send_within(sender, chunk, self.patience) {
            self.sent += bytes.len() as u64;
        } else {
            self.sender = None;
        }
    }
}

/// Queues `chunk` for a streamed upload, waiting at most `patience` for
/// room; false when the stream is gone or stalled, or a stop signal came.
fn send_within(sender: &Sender<Feed>, chunk: Feed, patience: Duration) -> bool {
    let started = Instant::now();
    let mut chunk = chunk;
    loop {
        match sender.try_send(chunk) {
            Ok(()) => return true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(back))
                if started.elapsed() < patience && signals::received().is_none() =>
            {
                chunk = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
}

/// About the bytes `entry` takes in a tar stream: a header, and a file's
/// content padded to 512 bytes (long names take a little more).
pub fn tar_size(entry: &SourceEntry) -> u64 {
    let content = match &entry.kind {
        SourceKind::File { size, .. } => size.div_ceil(512) * 512,
        SourceKind::Dir | SourceKind::Symlink { .. } => 0,
    };
    512 + content
}

/// The bytes of tar after which the PATCH may end: 31/32 of the tar stream.
pub fn patch_end(entries: &[SourceEntry]) -> u64 {
    let total: u64 = entries.iter().map(tar_size).sum();
    total / PATCH_SHARE.1 * PATCH_SHARE.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the upload side received: byte counts, and `None` for the end
    /// of the PATCH.
    fn received(rx: &mut tokio::sync::mpsc::Receiver<Feed>) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        while let Ok(fed) = rx.try_recv() {
            out.push(match fed {
                Feed::Bytes(b) => Some(b.len()),
                Feed::EndOfPatch => None,
            });
        }
        out
    }

    #[test]
    fn the_patch_ends_near_the_tar_end_once_it_carried_enough() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut feed = StreamFeed::new(Some(tx), Duration::from_secs(1));
        let chunk = vec![7u8; 600 * 1024];
        // Near the end, but less than EARLY_END_AFTER sent: keeps going.
        feed.offer(&chunk, true);
        feed.offer(&chunk, false);
        feed.offer(&chunk, true);
        feed.offer(&chunk, true);
        assert_eq!(feed.sent(), 2 * chunk.len() as u64);
        assert_eq!(
            received(&mut rx),
            [Some(chunk.len()), Some(chunk.len()), None]
        );
    }

    #[test]
    fn a_feed_whose_upload_is_gone_gives_up_and_keeps_its_count() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut feed = StreamFeed::new(Some(tx), Duration::from_secs(1));
        feed.offer(b"abc", false);
        drop(rx);
        feed.offer(b"defg", false);
        feed.offer(b"hij", true);
        assert_eq!(feed.sent(), 3);
    }

    #[test]
    fn patch_end_is_31_32_of_the_tar() {
        let file = |size| SourceEntry {
            rel: "f".to_string(),
            kind: SourceKind::File {
                path: "/f".into(),
                at: crate::archive::walk::FileAt::Tree("f".into()),
                size,
                executable: false,
                stamp: crate::archive::walk::FileStamp::default(),
            },
        };
        // 512 + 32256 (padded to 32256) = 32768 bytes of tar.
        assert_eq!(tar_size(&file(32_256)), 32_768);
        assert_eq!(tar_size(&file(1)), 1024);
        assert_eq!(patch_end(&[file(32_256)]), 31 * 1024);
    }
}
