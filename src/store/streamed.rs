//! Uploading a blob while it is still being produced, for stores that can
//! take one (registries): the session, its one streamed PATCH, the closing
//! PUT and the cancelling of a session given up. A layout takes the blob
//! once it is whole, with [`Store::put_blob`].

use std::cell::OnceCell;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::registry::api::{Feed, Streamed};
use crate::store::Store;

impl Store {
    /// True when a blob can go to this store while it is produced.
    pub fn takes_streams(&self) -> bool {
        matches!(self, Store::Registry { .. })
    }

    /// How long the store may stay silent mid-request (`--timeout`); a
    /// layout answers at once.
    pub fn patience(&self) -> Duration {
        match self {
            Store::Registry { remote, .. } => remote.client.read_timeout(),
            Store::Layout { .. } => Duration::ZERO,
        }
    }

    /// True when the store is a registry repository that does not exist
    /// yet, so it holds no blob (never for a layout, which is written
    /// locally anyway).
    pub async fn is_new_repository(&self) -> Result<bool> {
        match self {
            Store::Registry { remote, image } => remote.client.repository_is_new(image).await,
            Store::Layout { .. } => Ok(false),
        }
    }

    /// Opens an upload session and streams into it what arrives on
    /// `chunks`, telling `opened` the session's URL as soon as it exists
    /// (see [`crate::registry::RegistryClient::stream_upload`]).
    pub async fn stream_upload(
        &self,
        chunks: Receiver<Feed>,
        opened: &OnceCell<String>,
    ) -> Result<Streamed> {
        match self {
            Store::Registry { remote, image } => {
                remote.client.stream_upload(image, chunks, opened).await
            }
            Store::Layout { .. } => Err(no_streams()),
        }
    }

    /// Closes a streamed upload at `location` with the blob's digest and
    /// the bytes of `blob` from `sent` on, which the PATCH did not carry.
    pub async fn finish_streamed_upload(
        &self,
        location: &str,
        digest: &Digest,
        blob: &Path,
        sent: u64,
    ) -> Result<()> {
        match self {
            Store::Registry { remote, image } => {
                remote
                    .client
                    .finish_streamed_upload(image, location, digest, blob, sent)
                    .await?;
                remote.remember(image, digest);
                Ok(())
            }
            Store::Layout { .. } => Err(no_streams()),
        }
    }

    /// Cancels the upload session at `location`, so that a stream given up
    /// leaves no half-written upload behind; a refusal is only logged,
    /// since the registry purges stale sessions in any case.
    pub async fn cancel_upload(&self, location: &str) {
        if let Store::Registry { remote, image } = self {
            if let Err(e) = remote.client.cancel_upload(image, location).await {
                tracing::debug!("{e}");
            }
        }
    }
}

fn no_streams() -> Error {
    Error::Internal("a layout takes blobs whole, not streamed".to_string())
}
