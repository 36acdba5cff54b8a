//! `--push-source-bundle DIR`: the tree at DIR as a source bundle at
//! `--image`, with its results.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bundle::push;
use crate::error::Result;
use crate::modes::{require_tag, Context};
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::settings::PushSettings;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    dir: &Path,
    target: &Target,
    args: &PushSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    require_tag(target, "app:v1-src")?;
    let started = std::time::Instant::now();
    let pushed = push::push(&ctx.remote, dir, target, args, annotations, ctx.progress).await?;
    let pinned = pushed.store.pinned(&pushed.digest);
    let message = format!(
        "pushed {target} as {pinned} ({} bytes) in {:.2?}",
        pushed.size,
        started.elapsed()
    );
    ctx.finish(
        "push-source-bundle",
        &message,
        &Outcome {
            digest: Some(pushed.digest),
            size: Some(pushed.size),
            reference: Some(pinned),
            source_timestamp: args.source_timestamp.map(|ts| ts.to_string()),
            platform_results: None,
            vulnerabilities: None,
        },
        None,
    )
}
