//! `--push-source-bundle DIR`: walk, pack, push the layer and config, then
//! the manifest (so the tag appears only once everything it names exists).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::bundle::format;
use crate::bundle::pack::{self, PackOptions};
use crate::bundle::walk::{self, WalkOptions};
use crate::cli::PushArgs;
use crate::error::{Error, Result};
use crate::manifest::OCI_MANIFEST;
use crate::modes::Context;
use crate::progress::Progress;
use crate::reference::Target;
use crate::registry::BlobSource;
use crate::results::{self, Outcome};
use crate::store::Store;
use crate::timestamp;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &PushArgs,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    if target.tag().is_none() {
        return Err(Error::Usage(format!(
            "--image {target} names a digest; a push needs a tag (e.g. app:v1-src)"
        )));
    }
    let source_timestamp = args
        .source_timestamp
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(timestamp::parse_flag)
        .transpose()?;
    let walk_opts = WalkOptions {
        ignore_files: args.ignore_file.clone(),
        excludes: args.exclude.clone(),
        dereference_symlinks: args.dereference_symlinks,
    };
    let pack_opts = PackOptions {
        mtime: source_timestamp.unwrap_or(0),
        compression_level: args.compression_level,
    };
    let root = dir.to_path_buf();
    let started = std::time::Instant::now();
    let packed = tokio::task::spawn_blocking(move || {
        let entries = walk::walk(&root, &walk_opts, &mut |w| tracing::warn!("{w}"))?;
        pack::pack(&entries, &pack_opts, &std::env::temp_dir(), &mut |_| {})
    })
    .await
    .map_err(|e| Error::Internal(format!("packing thread failed: {e}")))??;
    tracing::info!(
        "packed {} entries, {} bytes -> {} bytes gzip in {:.2?}",
        packed.entries,
        packed.uncompressed_size,
        packed.size,
        started.elapsed()
    );

    let store = Store::for_writing(target, &ctx.client)?;
    let docs = format::build(
        &packed.digest,
        packed.size,
        &packed.diff_id,
        source_timestamp,
        annotations,
    );
    let progress = Progress::bytes(packed.size, "uploading", ctx.progress);
    let layer_source = BlobSource::File {
        path: packed.file.path().to_path_buf(),
        progress: progress.clone(),
    };
    let uploaded = store.put_blob(&docs.layer_desc, &layer_source).await?;
    progress.finish();
    if !uploaded {
        tracing::info!(
            "layer {} already present, not uploaded again",
            packed.digest
        );
    }
    store
        .put_blob(
            &docs.config_desc,
            &BlobSource::Bytes(Bytes::from(docs.config.clone())),
        )
        .await?;
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
            source_timestamp: source_timestamp.map(|ts| ts.to_string()),
            platform_results: None,
        },
    )?;
    Ok(())
}
