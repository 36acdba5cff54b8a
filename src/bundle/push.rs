//! Pushing a source bundle: walk the tree (asking meanwhile whether the
//! repository is new), reuse the layer the cache remembers or pack it
//! (streamed out as it is packed where the store takes streams), then the
//! config and the manifest, so the tag appears only once everything it
//! names exists.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::archive::walk;
use crate::bundle::fingerprint::fingerprint;
use crate::bundle::format;
use crate::bundle::pack_streaming::{pack_layer, Streaming};
use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::OCI_MANIFEST;
use crate::oci::reference::Target;
use crate::progress::Progress;
use crate::settings::{PushSettings, StreamUpload};
use crate::store::cache::Cache;
use crate::store::remote::Remote;
use crate::store::BlobSource;
use crate::store::Store;

/// What a push stored.
pub struct Pushed {
    /// The store written to.
    pub store: Store,
    /// The manifest's digest.
    pub digest: Digest,
    /// Bytes of the manifest, config and layer.
    pub size: u64,
}

/// Pushes the tree at `dir` to `target` as a source bundle.
pub async fn push(
    remote: &Remote,
    dir: &Path,
    target: &Target,
    args: &PushSettings,
    annotations: &BTreeMap<String, String>,
    progress: bool,
) -> Result<Pushed> {
    let walk_opts = args.walk.clone();
    let root = dir.to_path_buf();
    let started = std::time::Instant::now();
    let mut walking = tokio::task::spawn_blocking(move || {
        walk::walk(&root, &walk_opts, &mut |w| tracing::warn!("{w}"))
    });
    // Whether the repository exists is asked while the tree is walked,
    // unless the answer may not be needed: with --stream-upload always or
    // never, or a cache that may know the tree. A problem with the tree ends
    // the push at once. A layout is opened (and created) only once the tree
    // is known to be good.
    let ask_early = args.stream_upload == StreamUpload::Auto && remote.cache.is_none();
    let mut asking = std::pin::pin!(async {
        match target {
            Target::Registry(_) => {
                Store::for_writing(target, remote)?
                    .is_new_repository()
                    .await
            }
            Target::Layout(_) => Ok(false),
        }
    });
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
    let store = Store::for_writing(target, remote)?;
    let cache = remote.cache.as_deref();
    let pack_opts = args.pack_options();
    // The tree's fingerprint, computed once: to look the tree up in the
    // cache, then to remember what it packed to.
    let fp = cache.map(|_| fingerprint(&tree.entries, &pack_opts));
    let layer = match reusable_layer(&store, cache, fp.as_ref()).await? {
        Some(layer) => layer,
        None => {
            // A new repository cannot have the layer, so nothing is lost by
            // uploading all of it before its digest is known.
            let streaming = match args.stream_upload {
                StreamUpload::Always => Some(Streaming::Whole),
                StreamUpload::Never => None,
                StreamUpload::Auto => Some(match answer {
                    Some(known) => known?,
                    None => asking.await?,
                })
                .map(|new| match new {
                    true => Streaming::Whole,
                    false => Streaming::WhileItKeepsUp,
                }),
            };
            let streaming = streaming.filter(|_| store.takes_streams());
            let layer = pack_layer(
                &store,
                streaming,
                tree,
                pack_opts,
                args.source_timestamp,
                progress,
            )
            .await?;
            if let (Some(cache), Some(fp)) = (cache, &fp) {
                cache.remember_packed(fp, &layer.record())?;
            }
            layer
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
    upload_layer(&store, &layer, &docs.layer_desc, progress).await?;
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
    let size = docs.manifest.len() as u64 + docs.config_desc.size + docs.layer_desc.size;
    Ok(Pushed {
        store,
        digest,
        size,
    })
}

/// Uploads the layer's spool file unless the store has the layer already
/// or it went out while it was packed.
async fn upload_layer(
    store: &Store,
    layer: &Layer,
    desc: &crate::oci::manifest::Descriptor,
    progress: bool,
) -> Result<()> {
    let already = match (&layer.file, layer.sent) {
        (Some(_), Sent::Streamed) => {
            tracing::info!("layer {} uploaded while it was packed", layer.digest);
            return Ok(());
        }
        (Some(_), Sent::AlreadyThere) => true,
        (Some(file), Sent::NotYet) => {
            let progress = Progress::bytes(layer.size, "uploading", progress);
            let source = BlobSource::File {
                path: file.path().to_path_buf(),
                progress: progress.clone(),
            };
            let placed = store.put_blob(desc, &source).await?;
            progress.finish();
            !placed.sent_bytes()
        }
        (None, _) => {
            tracing::info!(
                "tree unchanged since it packed to {}, which the target has: nothing to upload",
                layer.digest
            );
            return Ok(());
        }
    };
    if already {
        tracing::info!("layer {} already present, not uploaded again", layer.digest);
    }
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

/// Where a packed layer stands with the target store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Sent {
    /// Uploaded while it was packed.
    Streamed,
    /// The store had it already (what was streamed of it, if anything,
    /// was cancelled).
    AlreadyThere,
    /// Not uploaded yet (or the stream broke off): upload the spool file.
    NotYet,
}

/// A layer to push: packed now (with its spool file) or known from before.
pub(super) struct Layer {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) diff_id: Digest,
    /// Entries packed (0 for a layer known from before).
    pub(super) entries: u64,
    pub(super) file: Option<tempfile::NamedTempFile>,
    /// Whether the store still needs it.
    pub(super) sent: Sent,
    /// The digest of the config uploaded with it, if one was.
    pub(super) config: Option<String>,
}

impl Layer {
    /// What the cache remembers of a packed layer.
    fn record(&self) -> crate::store::cache::PackedRecord {
        crate::store::cache::PackedRecord {
            digest: self.digest.to_string(),
            size: self.size,
            diff_id: self.diff_id.to_string(),
            entries: self.entries,
        }
    }
}

/// The layer this tree packed to last time, when the cache remembers its
/// fingerprint (`fp`, present with a cache) and the store already holds
/// that layer.
async fn reusable_layer(
    store: &Store,
    cache: Option<&Cache>,
    fp: Option<&Digest>,
) -> Result<Option<Layer>> {
    let (Some(cache), Some(fp)) = (cache, fp) else {
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
        entries: record.entries,
        file: None,
        sent: Sent::AlreadyThere,
        config: None,
    }))
}
