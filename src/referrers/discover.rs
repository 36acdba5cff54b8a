//! Listing the referrers of a manifest: the referrers API where the
//! registry serves it, the tag schema otherwise.

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::index::index_children;
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::referrers::tag_schema;
use crate::store::Store;

/// The referrers of `subject` in `store`, those of `artifact_type` only
/// when one is given (filtered here too, as registries may ignore it).
pub async fn discover(
    store: &Store,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>> {
    let all = match store.referrers_api(subject, artifact_type).await? {
        Some(bytes) => {
            let index = FetchedManifest::new(bytes, Some(crate::oci::manifest::OCI_INDEX.into()));
            index_children(&index).map_err(|e| {
                Error::BadContent(format!("the referrers API answered for {subject}: {e}"))
            })?
        }
        None => tag_schema::read(store, subject).await?.referrers,
    };
    Ok(all
        .into_iter()
        .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
        .collect())
}
