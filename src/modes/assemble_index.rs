//! `--assemble-index`: per-platform images (any repository, any registry,
//! or a layout) become one image index at `--image`; with `--append`, the
//! index already there is edited instead.
//!
//! Every input is resolved first; all problems are reported together and
//! nothing is pushed unless the set is complete (or `--allow-missing`).
//! Then children (and their attestations) are copied, mounted where
//! possible, and pushed by digest, and the index goes last.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use crate::assemble::append::{existing, kept, Existing};
use crate::assemble::checks::{check_duplicates, check_required};
use crate::assemble::entries::parse_entries;
use crate::assemble::report::platform_results;
use crate::assemble::resolve::resolve_all;
use crate::error::{Error, Result};
use crate::modes::{require_tag, Context};
use crate::oci::index::{self, IndexChild};
use crate::oci::reference::Target;
use crate::results::Outcome;
use crate::settings::AssembleSettings;
use crate::store::copy::copy_manifest;
use crate::store::Store;

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    target: &Target,
    args: &AssembleSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    require_tag(target, "app:v1")?;
    let entries = match args.platform_images.is_empty() && args.append {
        true => Vec::new(),
        false => parse_entries(&args.platform_images)?,
    };
    // Whether the target repository is new is asked meanwhile.
    let (resolved, ()) = futures_util::join!(
        resolve_all(&ctx.remote, &entries),
        ctx.remote.learn_if_new(target)
    );
    let (mut resolved, problems) = resolved?;
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
    if args.drop_attestations {
        resolved.retain(|r| !r.is_attestation());
    }
    check_duplicates(&resolved)?;
    let added: Vec<IndexChild> = resolved.iter().map(|r| r.child.clone()).collect();
    // A layout is made only once the inputs are known to be good.
    let dst = Store::for_writing(target, &ctx.remote)?;
    let base = match args.append {
        true => existing(&dst, &target.to_string()).await?,
        false => Existing::default(),
    };
    let (mut children, absent) = kept(&base.children, &added, &args.remove_platforms);
    if !absent.is_empty() {
        tracing::warn!(
            "--remove-platform: {target} has no {}; nothing to remove for it",
            absent.join(", ")
        );
    }
    if args.drop_attestations {
        children.retain(|c| !c.is_attestation());
    }
    children.extend(added);
    if children.iter().all(|c| c.is_attestation()) {
        return Err(Error::Usage(format!(
            "the index {target} would have no image; give --platform-image entries or remove fewer platforms"
        )));
    }
    if let Some(required) = &args.require_platforms {
        check_required(&children, required)?;
    }

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

    let mut merged = base.annotations;
    merged.extend(annotations.clone());
    let bytes = index::build(&mut children, args.index_format, &merged);
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
            platform_results: Some(platform_results(
                &dst,
                &children,
                &args.platform_vulnerabilities,
            )?),
            vulnerabilities: None,
        },
        None,
    )
}
