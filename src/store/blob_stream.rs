//! Reading a blob from a store as a stream: chunks from the registry, the
//! cache or a layout, hashed as they pass, handed to a blocking consumer,
//! and checked against the descriptor when the stream ends.

use std::io::Read;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::oci::digest::{self, Digest, StreamHasher};
use crate::oci::manifest::Descriptor;
use crate::store::cache::BlobWriter;
use crate::store::Store;

impl Store {
    /// [`Store::stream_blob`], started over after a transfer cut short while
    /// attempts remain (the retry policy's restarts): `attempt` makes each
    /// try's consumer, given the try's number from 1, after undoing what an
    /// earlier try left behind.
    pub async fn stream_blob_restarting<T, F, C>(
        &self,
        desc: &Descriptor,
        mut attempt: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(u32) -> Result<C>,
        C: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
    {
        self.retry_policy()
            .restarting(|n| {
                let consume = attempt(n);
                async move { self.stream_blob(desc, consume?).await }
            })
            .await
    }

    /// Streams a blob into `consume` (run on a blocking thread) while hashing
    /// it. The digest and size are checked when the stream ends; a mismatch
    /// wins over whatever `consume` returned, since its input was not genuine.
    pub async fn stream_blob<T, F>(&self, desc: &Descriptor, consume: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
    {
        let digest = desc.parsed_digest()?;
        let (mut source, mut cache_entry) = self.open_blob(desc, &digest).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(32);
        let consumer = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            consume(&mut reader)
        });
        let mut hasher = StreamHasher::default();
        let mut received = 0u64;
        let mut consumer_open = true;
        let what = format!("blob {digest}");
        let network = loop {
            match source.next_chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > desc.size {
                        break Err(too_long(&what, desc.size));
                    }
                    hasher.update(&chunk);
                    if let Some(entry) = cache_entry.as_mut() {
                        entry.write(&chunk);
                    }
                    if consumer_open && tx.send(Ok(chunk)).await.is_err() {
                        consumer_open = false;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if network.is_err() {
            let _ = tx
                .send(Err(std::io::Error::other("download interrupted")))
                .await;
        }
        drop(tx);
        let consumed = consumer
            .await
            .map_err(|e| Error::Internal(format!("extraction thread failed: {e}")))?;
        network?;
        let (actual, size) = hasher.finish();
        digest::verify(&what, &digest, Some(desc.size), &actual, size)?;
        if let Some(entry) = cache_entry {
            entry.commit();
        }
        consumed
    }

    /// The blob's chunks as they arrive from this store, checked against
    /// the descriptor's size as they pass and against its digest before the
    /// last one is given out: a blob that does not match ends its stream
    /// with an error before all of it has passed, so whatever receives the
    /// stream never holds the whole of a wrong blob. Nothing is read until
    /// the stream is first polled, and nothing is cached: for sending a
    /// blob on to another registry.
    pub fn verified_chunks(&self, desc: &Descriptor) -> BoxStream<'static, Result<Bytes>> {
        /// A stream under way; `hasher` is `None` once the digest is checked.
        struct Open {
            source: BlobStream,
            hasher: Option<StreamHasher>,
        }
        let from = std::sync::Arc::new((self.clone(), desc.clone()));
        futures_util::stream::try_unfold(None::<Open>, move |open| {
            let from = from.clone();
            async move {
                let (store, desc) = &*from;
                let digest = desc.parsed_digest()?;
                let mut open = match open {
                    Some(open) => open,
                    None => Open {
                        source: store.open_uncached(&digest).await?,
                        hasher: Some(StreamHasher::default()),
                    },
                };
                let what = format!("blob {digest}");
                let chunk = open.source.next_chunk().await?;
                let Some(hasher) = open.hasher.as_mut() else {
                    // Verified: the source has nothing more to send, or
                    // sends more than the descriptor's size.
                    return match chunk {
                        Some(chunk) if !chunk.is_empty() => Err(too_long(&what, desc.size)),
                        _ => Ok(None),
                    };
                };
                if let Some(chunk) = &chunk {
                    if hasher.added() + chunk.len() as u64 > desc.size {
                        return Err(too_long(&what, desc.size));
                    }
                    hasher.update(chunk);
                }
                if chunk.is_none() || hasher.added() == desc.size {
                    if let Some(hasher) = open.hasher.take() {
                        let (actual, size) = hasher.finish();
                        digest::verify(&what, &digest, Some(desc.size), &actual, size)?;
                    }
                }
                Ok(chunk.map(|chunk| (chunk, Some(open))))
            }
        })
        .boxed()
    }

    /// Opens a blob from the registry or the layout itself, past the cache.
    async fn open_uncached(&self, digest: &Digest) -> Result<BlobStream> {
        match self {
            Store::Registry { remote, image } => {
                let response = remote.client.get_blob(image, digest).await?;
                remote.remember(image, digest);
                Ok(BlobStream::Http(response))
            }
            Store::Layout { layout, .. } => {
                BlobStream::open_file(&layout.blob_path(digest), digest).await
            }
        }
    }

    /// Opens a blob: from the cache when it holds a verified copy, else from
    /// the registry (with a cache entry to fill), or from the layout.
    async fn open_blob(
        &self,
        desc: &Descriptor,
        digest: &Digest,
    ) -> Result<(BlobStream, Option<BlobWriter>)> {
        match self {
            Store::Registry { remote, image } => remote.open_blob(image, desc, digest).await,
            Store::Layout { layout, .. } => Ok((
                BlobStream::open_file(&layout.blob_path(digest), digest).await?,
                None,
            )),
        }
    }
}

/// The bytes of one blob as they arrive.
pub(super) enum BlobStream {
    /// A registry's response body.
    Http(reqwest::Response),
    /// A file on disk (a layout or the cache).
    File(tokio_util::io::ReaderStream<tokio::fs::File>),
}

impl BlobStream {
    /// A file on disk, read in 256 KiB chunks.
    pub(super) async fn open_file(path: &std::path::Path, digest: &Digest) -> Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("blob {digest} is missing ({})", path.display()))
                }
                _ => Error::io("opening", path, e),
            })?;
        Ok(BlobStream::File(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
        ))
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        use futures_util::StreamExt;
        match self {
            BlobStream::Http(resp) => resp.chunk().await.map_err(|e| {
                Error::Interrupted(format!(
                    "download interrupted: {}",
                    crate::registry::error_chain::error_chain(&e)
                ))
            }),
            BlobStream::File(s) => s
                .next()
                .await
                .transpose()
                .map_err(|e| Error::io("reading blob", "layout", e)),
        }
    }
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The error for a blob that runs past its descriptor's `size`.
fn too_long(what: &str, size: u64) -> Error {
    Error::DigestMismatch {
        what: format!("{what} (size)"),
        expected: format!("{size} bytes"),
        actual: format!("more than {size} bytes"),
    }
}
