//! The distribution API calls ocistep makes: manifests (get, put, delete)
//! and blobs (exists, get, upload), with registry errors turned into
//! [`Error`]s that say what to do.

use bytes::Bytes;
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::session::{Access, RegistryClient};
use crate::error::{Error, Result};
use crate::oci::digest::{self, Digest};
use crate::oci::manifest::{FetchedManifest, MANIFEST_ACCEPT};
use crate::oci::reference::ImageRef;
use crate::registry::upload::BlobSource;

/// The largest manifest ocistep accepts (the distribution default is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

impl RegistryClient {
    /// Fetches the manifest `image` names (by digest if it has one, else by
    /// tag) and verifies its bytes against the digest asked for, or the
    /// digest the registry reports. The cache is not consulted: see
    /// [`crate::store::remote::Remote`].
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<FetchedManifest> {
        let reference = image.manifest_reference();
        let what = format!("fetching manifest {image}");
        let (bytes, media_type, reported) = self
            .retry_policy()
            .restarting(|_| self.fetch_manifest_once(image, &reference, &what))
            .await?;
        let fetched = FetchedManifest::new(bytes, media_type);
        let expected = match (&image.digest, reported) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(r)) => Digest::parse(&r).ok(),
            (None, None) => None,
        };
        if let Some(expected) = expected {
            digest::verify(
                &format!("manifest of {image}"),
                &expected,
                None,
                &fetched.digest,
                0,
            )?;
        }
        Ok(fetched)
    }

    /// One GET of a manifest: bytes, media type and the reported digest.
    async fn fetch_manifest_once(
        &self,
        image: &ImageRef,
        reference: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>, Option<String>)> {
        let resp = self
            .send(image, Access::Pull, what, |http, origin| {
                Ok(http
                    .get(format!(
                        "{origin}/v2/{}/manifests/{reference}",
                        image.repository
                    ))
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", ")))
            })
            .await?;
        let resp = check(resp, image, what, Access::Pull).await?;
        let media_type = header(&resp, reqwest::header::CONTENT_TYPE.as_str());
        let reported = header(&resp, "docker-content-digest");
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, what).await?;
        Ok((bytes, media_type, reported))
    }

    /// Pushes manifest bytes under `reference` (a tag or the digest) and
    /// returns their digest, checked against what the registry reports.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let (digest, resp) = self
            .send_manifest(image, reference, bytes, media_type)
            .await?;
        let what = format!("pushing manifest {}:{reference}", image.name());
        let resp = check(resp, image, &what, Access::Push).await?;
        check_reported_digest(&resp, image, &digest)?;
        Ok(digest)
    }

    /// Sends one manifest PUT and returns the digest of the bytes with the
    /// response, whatever its status.
    pub(super) async fn send_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(Digest, Response)> {
        let digest = Digest::of(bytes);
        let body = Bytes::copy_from_slice(bytes);
        let what = format!("pushing manifest {}:{reference}", image.name());
        let resp = self
            .send(image, Access::Push, &what, |http, origin| {
                Ok(http
                    .put(format!(
                        "{origin}/v2/{}/manifests/{reference}",
                        image.repository
                    ))
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(body.clone()))
            })
            .await?;
        Ok((digest, resp))
    }

    /// Deletes the manifest with `digest` (what `--prune` does).
    pub async fn delete_manifest(&self, image: &ImageRef, digest: &Digest) -> Result<()> {
        let what = format!("deleting {}", image.with_digest(digest));
        let resp = self
            .send(image, Access::Delete, &what, |http, origin| {
                Ok(http.delete(format!(
                    "{origin}/v2/{}/manifests/{digest}",
                    image.repository
                )))
            })
            .await?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(Error::BadContent(format!(
                "{what}: the registry does not allow deletes (405); enable them (distribution: REGISTRY_STORAGE_DELETE_ENABLED=true) or drop --prune"
            )));
        }
        check(resp, image, &what, Access::Delete).await.map(|_| ())
    }

    /// True when the repository already has the manifest with `digest`.
    pub async fn manifest_exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool> {
        let what = format!("checking manifest {digest} in {}", image.name());
        let resp = self
            .send(image, Access::Push, &what, |http, origin| {
                Ok(http
                    .head(format!(
                        "{origin}/v2/{}/manifests/{digest}",
                        image.repository
                    ))
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", ")))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => check(resp, image, &what, Access::Push).await.map(|_| false),
        }
    }

    /// True when the registry says the repository does not exist yet (404
    /// `NAME_UNKNOWN` for its tag list): it then holds no blob at all, so a
    /// layer can be uploaded before its digest is known without ever
    /// sending one the registry already has. Any other answer is false; a
    /// registry that cannot be reached or keeps failing is an error, as for
    /// any request.
    pub async fn repository_is_new(&self, image: &ImageRef) -> Result<bool> {
        let what = format!("listing tags of {}", image.name());
        let resp = self
            .send(image, Access::Push, &what, |http, origin| {
                Ok(http
                    .get(format!("{origin}/v2/{}/tags/list", image.repository))
                    .query(&[("n", "1")]))
            })
            .await?;
        let status = resp.status();
        if super::retry::is_transient_status(status) {
            return check(resp, image, &what, Access::Push).await.map(|_| false);
        }
        if status != StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let body = error_body(resp, &what).await;
        Ok(registry_errors(&body)
            .iter()
            .any(|e| e.code == "NAME_UNKNOWN"))
    }

    /// True when the repository already has the blob.
    pub async fn blob_exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", image.name());
        let resp = self
            .send(image, Access::Push, &what, |http, origin| {
                Ok(http.head(format!("{origin}/v2/{}/blobs/{digest}", image.repository)))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => check(resp, image, &what, Access::Push).await.map(|_| false),
        }
    }

    /// Asks the registry to mount a blob from another repository on the
    /// same registry; true when mounted (201). Anything else is a decline
    /// and the caller uploads the blob: a 202 (the registry opened an
    /// upload session instead: the blob is not in `from`, or, on ECR, no
    /// manifest there uses it), whose session is cancelled so none is left
    /// open; 401 or 403 (no token covers both repositories: the blob is
    /// then read with a token for `from` and written with one for the
    /// target); any other refusal (404, 405: no cross-repository mounts).
    /// A registry that keeps failing is an error, as for any request.
    pub async fn mount_blob(&self, image: &ImageRef, digest: &Digest, from: &str) -> Result<bool> {
        let what = format!("mounting blob {digest} from {from} into {}", image.name());
        let resp = self
            .send_mount(image, from, &what, |http, origin| {
                Ok(http
                    .post(format!("{origin}/v2/{}/blobs/uploads/", image.repository))
                    .query(&[("mount", digest.as_str()), ("from", from)])
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        let status = resp.status();
        match status {
            StatusCode::CREATED => return Ok(true),
            s if super::retry::is_transient_status(s) => {
                return check(resp, image, &what, Access::Push).await.map(|_| false)
            }
            _ => tracing::debug!("{what}: declined ({status}), uploading instead"),
        }
        if let (StatusCode::ACCEPTED, Some(session)) = (status, header(&resp, "location")) {
            if let Err(e) = self.cancel_upload(image, &session).await {
                tracing::debug!("{e}");
            }
        }
        Ok(false)
    }

    /// Starts a blob download; the caller streams and verifies the body.
    pub async fn get_blob(&self, image: &ImageRef, digest: &Digest) -> Result<Response> {
        let what = format!("downloading blob {digest} from {}", image.name());
        let resp = self
            .send(image, Access::Pull, &what, |http, origin| {
                Ok(http.get(format!("{origin}/v2/{}/blobs/{digest}", image.repository)))
            })
            .await?;
        check(resp, image, &what, Access::Pull).await
    }

    /// Uploads a blob: a POST to open an upload and one streamed PUT. A
    /// failed attempt starts a new upload session. Whether the repository
    /// has the blob already is the caller's to ask first.
    pub async fn upload_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
    ) -> Result<()> {
        let what = format!("uploading blob {digest} to {}", image.name());
        self.retry_policy()
            .restarting(|_| self.upload_once(image, digest, size, source, &what))
            .await
    }

    async fn upload_once(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        what: &str,
    ) -> Result<()> {
        // The source is reached while the session opens.
        let (url, started) =
            futures_util::try_join!(self.open_upload(image, what), source.started_body())?;
        let url = with_digest(url, digest);
        // Taken by the first request; one sent again after an authorization
        // challenge opens the source anew.
        let started = std::sync::Mutex::new(Some(started));
        // One attempt only: a PUT cut short may have spoilt the session, so a
        // failure starts over with a new POST (see upload_blob).
        let resp = self
            .send_once(image, Access::Push, what, |http, _| {
                let taken = started
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let body = match taken {
                    Some(body) => body,
                    None => source.body()?,
                };
                Ok(http
                    .put(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(body))
            })
            .await
            .map_err(|e| match (source.failure(), e) {
                // The body broke off because its source failed: that is
                // the error, not the connection's.
                (Some(failure), _) => failure,
                (None, Error::Unreachable(msg)) => Error::Interrupted(msg),
                (None, other) => other,
            })?;
        if let Some(failure) = source.failure() {
            return Err(failure);
        }
        if super::retry::is_transient_status(resp.status()) {
            return Err(Error::Interrupted(format!(
                "{what}: registry answered {}",
                resp.status()
            )));
        }
        check(resp, image, what, Access::Push).await.map(|_| ())
    }

    /// Opens an upload session (a POST, retried like any request) and
    /// returns its URL.
    async fn open_upload(&self, image: &ImageRef, what: &str) -> Result<reqwest::Url> {
        let resp = self
            .send(image, Access::Push, what, |http, origin| {
                Ok(http
                    .post(format!("{origin}/v2/{}/blobs/uploads/", image.repository))
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        let resp = check(resp, image, what, Access::Push).await?;
        let location = header(&resp, "location").ok_or_else(|| {
            Error::BadContent(format!(
                "{what}: the registry opened an upload without a Location header"
            ))
        })?;
        resolve_location(&self.origin(image).await?, &location)
    }

    /// Opens an upload session and sends one PATCH whose body is whatever
    /// arrives on `chunks` until [`Feed::EndOfPatch`] or until the sender is
    /// dropped, so a blob can go out while it is still being produced. The
    /// session's URL goes to `opened` as soon as the registry opens it, so
    /// the caller can cancel it whatever happens next. An error means the
    /// registry would not open an upload at all (after the usual retries); a
    /// stream that fails after that is [`Streamed::Failed`] and not retried:
    /// the caller keeps the bytes and uploads them again the usual way.
    pub async fn stream_upload(
        &self,
        image: &ImageRef,
        chunks: tokio::sync::mpsc::Receiver<Feed>,
        opened: &std::cell::OnceCell<String>,
    ) -> Result<Streamed> {
        let what = format!("streaming a blob to {}", image.name());
        let url = self.open_upload(image, &what).await?;
        let _ = opened.set(url.to_string());
        Ok(match self.send_stream(image, url, chunks, &what).await {
            Ok(location) => Streamed::Done(location),
            Err(e) => Streamed::Failed(e),
        })
    }

    /// The PATCH of [`RegistryClient::stream_upload`]; returns where to
    /// finish the upload.
    async fn send_stream(
        &self,
        image: &ImageRef,
        url: reqwest::Url,
        chunks: tokio::sync::mpsc::Receiver<Feed>,
        what: &str,
    ) -> Result<String> {
        // The body can be built once only: the chunks are gone once sent.
        let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(tokio_stream_of(chunks))));
        let resp = self
            .send_once(image, Access::Push, what, |http, _| {
                let body = body
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .ok_or_else(|| {
                        Error::Interrupted(format!("{what}: the stream was already sent"))
                    })?;
                Ok(http
                    .patch(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body))
            })
            .await?;
        let resp = check(resp, image, what, Access::Push).await?;
        header(&resp, "location").ok_or_else(|| {
            Error::BadContent(format!(
                "{what}: the registry sent no Location after the PATCH"
            ))
        })
    }

    /// Closes a streamed upload at `location` with the blob's digest,
    /// sending with it the bytes of the blob the PATCH did not carry: those
    /// of the file `blob` from `sent` on (none when it carried them all). The
    /// registry checks the bytes it got against the digest.
    pub async fn finish_streamed_upload(
        &self,
        image: &ImageRef,
        location: &str,
        digest: &Digest,
        blob: &std::path::Path,
        sent: u64,
    ) -> Result<()> {
        let what = format!("finishing the upload of blob {digest} to {}", image.name());
        let url = with_digest(
            resolve_location(&self.origin(image).await?, location)?,
            digest,
        );
        let resp = self
            .send_once(image, Access::Push, &what, |http, _| {
                let (body, len) = super::upload::file_from(blob, sent)?;
                Ok(http
                    .put(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body))
            })
            .await?;
        check(resp, image, &what, Access::Push).await.map(|_| ())
    }

    /// Cancels the upload session at `location` (a blob given up after a
    /// streamed PATCH, or a stream that failed), so it leaves no
    /// half-written upload behind. `location` may be the URL the session
    /// was opened with even after bytes went to it; a registry that keys
    /// sessions by their id cancels it, while distribution refuses (its
    /// token records the offset, which no longer matches) and keeps the
    /// session until its purge.
    pub async fn cancel_upload(&self, image: &ImageRef, location: &str) -> Result<()> {
        let what = format!("cancelling an upload to {}", image.name());
        let url = resolve_location(&self.origin(image).await?, location)?;
        let resp = self
            .send_once(image, Access::Push, &what, |http, _| {
                Ok(http.delete(url.clone()))
            })
            .await?;
        check(resp, image, &what, Access::Push).await.map(|_| ())
    }
}

/// What a streamed upload is fed.
pub enum Feed {
    /// The next bytes of the blob.
    Bytes(Bytes),
    /// The PATCH ends here, so the registry can store what it got while the
    /// rest is still being produced; the rest goes with the closing PUT.
    EndOfPatch,
}

/// How a streamed upload ended once the registry had opened it.
pub enum Streamed {
    /// All bytes sent; finish the upload at this location with the digest.
    Done(String),
    /// The stream broke off; the blob must be uploaded again.
    Failed(Error),
}

/// The bytes fed through a channel as a body stream, up to
/// [`Feed::EndOfPatch`] or the sender's end.
fn tokio_stream_of(
    mut chunks: tokio::sync::mpsc::Receiver<Feed>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| {
        chunks.poll_recv(cx).map(|fed| match fed {
            Some(Feed::Bytes(bytes)) => Some(Ok(bytes)),
            Some(Feed::EndOfPatch) | None => None,
        })
    })
}

/// Resolves an upload `Location` (absolute or relative).
fn resolve_location(origin: &str, location: &str) -> Result<reqwest::Url> {
    let base = reqwest::Url::parse(&format!("{origin}/"))
        .map_err(|e| Error::Internal(format!("bad registry origin {origin}: {e}")))?;
    base.join(location)
        .map_err(|e| Error::BadContent(format!("registry sent an invalid upload location: {e}")))
}

/// An upload URL with the blob's digest added, to close the session.
fn with_digest(mut url: reqwest::Url, digest: &Digest) -> reqwest::Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

pub(super) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
}

/// The most of an error body that is read, for its message.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The most characters of a registry's message quoted in an error.
const MAX_QUOTED_CHARS: usize = 200;

/// Reads a body up to `limit` bytes and stops there, leaving the rest
/// unread; `true` with the bytes when they are all of it.
async fn read_capped(mut resp: Response, limit: usize, what: &str) -> Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        Error::Interrupted(format!(
            "{what}: connection failed while reading: {}",
            super::error_chain::error_chain(&e)
        ))
    })? {
        if out.len() + chunk.len() > limit {
            out.extend_from_slice(&chunk[..limit - out.len()]);
            return Ok((out, false));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, true))
}

