//! `--push-source-bundle DIR`: walk, pack, push the layer and config, then
//! the manifest (so the tag appears only once everything it names exists).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::archive::pack::{self, PackEvent, PackOptions};
use crate::archive::walk::{self, SourceTree};
use crate::bundle::fingerprint::fingerprint;
use crate::bundle::format;
use crate::bundle::stream_feed::{self, StreamFeed, KEEP_UP_PATIENCE, STREAM_CHUNKS_IN_FLIGHT};
use crate::error::{Error, Result};
use crate::modes::{require_tag, Context};
use crate::oci::digest::Digest;
use crate::oci::manifest::OCI_MANIFEST;
use crate::oci::reference::Target;
use crate::progress::Progress;
use crate::registry::api::{Feed, Streamed};
use crate::registry::BlobSource;
use crate::results::{self, Outcome};
use crate::settings::{PushSettings, StreamUpload};
use crate::signals;
use crate::store::cache::PackedRecord;
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &PushSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    require_tag(target, "app:v1-src")?;
    let walk_opts = args.walk.clone();
    let pack_opts = args.pack_options();
    let root = dir.to_path_buf();
    let started = std::time::Instant::now();
    let mut walking = tokio::task::spawn_blocking(move || {
        walk::walk(&root, &walk_opts, &mut |w| tracing::warn!("{w}"))
    });
    // Whether the repository exists is asked while the tree is walked,
    // unless the answer may not be needed: with --stream-upload always or
    // never, or a cache that may know the tree. A problem with the tree ends
    // the push at once.
    let ask_early = args.stream_upload == StreamUpload::Auto && ctx.client.cache().is_none();
    let mut asking = std::pin::pin!(repository_is_new(ctx, target));
    let mut answer = None;
    let walked = loop {
        tokio::select! {
            walked = &mut walking => break walked,
            known = &mut asking, if ask_early && answer.is_none() => answer = Some(known),
        }
    };
    let tree = walked.map_err(|e| Error::Internal(format!("walking thread failed: {e}")))??;
    crate::archive::secrets::warn(&tree);
    tracing::debug!(
        "walked {} entries in {:.2?}",
        tree.entries.len(),
        started.elapsed()
    );
    let store = Store::for_writing(target, &ctx.client)?;
    // The tree's fingerprint, computed once: to look the tree up in the
    // cache, then to remember what it packed to.
    let fp = ctx
        .client
        .cache()
        .map(|_| fingerprint(&tree.entries, &pack_opts));
    let layer = match reusable_layer(ctx, &store, fp.as_ref()).await? {
        Some(layer) => layer,
        None => {
            // A new repository cannot have the layer, so nothing is lost by
            // uploading all of it before its digest is known.
            let streaming = match args.stream_upload {
                StreamUpload::Always => Some(Streaming::Whole),
                StreamUpload::Never => None,
                StreamUpload::Auto => {
                    let new = match answer {
                        Some(known) => known?,
                        None => asking.await?,
                    };
                    Some(if new {
                        Streaming::Whole
                    } else {
                        Streaming::WhileItKeepsUp
                    })
                }
            };
            let stream_to = streaming.map(|how| (&store, how));
            pack_layer(ctx, stream_to, tree, pack_opts, fp, args.source_timestamp).await?
        }
    };
    let docs = format::build_compressed(
        args.compression,
        &layer.digest,
        layer.size,
        &layer.diff_id,
        args.source_timestamp,
        annotations,
    );
    match (&layer.file, layer.sent) {
        (Some(_), Sent::Streamed) => {
            tracing::info!("layer {} uploaded while it was packed", layer.digest);
        }
        (Some(_), Sent::AlreadyThere) => {
            tracing::info!("layer {} already present, not uploaded again", layer.digest);
        }
        (Some(file), Sent::NotYet) => {
            let progress = Progress::bytes(layer.size, "uploading", ctx.progress);
            let source = BlobSource::File {
                path: file.path().to_path_buf(),
                progress: progress.clone(),
            };
            let uploaded = store.put_blob(&docs.layer_desc, &source).await?;
            progress.finish();
            if !uploaded {
                tracing::info!("layer {} already present, not uploaded again", layer.digest);
            }
        }
        (None, _) => tracing::info!(
            "tree unchanged since it packed to {}, which {target} has: nothing to upload",
            layer.digest
        ),
    }
    if let Some(file) = layer.file {
        discard_spool(file);
    }
    if layer.config.as_deref() != Some(docs.config_desc.digest.as_str()) {
        store
            .put_blob(
                &docs.config_desc,
                &BlobSource::Bytes(Bytes::from(docs.config.clone())),
            )
            .await?;
    }
    let digest = store.put_manifest(&docs.manifest, OCI_MANIFEST).await?;
    let total = docs.manifest.len() as u64 + docs.config_desc.size + docs.layer_desc.size;
    let pinned = store.pinned(&digest);
    tracing::info!(
        "pushed {target} as {pinned} ({total} bytes) in {:.2?}",
        started.elapsed()
    );

    results::publish(
        &ctx.results,
        &Outcome {
            digest: Some(digest),
            size: Some(total),
            reference: Some(pinned),
            source_timestamp: args.source_timestamp.map(|ts| ts.to_string()),
            platform_results: None,
        },
    )?;
    Ok(())
}

/// Deletes a spool file that is no longer needed, and leaves the freeing of
/// its cached pages to a thread of its own while the push goes on, since
/// freeing the pages of a large layer takes a noticeable while. Should the
/// process end first, the kernel frees them as it exits.
fn discard_spool(file: tempfile::NamedTempFile) {
    let (file, path) = file.into_parts();
    if let Err(e) = path.close() {
        tracing::warn!("could not delete the spool file: {e}");
    }
    std::thread::spawn(move || drop(file));
}

