//! Blob bodies for uploads: small blobs from memory, layers streamed from a
//! spool file so that no layer is ever held whole in memory.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::TryStreamExt;

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
}

impl BlobSource {
    /// A request body for one attempt.
    pub fn body(&self) -> Result<reqwest::Body> {
        match self {
            BlobSource::Bytes(b) => Ok(reqwest::Body::from(b.clone())),
            BlobSource::File { path, progress } => {
                let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
                progress.reset();
                let progress = progress.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 * 1024,
                )
                .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
                Ok(reqwest::Body::wrap_stream(stream))
            }
        }
    }
}
