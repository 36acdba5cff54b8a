//! Blob bodies for uploads: small blobs from memory, layers streamed from a
//! spool file so that no layer is ever held whole in memory.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Where an upload's bytes come from. Each attempt builds a fresh body.
#[derive(Clone)]
pub enum BlobSource {
    /// Bytes in memory (configs, small blobs).
    Bytes(Bytes),
    /// A file streamed from disk, reporting progress as it goes.
    File {
        /// The file.
        path: PathBuf,
        /// Progress to advance as bytes are sent.
        progress: Progress,
    },
    /// Chunks from elsewhere (another registry), opened anew for each
    /// attempt; a chunk that fails ends the body, and the failure is what
    /// the upload reports (see [`BlobSource::failure`]).
    Stream {
        /// Opens the chunks for one attempt.
        open: OpenChunks,
        /// The failure that ended the last attempt's body, if one did.
        failure: Arc<Mutex<Option<Error>>>,
    },
}

/// Opens a stream of a blob's chunks.
pub type OpenChunks = Arc<dyn Fn() -> BoxStream<'static, Result<Bytes>> + Send + Sync>;

impl BlobSource {
    /// A source of the chunks `open` gives.
    pub fn stream(open: OpenChunks) -> Self {
        BlobSource::Stream {
            open,
            failure: Arc::default(),
        }
    }

    /// Why the last attempt's body broke off, when its source failed (and
    /// not the connection); taken, so it is reported once.
    pub fn failure(&self) -> Option<Error> {
        match self {
            BlobSource::Stream { failure, .. } => failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
            _ => None,
        }
    }

    /// A request body for one attempt.
    pub fn body(&self) -> Result<reqwest::Body> {
        match self {
            BlobSource::Stream { open, failure } => Ok(stream_body(open(), failure)),
            BlobSource::Bytes(b) => Ok(reqwest::Body::from(b.clone())),
            BlobSource::File { path, progress } => {
                let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
                progress.reset();
                let progress = progress.clone();
                let stream =
                    file_stream(file).inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
                Ok(reqwest::Body::wrap_stream(stream))
            }
        }
    }

    /// Like [`BlobSource::body`], but a stream is opened and its first chunk
    /// awaited here, so that reaching the source can overlap with opening
    /// the upload session. A source that fails before its first chunk
    /// fails this.
    pub async fn started_body(&self) -> Result<reqwest::Body> {
        let BlobSource::Stream { open, failure } = self else {
            return self.body();
        };
        let mut chunks = open();
        let first = match chunks.next().await {
            None => return Ok(reqwest::Body::from(Bytes::new())),
            Some(chunk) => chunk?,
        };
        let chunks = futures_util::stream::once(async move { Ok(first) }).chain(chunks);
        Ok(stream_body(chunks.boxed(), failure))
    }
}

/// A request body of `chunks`; a chunk that fails ends the body, and is
/// kept in `failure` for the upload to report.
fn stream_body(
    chunks: BoxStream<'static, Result<Bytes>>,
    failure: &Arc<Mutex<Option<Error>>>,
) -> reqwest::Body {
    let failure = failure.clone();
    let chunks = chunks.map(move |chunk| {
        chunk.map_err(|e| {
            let message = e.to_string();
            *failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            std::io::Error::other(message)
        })
    });
    reqwest::Body::wrap_stream(chunks)
}

/// The bytes of the file at `path` from `offset` to its end, as a request
/// body, with their number.
pub fn file_from(path: &Path, offset: u64) -> Result<(reqwest::Body, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("inspecting", path, e))?
        .len();
    let len = size.checked_sub(offset).ok_or_else(|| {
        Error::Internal(format!(
            "{} holds {size} bytes, fewer than the {offset} already sent",
            path.display()
        ))
    })?;
    if len == 0 {
        return Ok((reqwest::Body::from(Bytes::new()), 0));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io("reading", path, e))?;
    Ok((reqwest::Body::wrap_stream(file_stream(file)), len))
}

/// The rest of `file` as a stream of chunks of up to 256 KiB.
fn file_stream(file: std::fs::File) -> tokio_util::io::ReaderStream<tokio::fs::File> {
    tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024)
}
