//! `--copy --referrers`: the referrers of an image (and of each child of
//! an index), their own referrers in turn, and cosign's tags
//! (`<alg>-<hex>.sig`, `.att`, `.sbom`) move with it, each listed at the
//! destination as the destination keeps referrers (API or tag schema).

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::referrers::{attach, discover::discover, fallback_tag};
use crate::store::copy::copy_manifest;
use crate::store::Store;

/// cosign's tag suffixes: signatures, attestations, SBOMs.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// Copies the referrers of every one of `subjects` (recursively) and
/// cosign's tags for them from `from` to `to`. Returns how many manifests
/// it copied.
pub async fn copy_referrers(from: &Store, to: &Store, subjects: &[Digest]) -> Result<u64> {
    let mut queue: Vec<Digest> = subjects.to_vec();
    let mut seen: BTreeSet<Digest> = BTreeSet::new();
    let mut copied = 0;
    while let Some(subject) = queue.pop() {
        if !seen.insert(subject.clone()) {
            continue;
        }
        let referrers = discover(from, &subject, None).await?;
        for desc in &referrers {
            let manifest = from.get_child(desc).await?;
            copy_manifest(from, to, &manifest).await?;
            queue.push(manifest.digest.clone());
            copied += 1;
        }
        attach::list(to, &subject, &referrers).await?;
        for suffix in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(&subject));
            let manifest = match from.at_tag(&tag).get_manifest().await {
                Err(Error::NotFound(_)) => continue,
                other => other?,
            };
            copy_manifest(from, to, &manifest).await?;
            to.at_tag(&tag)
                .put_manifest(&manifest.bytes, &manifest.media_type)
                .await?;
            queue.push(manifest.digest.clone());
            copied += 1;
        }
    }
    Ok(copied)
}