/// A whole body of at most `limit` bytes; a longer one is refused as soon
/// as it passes the limit, without reading the rest.
pub(super) async fn read_limited(resp: Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    match read_capped(resp, limit, what).await? {
        (body, true) => Ok(body),
        (_, false) => Err(Error::BadContent(format!(
            "{what}: the response is larger than {limit} bytes, the most ocistep reads of it"
        ))),
    }
}

/// The first [`MAX_ERROR_BODY_BYTES`] of an error response's body (empty
/// when it cannot be read): enough for a message, whatever the server sends.
pub(super) async fn error_body(resp: Response, what: &str) -> Vec<u8> {
    read_capped(resp, MAX_ERROR_BODY_BYTES, what)
        .await
        .map(|(body, _)| body)
        .unwrap_or_default()
}

/// What an error answer says, for a message: the status, with the
/// registry's error codes and messages, or else the start of a plain-text
/// body; secrets the server quoted are redacted.
pub(super) fn describe(status: StatusCode, body: &[u8]) -> String {
    let errors = registry_errors(body);
    let text = String::from_utf8_lossy(body);
    let detail = if let Some((code, message)) = super::storage::xml_error(&text) {
        format!("{}: {}", quotable(&code), quotable(&message))
    } else if errors.is_empty() {
        quotable(&text)
    } else {
        errors
            .iter()
            .map(|e| format!("{}: {}", quotable(&e.code), quotable(&e.message)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match detail.is_empty() {
        true => status.to_string(),
        false => format!("{status} ({detail})"),
    }
}

/// The start of server text on one line, secrets redacted (before it is
/// cut, so no part of one is left), or nothing when it is not text (an
/// HTML page, binary bytes).
fn quotable(text: &str) -> String {
    let text = crate::redact::redact(text.trim());
    let text = text.as_ref();
    if text.starts_with('<') || text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return String::new();
    }
    let mut quoted: String = text
        .chars()
        .take(MAX_QUOTED_CHARS)
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_QUOTED_CHARS {
        quoted.push('…');
    }
    quoted
}

/// The errors of a registry's JSON error body.
fn registry_errors(body: &[u8]) -> Vec<RegistryError> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

#[derive(Deserialize)]
struct RegistryError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Refuses a stored manifest whose digest, as the registry reports it,
/// differs from the digest of the bytes sent.
pub(super) fn check_reported_digest(
    resp: &Response,
    image: &ImageRef,
    digest: &Digest,
) -> Result<()> {
    match header(resp, "docker-content-digest") {
        Some(reported) if reported != digest.as_str() => Err(Error::DigestMismatch {
            what: format!("manifest stored at {image}"),
            expected: digest.to_string(),
            actual: reported,
        }),
        _ => Ok(()),
    }
}

/// Passes successful responses through and turns failures into errors
/// that name the registry's error codes and what to do.
pub async fn check(
    resp: Response,
    image: &ImageRef,
    what: &str,
    access: Access,
) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let insufficient_scope = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(super::token::parse_challenge)
        .is_some_and(|c| c.error.as_deref() == Some("insufficient_scope"));
    let storage = super::storage::elsewhere(&resp, image.api_host());
    let body = error_body(resp, what).await;
    if let Some(storage) = storage {
        return Err(storage_refusal(what, &storage, status, &body));
    }
    let errors = registry_errors(&body);
    let codes: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    let detail = describe(status, &body);
    Err(match status {
        StatusCode::UNAUTHORIZED if insufficient_scope => Error::Auth(format!(
            "{what}: registry {} did not grant this access to {} ({detail}); provide credentials that allow it with --secret-path, DOCKER_CONFIG or ~/.docker/config.json",
            image.registry,
            image.name()
        )),
        StatusCode::UNAUTHORIZED => Error::Auth(format!(
            "{what}: registry {} requires credentials that were not given or were refused ({detail}); provide them with --secret-path, DOCKER_CONFIG or ~/.docker/config.json",
            image.registry
        )),
        StatusCode::FORBIDDEN => Error::Auth(format!(
            "{what}: access to {} is denied ({detail}); check that the credentials may {} this repository",
            image.name(),
            match access {
                Access::Pull => "pull from",
                Access::Push => "push to",
                Access::Delete => "delete from",
            }
        )),
        StatusCode::NOT_FOUND if codes.contains(&"NAME_UNKNOWN") => Error::NotFound(format!(
            "{what}: repository {} does not exist; check the image name",
            image.name()
        )),
        StatusCode::NOT_FOUND if codes.contains(&"MANIFEST_UNKNOWN") || what.starts_with("fetching manifest") => {
            Error::NotFound(format!("{what}: {} not found in {}; check the tag or digest", image.manifest_reference(), image.name()))
        }
        StatusCode::NOT_FOUND => Error::NotFound(format!("{what}: not found ({detail})")),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Error::Unreachable(format!("{what}: registry kept failing ({detail}); try again later"))
        }
        _ => Error::BadContent(format!("{what}: registry answered {detail}")),
    })
}

/// The error for a refusal by the blob storage a registry redirected to.
fn storage_refusal(what: &str, storage: &str, status: StatusCode, body: &[u8]) -> Error {
    let detail = describe(status, body);
    let message = format!(
        "{what}: the registry sent it to its blob storage at {storage}, which answered {detail}"
    );
    match status {
        StatusCode::NOT_FOUND => Error::NotFound(format!(
            "{message}; the registry lists a blob its storage does not hold: report it to the registry's operator"
        )),
        _ => Error::Unreachable(format!(
            "{message}; try again later, or report it to the registry's operator if it persists"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_url_handles_relative_and_absolute_locations() {
        let d = Digest::of(b"a");
        let u = with_digest(
            resolve_location(
                "http://127.0.0.1:5000",
                "/v2/app/blobs/uploads/abc?_state=x",
            )
            .unwrap(),
            &d,
        );
        assert_eq!(
            u.as_str(),
            format!(
                "http://127.0.0.1:5000/v2/app/blobs/uploads/abc?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
        let u = with_digest(
            resolve_location("http://127.0.0.1:5000", "https://blob.example/up/1").unwrap(),
            &d,
        );
        assert!(u.as_str().starts_with("https://blob.example/up/1?digest="));
    }
}
