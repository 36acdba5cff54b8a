//! What the referrers need of a store: other tags of the same repository
//! (the tag schema), the referrers API where a registry serves it, and
//! pushes of manifests that name a subject. A layout has no API; the tag
//! schema serves it as it serves registries without one.

use crate::error::Result;
use crate::oci::digest::Digest;
use crate::oci::manifest::Descriptor;
use crate::oci::reference::{ImageRef, LayoutRef};
use crate::registry::referrers::SubjectPush;
use crate::store::Store;

impl Store {
    /// The same repository (or layout) at another tag.
    pub fn at_tag(&self, tag: &str) -> Store {
        self.retargeted(Some(tag))
    }

    /// The same repository (or layout) with neither tag nor digest: what
    /// is stored there is stored by digest only.
    pub fn untagged(&self) -> Store {
        self.retargeted(None)
    }

    fn retargeted(&self, tag: Option<&str>) -> Store {
        let tag = tag.map(str::to_string);
        match self {
            Store::Registry { remote, image } => Store::Registry {
                remote: remote.clone(),
                image: ImageRef {
                    tag: tag.clone(),
                    digest: None,
                    ..image.clone()
                },
            },
            Store::Layout { layout, reference } => Store::Layout {
                layout: layout.clone(),
                reference: LayoutRef {
                    tag,
                    digest: None,
                    ..reference.clone()
                },
            },
        }
    }

    /// The referrers API's index for `subject` (filtered by
    /// `artifact_type` where the registry filters); `None` where there is
    /// no API (a layout, a registry that does not serve it).
    pub async fn referrers_api(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Registry { remote, image } => {
                remote
                    .client
                    .get_referrers(image, subject, artifact_type)
                    .await
            }
            Store::Layout { .. } => Ok(None),
        }
    }

    /// Stores a manifest that names a subject, under the store's tag when
    /// it has one, else by digest. A layout never indexes referrers itself.
    pub async fn put_referrer(&self, bytes: &[u8], media_type: &str) -> Result<SubjectPush> {
        match self {
            Store::Registry { remote, image } => {
                let digest = Digest::of(bytes);
                let reference = image.tag.clone().unwrap_or_else(|| digest.to_string());
                let pushed = remote
                    .client
                    .put_manifest_with_subject(image, &reference, bytes, media_type)
                    .await?;
                if matches!(pushed, SubjectPush::Stored { .. }) {
                    remote.remember(image, &digest);
                }
                Ok(pushed)
            }
            Store::Layout { .. } => {
                let digest = self.put_manifest(bytes, media_type).await?;
                Ok(SubjectPush::Stored {
                    digest,
                    indexed: false,
                })
            }
        }
    }

    /// The descriptor of the manifest `subject` names here, fetched (a
    /// subject that does not exist is [`crate::error::Error::NotFound`]).
    pub async fn subject_descriptor(&self) -> Result<Descriptor> {
        Ok(self.get_manifest().await?.descriptor())
    }
}
