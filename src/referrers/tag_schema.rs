//! The referrers tag schema: the tag `<alg>-<hex>` of a subject's digest
//! holds an OCI index of its referrers.
//!
//! Registries offer no compare-and-swap on tags, so an attach is a loop:
//! read the index, write it back with what is missing (everything this
//! writer ever saw in it, plus its own), then read it again after a short
//! random pause, until it has held everything of this writer's twice in a
//! row. Writers that raced each other re-add what the other dropped; only
//! additions happen, so the index converges on the union.
//!
//! A tag that resolves to something other than an index of referrers (a
//! registry that maps `sha256-<hex>` to the subject itself) is not
//! trusted: it is never read as a list of referrers.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::index::index_children;
use crate::oci::manifest::{Descriptor, OCI_INDEX};
use crate::referrers::{fallback_tag, referrers_index};
use crate::store::Store;

/// Rounds of read, write and check before an attach gives up.
const MAX_ROUNDS: u32 = 40;
/// Checks in a row that must find every referrer of this writer.
const CONFIRMATIONS: u32 = 2;

/// What the tag schema says about a subject.
#[derive(Debug, Default)]
pub struct Listing {
    /// The referrers listed.
    pub referrers: Vec<Descriptor>,
    /// False when the tag names something that is not an index of
    /// referrers (it is then ignored).
    pub trusted: bool,
}

/// Reads the referrers of `subject` from the tag schema of `store`: none
/// when the tag does not exist.
pub async fn read(store: &Store, subject: &Digest) -> Result<Listing> {
    let tag = fallback_tag(subject);
    let manifest = match store.at_tag(&tag).get_manifest().await {
        Err(Error::NotFound(_)) => {
            return Ok(Listing {
                referrers: Vec::new(),
                trusted: true,
            })
        }
        other => other?,
    };
    if &manifest.digest == subject || manifest.media_type != OCI_INDEX {
        tracing::warn!(
            "the tag {tag} names {} ({}), not an index of referrers (the registry may resolve it to the subject itself); it is not read as referrers",
            manifest.digest,
            manifest.media_type
        );
        return Ok(Listing::default());
    }
    Ok(Listing {
        referrers: index_children(&manifest)?,
        trusted: true,
    })
}

/// Adds `added` to the referrers of `subject` in the tag schema of
/// `store`, safely against other writers doing the same (see the module
/// documentation).
pub async fn add(store: &Store, subject: &Digest, added: &[Descriptor]) -> Result<()> {
    let tag = fallback_tag(subject);
    let tagged = store.at_tag(&tag);
    let mut known: Vec<Descriptor> = Vec::new();
    let mut confirmed = 0;
    for round in 0..MAX_ROUNDS {
        let listing = read(store, subject).await?;
        let has = |d: &Descriptor| listing.referrers.iter().any(|r| r.digest == d.digest);
        if added.iter().all(has) {
            confirmed += 1;
            if confirmed >= CONFIRMATIONS {
                return Ok(());
            }
        } else {
            confirmed = 0;
            let mut index = listing.referrers.clone();
            for d in known.iter().chain(added) {
                if !index.iter().any(|r| r.digest == d.digest) {
                    index.push(d.clone());
                }
            }
            tagged
                .put_manifest(&referrers_index(&index), OCI_INDEX)
                .await?;
            known = index;
            if !listing.trusted {
                tracing::warn!(
                    "wrote the referrers of {subject} to the tag {tag}, but the registry does not read that tag back as written, so the write cannot be checked"
                );
                return Ok(());
            }
        }
        tokio::time::sleep(pause(round)).await;
    }
    Err(Error::Unreachable(format!(
        "the referrers tag {tag} kept changing under other writers after {MAX_ROUNDS} rounds; try again"
    )))
}

/// A random pause of 40 to 200 ms between rounds.
fn pause(round: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(round);
    Duration::from_millis(40 + h.finish() % 160)
}
