//! `--assemble-index`: per-platform images (any repository, any registry,
//! or a layout) become one image index at `--image`.
//!
//! Every input is resolved first; all problems are reported together and
//! nothing is pushed unless the set is complete (or `--allow-missing`).
//! Then children are copied (mounted where possible) and pushed by digest,
//! and the index goes last.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Serialize;

use crate::assemble::checks::{check_duplicates, check_required};
use crate::assemble::entries::parse_entries;
use crate::assemble::resolve::resolve_all;
use crate::error::{Error, Result};
use crate::modes::{require_tag, Context};
use crate::oci::index::{self, IndexChild};
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::scan::Vulnerability;
use crate::settings::AssembleSettings;
use crate::store::copy::copy_manifest;
use crate::store::Store;

/// One line of the platform results file.
#[derive(Serialize)]
struct PlatformResult<'a> {
    platform: String,
    digest: String,
    size: u64,
    reference: String,
    /// What a scan found, when `--platform-vulnerabilities` gave a result
    /// for the platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    vulnerabilities: Option<&'a [Vulnerability]>,
}

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    target: &Target,
    args: &AssembleSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    require_tag(target, "app:v1")?;
    let entries = parse_entries(&args.platform_images)?;
    // Whether the target repository is new is asked meanwhile.
    let (resolved, ()) = futures_util::join!(
        resolve_all(&ctx.remote, &entries),
        ctx.remote.learn_if_new(target)
    );
    let (resolved, problems) = resolved?;
    if !problems.is_empty() {
        let list = problems.join("\n");
        if !args.allow_missing || resolved.is_empty() {
            return Err(Error::MissingInputs(format!(
                "{} of {} platform images cannot be used, nothing was pushed:\n{list}\n(--allow-missing builds the index from the others)",
                problems.len(),
                entries.len()
            )));
        }
        tracing::warn!("left out of the index (--allow-missing):\n{list}");
    }
    if let Some(nested) = resolved.iter().find(|r| r.manifest.is_index()) {
        return Err(Error::BadContent(format!(
            "{}: an index holds another index ({}) as a child; nested indexes cannot be assembled, pass the inner index itself",
            nested.label, nested.manifest.digest
        )));
    }
    check_duplicates(&resolved)?;
    if let Some(required) = &args.require_platforms {
        check_required(&resolved, required)?;
    }

    let dst = Store::for_writing(target, &ctx.remote)?;
    let copies = join_all(
        resolved
            .iter()
            .map(|r| copy_manifest(&r.source, &dst, &r.manifest)),
    )
    .await;
    for (r, copied) in resolved.iter().zip(copies) {
        let stats = copied.map_err(|e| e.in_context(&r.label))?;
        tracing::debug!("{}: {:?}", r.label, stats);
    }

    let mut children: Vec<IndexChild> = resolved.iter().map(|r| r.child.clone()).collect();
    let bytes = index::build(&mut children, args.index_format, annotations);
    let digest = dst
        .put_manifest(&bytes, args.index_format.media_type())
        .await?;
    let pinned = dst.pinned(&digest);
    let message = format!(
        "pushed index {target} as {pinned} with {} children",
        children.len()
    );
    ctx.finish(
        "assemble-index",
        &message,
        &Outcome {
            digest: Some(digest),
            size: Some(bytes.len() as u64),
            reference: Some(pinned),
            source_timestamp: None,
            platform_results: Some(platform_results(&dst, &children, args)?),
            vulnerabilities: None,
        },
        None,
    )
}

/// The platform results file: each child's platform, digest, size and
/// pinned reference (and scan findings, when given), as JSON.
fn platform_results(
    dst: &Store,
    children: &[IndexChild],
    args: &AssembleSettings,
) -> Result<String> {
    let lines = children
        .iter()
        .map(|c| {
            Ok(PlatformResult {
                platform: c.platform.short(),
                digest: c.descriptor.digest.clone(),
                size: c.descriptor.size,
                reference: dst.pinned(&c.descriptor.parsed_digest()?),
                vulnerabilities: args
                    .platform_vulnerabilities
                    .iter()
                    .find(|(p, _)| p.same_as(&c.platform))
                    .map(|(_, found)| found.as_slice()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    serde_json::to_string(&lines).map_err(|e| Error::Internal(e.to_string()))
}