/// True when `target` is a registry repository that does not exist yet, so
/// it holds no blob (never for a layout, which is written locally anyway).
async fn repository_is_new(ctx: &Context, target: &Target) -> Result<bool> {
    match target {
        Target::Registry(image) => ctx.client.repository_is_new(image).await,
        Target::Layout(_) => Ok(false),
    }
}

/// How a layer goes out while it is packed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Streaming {
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

/// Where a packed layer stands with the target registry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sent {
    /// Uploaded while it was packed.
    Streamed,
    /// The registry had it already (what was streamed of it, if anything,
    /// was cancelled).
    AlreadyThere,
    /// Not uploaded yet (or the stream broke off): upload the spool file.
    NotYet,
}

/// A layer to push: packed now (with its spool file) or known from before.
struct Layer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    file: Option<tempfile::NamedTempFile>,
    /// Whether the registry still needs it.
    sent: Sent,
    /// The digest of the config uploaded with it, if one was.
    config: Option<String>,
}

/// The layer this tree packed to last time, when the cache remembers its
/// fingerprint (`fp`, present with a cache) and the target already holds
/// that layer.
async fn reusable_layer(
    ctx: &Context,
    store: &Store,
    fp: Option<&Digest>,
) -> Result<Option<Layer>> {
    let (Some(cache), Some(fp)) = (ctx.client.cache(), fp) else {
        return Ok(None);
    };
    let Some(record) = cache.packed_layer(fp) else {
        return Ok(None);
    };
    let (Ok(digest), Ok(diff_id)) = (
        Digest::parse(&record.digest),
        Digest::parse(&record.diff_id),
    ) else {
        return Ok(None);
    };
    if !store.has_blob(&digest).await? {
        return Ok(None);
    }
    Ok(Some(Layer {
        digest,
        size: record.size,
        diff_id,
        file: None,
        sent: Sent::AlreadyThere,
        config: None,
    }))
}

/// Packs the tree into a spool file, and remembers the result in the cache
/// under the tree's fingerprint `fp` (present with a cache). With a
/// registry in `stream_to`, the layer goes out while it is being packed, as
/// its [`Streaming`] says (one streamed PATCH for all but the end of the tar
/// stream, or for as much as the registry took while it kept up; then the
/// config, which needs only the tar's digest; then a PUT with the layer's
/// digest and the rest, read back from the spool); if the stream breaks
/// off, its session is cancelled and the caller uploads the spool file the
/// usual way; a registry that will not open an upload at all ends the push.
async fn pack_layer(
    ctx: &Context,
    stream_to: Option<(&Store, Streaming)>,
    tree: SourceTree,
    opts: PackOptions,
    fp: Option<Digest>,
    source_timestamp: Option<u64>,
) -> Result<Layer> {
    let started = std::time::Instant::now();
    let opts_name = opts.compression.name();
    let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(STREAM_CHUNKS_IN_FLIGHT);
    let (diff_id_tx, mut diff_id_rx) = tokio::sync::oneshot::channel::<Digest>();
    // The registry the layer streams to (none for a layout), and how.
    let (stream_to, streaming, streaming_as) = match stream_to {
        Some((store @ Store::Registry { client, image }, how)) => {
            (Some(store), Some((client, image)), Some(how))
        }
        _ => (None, None, None),
    };
    let patience = ctx.client.read_timeout();
    let feed_patience = match streaming_as {
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
                written += stream_feed::tar_size(entry);
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
            Some((client, image)) => Some(client.stream_upload(image, rx, &opened).await),
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
            if let (true, Some(store), None) = (patched(&location), stream_to, signals::received()) {
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
        if let (Some((client, image)), Some(at)) = (streaming, &session) {
            if let Err(e) = client.cancel_upload(image, at).await {
                tracing::debug!("{e}");
            }
        }
    };
    if let Some(signal) = signals::received() {
        // The feed ended the PATCH on the signal: the session it leaves is
        // cancelled whatever the packing came to.
        cancel().await;
        return Err(Error::Stopped(signal));
    }
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
    if let (None, true, Some(store)) = (&config, patched(&location), stream_to) {
        config = Some(upload_config(store, &mut diff_id_rx, source_timestamp).await);
    }
    let config = config.transpose()?.flatten();
    if streaming.is_some() {
        tracing::debug!(
            "the PATCH carried {sent} of the layer's {} bytes",
            packed.size
        );
    }
    let finished = match (streaming, location.transpose()?) {
        (Some((client, image)), Some(Streamed::Done(location))) => {
            if streaming_as == Some(Streaming::WhileItKeepsUp)
                && client.blob_exists(image, &packed.digest).await?
            {
                cancel().await;
                Some(Ok(Sent::AlreadyThere))
            } else {
                Some(
                    client
                        .finish_streamed_upload(
                            image,
                            &location,
                            &packed.digest,
                            packed.file.path(),
                            sent,
                        )
                        .await
                        .map(|()| Sent::Streamed),
                )
            }
        }
        (_, Some(Streamed::Failed(e))) => Some(Err(e)),
        _ => None,
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
    if let (Some(cache), Some(fp)) = (ctx.client.cache(), fp) {
        let record = PackedRecord {
            digest: packed.digest.to_string(),
            size: packed.size,
            diff_id: packed.diff_id.to_string(),
            entries: packed.entries,
        };
        cache.remember_packed(&fp, &record)?;
    }
    Ok(Layer {
        digest: packed.digest,
        size: packed.size,
        diff_id: packed.diff_id,
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
