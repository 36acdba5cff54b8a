//! `--append` and `--remove-platform`: an index is edited rather than
//! replaced. The index at the target is read; a platform given again
//! replaces that platform's entry (and its attestation), removed platforms
//! go, everything else stays as it was, annotations included.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::oci::index::{index_annotations, index_children, IndexChild};
use crate::oci::platform::Platform;
use crate::store::Store;

/// The index an `--append` starts from.
#[derive(Debug, Default)]
pub struct Existing {
    /// Its entries, annotations kept.
    pub children: Vec<IndexChild>,
    /// Its own annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Reads the index at `dst`'s tag: none when the tag does not exist yet;
/// an image there is an error (an index cannot be appended to it).
pub async fn existing(dst: &Store, target: &str) -> Result<Existing> {
    let manifest = match dst.get_manifest().await {
        Err(Error::NotFound(_)) => return Ok(Existing::default()),
        other => other?,
    };
    if !manifest.is_index() {
        return Err(Error::InvalidInput(format!(
            "--append: {target} is an image ({}), not an index; assemble a new index under another tag, or drop --append to replace it",
            manifest.media_type
        )));
    }
    Ok(Existing {
        children: index_children(&manifest)?
            .iter()
            .map(IndexChild::from_entry)
            .collect(),
        annotations: index_annotations(&manifest)?,
    })
}

/// The entries of `existing` that stay next to the `added` ones: not of a
/// platform added again nor of one removed, and the attestations of those
/// that stay. Removed platforms the index did not have are returned too.
pub fn kept(
    existing: &[IndexChild],
    added: &[IndexChild],
    remove: &[Platform],
) -> (Vec<IndexChild>, Vec<String>) {
    let replaced = |c: &IndexChild| {
        added
            .iter()
            .filter(|a| !a.is_attestation())
            .any(|a| a.platform.same_as(&c.platform))
            || remove.iter().any(|p| p.same_as(&c.platform))
    };
    let images: Vec<IndexChild> = existing
        .iter()
        .filter(|c| !c.is_attestation() && !replaced(c))
        .cloned()
        .collect();
    let attestations = existing.iter().filter(|c| {
        c.attests()
            .is_some_and(|d| images.iter().any(|i| i.descriptor.digest == d))
    });
    let mut out = images.clone();
    out.extend(attestations.cloned());
    let absent = remove
        .iter()
        .filter(|p| {
            !existing
                .iter()
                .any(|c| !c.is_attestation() && p.same_as(&c.platform))
        })
        .map(Platform::short)
        .collect();
    (out, absent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::attestation::{ATTESTATION_MANIFEST, REFERENCE_DIGEST, REFERENCE_TYPE};
    use crate::oci::digest::Digest;
    use crate::oci::manifest::{Descriptor, OCI_MANIFEST};

    fn image(p: &str, seed: &[u8]) -> IndexChild {
        IndexChild {
            platform: Platform::parse(p).unwrap(),
            descriptor: Descriptor::new(OCI_MANIFEST, &Digest::of(seed), 1),
        }
    }

    fn attestation(of: &IndexChild) -> IndexChild {
        let mut d = Descriptor::new(
            OCI_MANIFEST,
            &Digest::of(of.descriptor.digest.as_bytes()),
            1,
        );
        d.annotations
            .insert(REFERENCE_TYPE.into(), ATTESTATION_MANIFEST.into());
        d.annotations
            .insert(REFERENCE_DIGEST.into(), of.descriptor.digest.clone());
        IndexChild {
            platform: Platform::unknown(),
            descriptor: d,
        }
    }

    #[test]
    fn a_platform_given_again_replaces_its_entry_and_attestation() {
        let (amd, arm) = (image("linux/amd64", b"1"), image("linux/arm64", b"2"));
        let existing = vec![
            amd.clone(),
            attestation(&amd),
            arm.clone(),
            attestation(&arm),
        ];
        let new_arm = image("linux/arm64/v8", b"3");
        let (kept, absent) = kept(&existing, &[new_arm], &[]);
        let digests: Vec<&str> = kept.iter().map(|c| c.descriptor.digest.as_str()).collect();
        assert_eq!(
            digests,
            [
                amd.descriptor.digest.as_str(),
                attestation(&amd).descriptor.digest.as_str()
            ]
        );
        assert!(absent.is_empty());
    }

    #[test]
    fn removed_platforms_go_with_their_attestation() {
        let (amd, arm) = (image("linux/amd64", b"1"), image("linux/arm64", b"2"));
        let existing = vec![amd.clone(), arm.clone(), attestation(&arm)];
        let remove = [
            Platform::parse("linux/arm64").unwrap(),
            Platform::parse("linux/s390x").unwrap(),
        ];
        let (kept, absent) = kept(&existing, &[], &remove);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].descriptor.digest, amd.descriptor.digest);
        assert_eq!(absent, ["linux/s390x"]);
    }
}
