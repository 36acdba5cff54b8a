//! Registries that handle OCI 1.1 referrers their own way, emulated in
//! front of distribution 2.8 (which has no referrers API):
//!
//! - Harbor: the referrers API answers 401 ([`FaultProxy::harbor`]).
//! - Docker Hub: the referrers API answers 405 ([`FaultProxy::docker_hub`]).
//! - ECR: a manifest with a `subject` is refused with 405 ([`FaultProxy::ecr`]).
//! - GitLab: `manifests/sha256-<hex>` resolves to the manifest
//!   `sha256:<hex>`, the subject itself ([`FaultProxy::gitlab`]).
//! - A registry with the referrers API: pushes of manifests with a subject
//!   are answered with `OCI-Subject` and listed, and
//!   `GET /v2/<name>/referrers/<digest>` serves the list
//!   ([`FaultProxy::referrers_api`]).
//!
//! And registries that keep blobs on another origin (S3, a CDN): a blob
//! `GET` is answered with a redirect to a [`BlobStorage`]
//! ([`FaultProxy::storage_redirects`]).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use serde_json::{json, Value};

use super::schedule::EVERY;
use super::storage::BlobStorage;
use super::wire::{forward, write_response, RequestHead, Response};
use super::{relay, relay_response, Fault, FaultProxy, Rule, State};

impl FaultProxy {
    /// Harbor: the referrers API answers 401.
    pub fn harbor(upstream: &str) -> FaultProxy {
        let status = Fault::Status {
            code: 401,
            retry_after: None,
        };
        FaultProxy::start(upstream, vec![Rule::every("/referrers/", status)])
    }

    /// Docker Hub: the referrers API answers 405.
    pub fn docker_hub(upstream: &str) -> FaultProxy {
        let status = Fault::Status {
            code: 405,
            retry_after: None,
        };
        FaultProxy::start(upstream, vec![Rule::every("/referrers/", status)])
    }

    /// ECR: manifests that name a subject are refused with 405.
    pub fn ecr(upstream: &str) -> FaultProxy {
        FaultProxy::start(
            upstream,
            vec![every("PUT", "/manifests/", Fault::RefuseSubject)],
        )
    }

    /// GitLab: the tag `sha256-<hex>` resolves to the manifest `sha256:<hex>`.
    pub fn gitlab(upstream: &str) -> FaultProxy {
        FaultProxy::start(
            upstream,
            vec![Rule::every("/manifests/sha256-", Fault::TagIsDigest)],
        )
    }

    /// A registry that serves the referrers API and answers pushes of
    /// manifests with a subject with `OCI-Subject`.
    pub fn referrers_api(upstream: &str) -> FaultProxy {
        FaultProxy::start(
            upstream,
            vec![
                every("PUT", "/manifests/", Fault::ReferrersApi),
                Rule::every("/referrers/", Fault::ReferrersApi),
            ],
        )
    }
}

impl FaultProxy {
    /// A registry that keeps its blobs on `storage`: each blob `GET` the
    /// registry answers is redirected (307) to a signed URL there.
    pub fn storage_redirects(upstream: &str, storage: Arc<BlobStorage>) -> FaultProxy {
        let proxy = FaultProxy::start(
            upstream,
            vec![every("GET", "/blobs/sha256:", Fault::RedirectToStorage)],
        );
        *proxy.state.storage.lock().unwrap() = Some(storage);
        proxy
    }
}

/// Every request with `method` whose target contains `path`.
fn every(method: &str, path: &str, fault: Fault) -> Rule {
    Rule::new(method, path, &(1..=EVERY).collect::<Vec<_>>(), fault)
}

/// The `subject` digest a manifest body names, if any.
fn subject_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["subject"]["digest"].as_str().map(str::to_string)
}

/// ECR: 405 for a manifest with a subject, the rest relayed.
pub(super) fn refuse_subject(
    writer: &mut TcpStream,
    state: &State,
    request: &RequestHead,
    body: &[u8],
    keep_open: bool,
) -> io::Result<bool> {
    if subject_of(body).is_none() {
        return relay(writer, state, request, body, keep_open);
    }
    let message = "manifests with a subject are not supported";
    super::wire::write_status(writer, 405, None, message, keep_open)?;
    Ok(keep_open)
}

