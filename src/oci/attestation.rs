//! Attestation manifests in an index, as buildx writes them: an entry with
//! platform `unknown/unknown` and the annotations
//! `vnd.docker.reference.type: attestation-manifest` and
//! `vnd.docker.reference.digest: <digest of the image it attests>`.
//! They travel with their image and are never a platform.

use crate::oci::manifest::Descriptor;

/// Annotation naming the kind of reference an index entry is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Annotation naming the image an attestation manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`REFERENCE_TYPE`] for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// True when the index entry is an attestation manifest.
pub fn is_attestation(desc: &Descriptor) -> bool {
    desc.annotations
        .get(REFERENCE_TYPE)
        .is_some_and(|t| t == ATTESTATION_MANIFEST)
}

/// The digest of the image an attestation entry is about.
pub fn attested_digest(desc: &Descriptor) -> Option<&str> {
    is_attestation(desc)
        .then(|| desc.annotations.get(REFERENCE_DIGEST).map(String::as_str))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Digest;

    #[test]
    fn only_annotated_entries_are_attestations() {
        let mut d = Descriptor::new("application/x", &Digest::of(b"a"), 1);
        assert!(!is_attestation(&d));
        d.annotations
            .insert(REFERENCE_DIGEST.into(), "sha256:abc".into());
        assert!(attested_digest(&d).is_none());
        d.annotations
            .insert(REFERENCE_TYPE.into(), ATTESTATION_MANIFEST.into());
        assert_eq!(attested_digest(&d), Some("sha256:abc"));
    }
}
