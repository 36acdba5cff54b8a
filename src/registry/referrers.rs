//! The OCI 1.1 referrers calls: the referrers API
//! (`GET /v2/<name>/referrers/<digest>`) and manifest pushes that name a
//! `subject`, whose answer says (with `OCI-Subject`) whether the registry
//! indexed the referrer itself.

use reqwest::StatusCode;

use super::api::{check, check_reported_digest, header, read_limited, MAX_MANIFEST_BYTES};
use super::session::{Access, RegistryClient};
use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::oci::reference::ImageRef;

/// What the registry did with a manifest that names a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectPush {
    /// Stored; `indexed` when the registry answered with `OCI-Subject`
    /// (it keeps the referrers itself, no tag schema needed).
    Stored {
        /// The manifest digest.
        digest: Digest,
        /// The registry indexed the referrer.
        indexed: bool,
    },
    /// Refused with 405 or 400 because of the subject (as ECR does).
    Refused(String),
}

impl RegistryClient {
    /// The referrers API's index for `subject`, when the registry serves
    /// it; `None` when it does not (404, 405, 400, 401, 403, 501: the tag
    /// schema applies then).
    pub async fn get_referrers(
        &self,
        image: &ImageRef,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        let what = format!("listing the referrers of {}", image.with_digest(subject));
        let sent = self
            .send(image, Access::Pull, &what, |http, origin| {
                let url = format!("{origin}/v2/{}/referrers/{subject}", image.repository);
                let request = match artifact_type {
                    Some(t) => http.get(url).query(&[("artifactType", t)]),
                    None => http.get(url),
                };
                Ok(request.header(reqwest::header::ACCEPT, crate::oci::manifest::OCI_INDEX))
            })
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(Error::Auth(e)) => {
                tracing::warn!(
                    "{what}: the referrers API refused access ({e}); using the tag schema"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if !status.is_success() {
            if matches!(
                status,
                StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::BAD_REQUEST
                    | StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::NOT_IMPLEMENTED
            ) {
                tracing::debug!("{what}: no referrers API ({status}); using the tag schema");
                return Ok(None);
            }
            return check(resp, image, &what, Access::Pull).await.map(|_| None);
        }
        let is_index = header(&resp, reqwest::header::CONTENT_TYPE.as_str())
            .is_some_and(|t| t.starts_with(crate::oci::manifest::OCI_INDEX));
        if !is_index {
            tracing::warn!("{what}: the registry answered something other than an OCI index; using the tag schema");
            return Ok(None);
        }
        read_limited(resp, MAX_MANIFEST_BYTES, &what)
            .await
            .map(Some)
    }

    /// Pushes a manifest that names a subject under `reference`.
    pub async fn put_manifest_with_subject(
        &self,
        image: &ImageRef,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<SubjectPush> {
        let (digest, resp) = self
            .send_manifest(image, reference, bytes, media_type)
            .await?;
        let what = format!("pushing manifest {}:{reference}", image.name());
        if matches!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
        ) {
            return Ok(SubjectPush::Refused(format!(
                "{what}: the registry refused a manifest with a subject ({})",
                resp.status()
            )));
        }
        let resp = check(resp, image, &what, Access::Push).await?;
        check_reported_digest(&resp, image, &digest)?;
        let indexed = header(&resp, "oci-subject").is_some();
        Ok(SubjectPush::Stored { digest, indexed })
    }
}