/// GitLab: `…/manifests/sha256-<hex>` becomes `…/manifests/sha256:<hex>`
/// (the cosign tags `sha256-<hex>.sig` are left alone).
pub(super) fn tag_is_digest(request: &RequestHead) -> RequestHead {
    let Some((path, tag)) = request.target.rsplit_once("/manifests/") else {
        return request.clone();
    };
    match tag.strip_prefix("sha256-") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => RequestHead {
            target: format!("{path}/manifests/sha256:{hex}"),
            ..request.clone()
        },
        _ => request.clone(),
    }
}

/// The referrers API: a manifest push with a subject is relayed, answered
/// with `OCI-Subject` and listed; `GET …/referrers/<digest>` lists.
pub(super) fn referrers_api(
    writer: &mut TcpStream,
    state: &State,
    request: &RequestHead,
    body: &[u8],
    keep_open: bool,
) -> io::Result<bool> {
    let repo = request
        .target
        .strip_prefix("/v2/")
        .and_then(|t| {
            t.split("/manifests/")
                .next()
                .filter(|_| t.contains("/manifests/"))
        })
        .or_else(|| {
            request
                .target
                .strip_prefix("/v2/")?
                .split("/referrers/")
                .next()
        })
        .unwrap_or_default()
        .to_string();
    if let Some(rest) = request.target.split("/referrers/").nth(1) {
        let (subject, query) = rest.split_once('?').unwrap_or((rest, ""));
        let wanted = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("artifactType="))
            .map(|t| t.replace("%2F", "/").replace("%2B", "+"));
        let listed = state.listed_referrers(&repo, subject);
        let manifests: Vec<Value> = listed
            .into_iter()
            .filter(|d| {
                wanted
                    .as_ref()
                    .is_none_or(|t| d["artifactType"] == t.as_str())
            })
            .collect();
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        let response = Response {
            status_line: "HTTP/1.1 200 OK".to_string(),
            headers: vec![
                (
                    "Content-Type".to_string(),
                    "application/vnd.oci.image.index.v1+json".to_string(),
                ),
                ("Content-Length".to_string(), body.len().to_string()),
            ],
            body,
        };
        write_response(writer, state, &response, keep_open, None)?;
        return Ok(keep_open);
    }
    let mut response = forward(state, request, body)?;
    let stored = response.status_line.contains(" 201");
    if let (true, Some(subject)) = (stored, subject_of(body)) {
        let value: Value = serde_json::from_slice(body).unwrap();
        let digest = format!("sha256:{}", sha256_hex(body));
        let artifact_type = value["artifactType"]
            .as_str()
            .or(value["config"]["mediaType"].as_str())
            .unwrap_or_default();
        let mut desc = json!({
            "mediaType": value["mediaType"],
            "digest": digest,
            "size": body.len(),
            "artifactType": artifact_type,
        });
        if value["annotations"].is_object() {
            desc["annotations"] = value["annotations"].clone();
        }
        state.list_referrer(&repo, &subject, desc);
        response
            .headers
            .push(("OCI-Subject".to_string(), subject.clone()));
    }
    relay_response(writer, state, request, &response, keep_open)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ocistep::oci::digest::Digest::of(bytes).hex().to_string()
}

/// A registry with blobs on other storage: a blob the registry serves is
/// handed to the storage and answered with a redirect to it; any other
/// answer (401, 404) is relayed.
pub(super) fn redirect_to_storage(
    writer: &mut TcpStream,
    state: &State,
    request: &RequestHead,
    body: &[u8],
    keep_open: bool,
) -> io::Result<bool> {
    let storage = state.storage.lock().unwrap().clone();
    let response = forward(state, request, body)?;
    let served = response.status_line.split_whitespace().nth(1) == Some("200");
    let (Some(storage), true) = (storage, served) else {
        return relay_response(writer, state, request, &response, keep_open);
    };
    let digest = request.target.rsplit('/').next().unwrap_or_default();
    let redirect = Response {
        status_line: "HTTP/1.1 307 Temporary Redirect".to_string(),
        headers: vec![
            ("Location".to_string(), storage.offer(digest, response.body)),
            ("Content-Length".to_string(), "0".to_string()),
        ],
        body: Vec::new(),
    };
    write_response(writer, state, &redirect, keep_open, None)?;
    Ok(keep_open)
}
