//! `--copy --platform`: the entries of an index for the platforms asked
//! for, each with its attestations, for a new index at the destination.

use crate::error::{Error, Result};
use crate::oci::index::{index_children, IndexChild};
use crate::oci::manifest::FetchedManifest;
use crate::oci::platform::Platform;

/// The entries of `index` whose platform is one of `wanted` (the best match
/// for each, as a client would choose), and their attestations. A platform
/// the index lacks is an error that lists what it has.
pub fn select_platforms(index: &FetchedManifest, wanted: &[Platform]) -> Result<Vec<IndexChild>> {
    if !index.is_index() {
        return Err(Error::InvalidInput(format!(
            "--platform chooses among the children of an index, but {} is a single image ({}); copy it without --platform",
            index.digest, index.media_type
        )));
    }
    let all: Vec<IndexChild> = index_children(index)?
        .iter()
        .map(IndexChild::from_entry)
        .collect();
    let images: Vec<IndexChild> = all
        .iter()
        .filter(|c| !c.is_attestation() && !c.platform.is_unknown())
        .cloned()
        .collect();
    let mut chosen: Vec<IndexChild> = Vec::new();
    let mut missing = Vec::new();
    for want in wanted {
        match want.select(&images, |c| Some(c.platform.clone())) {
            Some(c)
                if !chosen
                    .iter()
                    .any(|k| k.descriptor.digest == c.descriptor.digest) =>
            {
                chosen.push(c.clone())
            }
            Some(_) => {}
            None => missing.push(want.short()),
        }
    }
    if !missing.is_empty() {
        let have: Vec<String> = images.iter().map(|c| c.platform.short()).collect();
        return Err(Error::PlatformNotFound(format!(
            "index {} has no image for {}; it has: {}",
            index.digest,
            missing.join(", "),
            have.join(", ")
        )));
    }
    let attestations: Vec<IndexChild> = all
        .iter()
        .filter(|a| {
            a.attests()
                .is_some_and(|d| chosen.iter().any(|c| c.descriptor.digest == d))
        })
        .cloned()
        .collect();
    chosen.extend(attestations);
    Ok(chosen)
}
