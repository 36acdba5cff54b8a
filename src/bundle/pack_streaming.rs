//! Packing a layer while it is uploaded: the packing thread tees the
//! compressed bytes into one streamed PATCH while the async side sends
//! them, the config goes out as soon as the tar's digest is known, and a
//! PUT with the layer's digest closes the upload. A stream that breaks off
//! is cancelled and leaves the spool file to be uploaded the usual way.

use bytes::Bytes;

use crate::archive::pack::{self, PackEvent, PackOptions};
use crate::archive::walk::SourceTree;
use crate::bundle::format;
use crate::bundle::push::{Layer, Sent};
use crate::bundle::stream_feed::{self, StreamFeed, KEEP_UP_PATIENCE, STREAM_CHUNKS_IN_FLIGHT};
use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::progress::Progress;
use crate::registry::api::{Feed, Streamed};
use crate::signals;
use crate::store::BlobSource;
use crate::store::Store;

/// How a layer goes out while it is packed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Streaming {
    /// All of it, the packing waiting on the registry up to `--timeout`:
    /// into a new repository, which cannot have the layer, or with
    /// `--stream-upload`.
    Whole,
    /// Only while the registry keeps up (see [`KEEP_UP_PATIENCE`]), the rest
    /// with the closing PUT, and none of that if the registry turns out to
    /// have the layer already (a HEAD once its digest is known, after which
    /// the session is cancelled): into an existing repository.
    WhileItKeepsUp,
}

