//! Attaching a referrer: its manifest, naming the subject, is pushed; when
//! the registry does not say it indexed it (`OCI-Subject`), the tag schema
//! is updated. A registry that refuses manifests with a subject gets the
//! manifest without one, listed in the tag schema, with a warning.

use crate::error::Result;
use crate::oci::digest::Digest;
use crate::oci::manifest::{Descriptor, FetchedManifest, ImageManifest, OCI_MANIFEST};
use crate::referrers::{descriptor_of, tag_schema};
use crate::registry::referrers::SubjectPush;
use crate::store::Store;

/// Pushes `manifest` (whose `subject` names a manifest of `store`'s
/// repository) and makes it a listed referrer of its subject. Returns the
/// digest of what was stored.
pub async fn attach(store: &Store, manifest: &ImageManifest) -> Result<Digest> {
    let subject = manifest
        .subject
        .as_ref()
        .expect("a referrer names its subject")
        .parsed_digest()?;
    let bytes = manifest.to_bytes();
    let (digest, indexed) = match store.put_referrer(&bytes, OCI_MANIFEST).await? {
        SubjectPush::Stored { digest, indexed } => (digest, indexed),
        SubjectPush::Refused(why) => {
            tracing::warn!(
                "{why}; pushing it without the subject and listing it in the referrers tag schema"
            );
            let plain = ImageManifest {
                subject: None,
                ..manifest.clone()
            };
            let bytes = plain.to_bytes();
            let digest = store.put_manifest(&bytes, OCI_MANIFEST).await?;
            let listed = descriptor_of(&FetchedManifest::new(bytes, Some(OCI_MANIFEST.into())));
            tag_schema::add(store, &subject, &[listed]).await?;
            return Ok(digest);
        }
    };
    if !indexed {
        let listed = descriptor_of(&FetchedManifest::new(bytes, Some(OCI_MANIFEST.into())));
        tag_schema::add(store, &subject, &[listed]).await?;
    }
    Ok(digest)
}

/// Adds referrers already stored in `store` to the list of `subject`
/// there, unless the registry keeps that list itself.
pub async fn list(store: &Store, subject: &Digest, referrers: &[Descriptor]) -> Result<()> {
    if referrers.is_empty() || store.referrers_api(subject, None).await?.is_some() {
        return Ok(());
    }
    tag_schema::add(store, subject, referrers).await
}