/// Packs the tree into a spool file. With `streaming`, the layer goes to
/// `store` (which takes streams) while it is being packed, as its
/// [`Streaming`] says (one streamed PATCH for all but the end of the tar
/// stream, or for as much as the registry took while it kept up; then the
/// config, which needs only the tar's digest; then a PUT with the layer's
/// digest and the rest, read back from the spool); if the stream breaks
/// off, its session is cancelled and the caller uploads the spool file the
/// usual way; a registry that will not open an upload at all ends the push.
pub(super) async fn pack_layer(
    store: &Store,
    streaming: Option<Streaming>,
    tree: SourceTree,
    opts: PackOptions,
    source_timestamp: Option<u64>,
    progress: bool,
) -> Result<Layer> {
    let started = std::time::Instant::now();
    let tar_total = tree.entries.iter().map(stream_feed::tar_size).sum();
    let packing_progress = Progress::bytes(tar_total, "packing", progress);
    let bar = packing_progress.clone();
    let opts_name = opts.compression.name();
    let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(STREAM_CHUNKS_IN_FLIGHT);
    let (diff_id_tx, mut diff_id_rx) = tokio::sync::oneshot::channel::<Digest>();
    let patience = store.patience();
    let feed_patience = match streaming {
        Some(Streaming::WhileItKeepsUp) => KEEP_UP_PATIENCE,
        _ => patience,
    };
    let mut feed = StreamFeed::new(streaming.is_some().then_some(tx), feed_patience);
    let mut packing = tokio::task::spawn_blocking(move || {
        let end_patch_at = stream_feed::patch_end(&tree.entries);
        let ending = std::cell::Cell::new(tree.entries.is_empty());
        let (mut appended, mut written) = (0, 0);
        let mut diff_id_tx = Some(diff_id_tx);
        let mut on_event = |event: PackEvent<'_>| match event {
            PackEvent::Appended(entry) => {
                appended += 1;
                let size = stream_feed::tar_size(entry);
                written += size;
                bar.inc(size);
                ending.set(appended == tree.entries.len() || written >= end_patch_at);
            }
            PackEvent::TarDone(diff_id) => {
                if let Some(tx) = diff_id_tx.take() {
                    let _ = tx.send(diff_id.clone());
                }
            }
        };
        let mut tee = |bytes: &[u8]| feed.offer(bytes, ending.get());
        let packed =
            pack::pack_teeing(&tree, &opts, &std::env::temp_dir(), &mut on_event, &mut tee);
        packed.map(|packed| (packed, feed.sent()))
    });
    // The upload session's URL once the registry opened one.
    let opened = std::cell::OnceCell::new();
    let upload = async {
        match streaming {
            Some(_) => Some(store.stream_upload(rx, &opened).await),
            None => None,
        }
    };
    tokio::pin!(upload);
    let patched =
        |location: &Option<Result<Streamed>>| matches!(location, Some(Ok(Streamed::Done(_))));
    let mut config = None;
    // Once packing is done, the registry gets --timeout to take the rest.
    let (packed, location) = tokio::select! {
        packed = &mut packing => {
            let location = tokio::time::timeout(patience, &mut upload)
                .await
                .unwrap_or_else(|_| {
                    Some(Ok(Streamed::Failed(Error::Interrupted(
                        "the streamed upload stalled".to_string(),
                    ))))
                });
            (packed, location)
        }
        location = &mut upload => {
            // The PATCH is done before the packing: the config goes out
            // while the last blocks are compressed.
            if let (true, None) = (patched(&location), signals::received()) {
                config = Some(upload_config(store, &mut diff_id_rx, source_timestamp).await);
            }
            (packing.await, location)
        }
    };
    // Where to cancel the session should the stream be given up: where the
    // PATCH left it, or else where it was opened.
    let session = match &location {
        Some(Ok(Streamed::Done(at))) => Some(at.clone()),
        _ => opened.get().cloned(),
    };
    let cancel = || async {
        if let Some(at) = &session {
            store.cancel_upload(at).await;
        }
    };
    if let Some(signal) = signals::received() {
        // The feed ended the PATCH on the signal: the session it leaves is
        // cancelled whatever the packing came to.
        cancel().await;
        return Err(Error::Stopped(signal));
    }
    packing_progress.finish();
    let packed = packed.map_err(|e| Error::Internal(format!("packing thread failed: {e}")))?;
    let (packed, sent) = match packed {
        Ok(packed) => packed,
        Err(e) => {
            // A stream already begun is cancelled rather than left open.
            cancel().await;
            return Err(e);
        }
    };
    // The config goes before the layer's closing PUT in any case, so the
    // registry sees the same requests in the same order every time.
    if let (None, true) = (&config, patched(&location)) {
        config = Some(upload_config(store, &mut diff_id_rx, source_timestamp).await);
    }
    let config = config.transpose()?.flatten();
    if streaming.is_some() {
        tracing::debug!(
            "the PATCH carried {sent} of the layer's {} bytes",
            packed.size
        );
    }
    let finished = match location.transpose()? {
        Some(Streamed::Done(location)) => {
            if streaming == Some(Streaming::WhileItKeepsUp)
                && store.has_blob(&packed.digest).await?
            {
                cancel().await;
                Some(Ok(Sent::AlreadyThere))
            } else {
                Some(
                    store
                        .finish_streamed_upload(&location, &packed.digest, packed.file.path(), sent)
                        .await
                        .map(|()| Sent::Streamed),
                )
            }
        }
        Some(Streamed::Failed(e)) => Some(Err(e)),
        None => None,
    };
    let sent = match finished {
        Some(Ok(sent)) => sent,
        Some(Err(e)) => {
            // The session is cancelled before the layer goes out again.
            tracing::warn!("{e}; uploading the packed layer again");
            cancel().await;
            Sent::NotYet
        }
        None => Sent::NotYet,
    };
    tracing::info!(
        "packed {} entries, {} bytes -> {} bytes {} in {:.2?}",
        packed.entries,
        packed.uncompressed_size,
        packed.size,
        opts_name,
        started.elapsed()
    );
    Ok(Layer {
        digest: packed.digest,
        size: packed.size,
        diff_id: packed.diff_id,
        entries: packed.entries,
        file: Some(packed.file),
        sent,
        config,
    })
}

/// Uploads the config for the tar digest `diff_id` brings once the tar
/// stream is complete (nothing when packing failed first: its error is the
/// one reported); returns the config's digest.
async fn upload_config(
    store: &Store,
    diff_id: &mut tokio::sync::oneshot::Receiver<Digest>,
    source_timestamp: Option<u64>,
) -> Result<Option<String>> {
    let Ok(diff_id) = diff_id.await else {
        return Ok(None);
    };
    let (config, desc) = format::build_config(&diff_id, source_timestamp);
    store
        .put_blob(&desc, &BlobSource::Bytes(Bytes::from(config)))
        .await?;
    Ok(Some(desc.digest))
}
