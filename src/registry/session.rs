//! One place that sends requests to registries: scheme choice (TLS, or
//! plain HTTP for loopback and `--insecure`), the auth handshake (through
//! oci-client), re-authentication on 401, and retries of transient faults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::RegistryOperation;
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::Mutex;

use super::credentials::{self, Credentials, Secret};
use super::retry::{is_transient_error, is_transient_status, parse_retry_after, RetryPolicy};
use super::token;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::reference::ImageRef;

/// What a request needs the registry to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read.
    Pull,
    /// Read and write.
    Push,
    /// Delete manifests (token registries want a `delete` scope for it).
    Delete,
}

/// How the client talks to registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Allow plain HTTP and unverified TLS for every registry.
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Docker config files to search for credentials, in order.
    pub credential_files: Vec<PathBuf>,
    /// Retry policy for transient faults.
    pub retry: RetryPolicy,
    /// Cache of pulled manifests and blobs.
    pub cache_dir: Option<PathBuf>,
    /// Resolve tags from the cache only.
    pub offline: bool,
}

/// A client for any number of registries, shared by one run.
pub struct RegistryClient {
    opts: ClientOptions,
    ca_certs: Vec<Vec<u8>>,
    http: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    cache: Option<Cache>,
}

/// What is known about one registry host.
struct Host {
    /// The host (and port) requests go to.
    name: String,
    /// `https` or `http`.
    scheme: &'static str,
    /// Credentials found for the host.
    credentials: Credentials,
    /// oci-client, for the token handshake.
    oci: oci_client::Client,
    /// Authorization per repository and access.
    auth: Mutex<HashMap<(String, Access), AuthHeader>>,
}

#[derive(Clone)]
enum AuthHeader {
    Basic(String, Secret),
    Bearer(Secret),
}

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("ocistep/", env!("CARGO_PKG_VERSION"));

impl RegistryClient {
    /// Builds a client; reads the CA file now so a bad path fails early.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        crate::registry::install_crypto_provider();
        let mut ca_certs = Vec::new();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(opts.insecure);
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::io("reading --ca-file", path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Usage(format!(
                    "--ca-file {} holds no valid PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
            ca_certs.push(pem);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Internal(format!("cannot set up the HTTP client: {e}")))?;
        let cache = opts
            .cache_dir
            .as_deref()
            .map(|dir| Cache::open(dir, opts.offline))
            .transpose()?;
        Ok(RegistryClient {
            cache,
            opts,
            ca_certs,
            http,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    /// The cache of pulled content, when `--cache-dir` is set.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.opts.retry
    }

    /// `scheme://host` for the image's registry, probing the scheme once.
    pub async fn origin(&self, image: &ImageRef) -> Result<String> {
        let host = self.host(image).await?;
        Ok(format!("{}://{}", host.scheme, host.name))
    }

    /// Sends a request built by `build` (called again for each attempt with
    /// the registry's origin), authenticating on 401 and retrying transient
    /// faults. Returns the final response, whatever its status.
    pub async fn send<F>(
        &self,
        image: &ImageRef,
        access: Access,
        what: &str,
        build: F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> Result<RequestBuilder>,
    {
        self.send_with(self.opts.retry, image, access, what, build)
            .await
    }

    /// Like [`RegistryClient::send`] but with one attempt only: for requests
    /// that cannot be repeated as they are (an upload PUT whose session a cut
    /// body may have spoilt).
    pub async fn send_once<F>(
        &self,
        image: &ImageRef,
        access: Access,
        what: &str,
        build: F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> Result<RequestBuilder>,
    {
        let once = RetryPolicy {
            max_attempts: 1,
            ..self.opts.retry
        };
        self.send_with(once, image, access, what, build).await
    }

    async fn send_with<F>(
        &self,
        policy: RetryPolicy,
        image: &ImageRef,
        access: Access,
        what: &str,
        build: F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> Result<RequestBuilder>,
    {
        let host = self.host(image).await?;
        let origin = format!("{}://{}", host.scheme, host.name);
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            attempt += 1;
            let auth = host
                .auth
                .lock()
                .await
                .get(&(image.repository.clone(), access))
                .cloned();
            let request = apply_auth(build(&self.http, &origin)?, auth.as_ref());
            match request.send().await {
                Err(e) if is_transient_error(&e) && policy.may_retry(attempt) => {
                    let delay = policy.delay(attempt, None);
                    tracing::warn!(
                        "{what}: {} (attempt {attempt}), retrying in {delay:?}",
                        error_chain(&e)
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    return Err(Error::Unreachable(format!(
                        "{what}: cannot reach registry {} after {attempt} attempt(s): {}; check the address, the network, and TLS settings (--ca-file, --insecure)",
                        host.name,
                        error_chain(&e)
                    )));
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    attempt -= 1;
                    let challenge = resp
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(token::parse_challenge);
                    self.authenticate(&host, image, access, challenge).await?;
                }
                Ok(resp) if is_transient_status(resp.status()) && policy.may_retry(attempt) => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let delay = policy.delay(attempt, retry_after);
                    tracing::warn!(
                        "{what}: registry answered {} (attempt {attempt}), retrying in {delay:?}",
                        resp.status()
                    );
                    tokio::time::sleep(delay).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// Runs the token handshake (or settles on basic auth) for one repository.
    async fn authenticate(
        &self,
        host: &Host,
        image: &ImageRef,
        access: Access,
        challenge: Option<token::BearerChallenge>,
    ) -> Result<()> {
        if let (Access::Delete, Some(challenge)) = (access, &challenge) {
            let scope = challenge
                .scope
                .clone()
                .unwrap_or_else(|| format!("repository:{}:delete", image.repository));
            let token =
                token::fetch_token(&self.http, challenge, &scope, &host.credentials).await?;
            host.auth.lock().await.insert(
                (image.repository.clone(), access),
                AuthHeader::Bearer(token),
            );
            return Ok(());
        }
        let reference = oci_client::Reference::with_tag(
            host.name.clone(),
            image.repository.clone(),
            "latest".to_string(),
        );
        let op = match access {
            Access::Pull => RegistryOperation::Pull,
            Access::Push | Access::Delete => RegistryOperation::Push,
        };
        let token = host
            .oci
            .auth(&reference, &host.credentials.to_registry_auth(), op)
            .await
            .map_err(|e| auth_error(host, image, &e))?;
        let header = match (token, &host.credentials) {
            (Some(token), _) => Some(AuthHeader::Bearer(Secret::new(token))),
            (None, Credentials::Basic { username, password }) => {
                Some(AuthHeader::Basic(username.clone(), password.clone()))
            }
            (None, Credentials::Anonymous) => None,
        };
        let mut auth = host.auth.lock().await;
        match header {
            Some(h) => auth.insert((image.repository.clone(), access), h),
            None => auth.remove(&(image.repository.clone(), access)),
        };
        Ok(())
    }

    /// The host state for an image's registry, created on first use.
    async fn host(&self, image: &ImageRef) -> Result<Arc<Host>> {
        let name = image.api_host().to_string();
        let mut hosts = self.hosts.lock().await;
        if let Some(h) = hosts.get(&name) {
            return Ok(h.clone());
        }
        let scheme = self.choose_scheme(&name).await?;
        let credentials = credentials::lookup(&image.registry, &self.opts.credential_files)?;
        tracing::debug!(
            "registry {name}: {scheme}, {}",
            if credentials.is_anonymous() {
                "anonymous"
            } else {
                "with credentials"
            }
        );
        let host = Arc::new(Host {
            oci: self.oci_client(&name, scheme),
            name: name.clone(),
            scheme,
            credentials,
            auth: Mutex::new(HashMap::new()),
        });
        hosts.insert(name, host.clone());
        Ok(host)
    }

    /// HTTPS always; plain HTTP only for loopback hosts or with `--insecure`,
    /// and only when HTTPS does not answer.
    async fn choose_scheme(&self, host: &str) -> Result<&'static str> {
        if !(self.opts.insecure || is_loopback(host)) {
            return Ok("https");
        }
        let probe = self
            .http
            .get(format!("https://{host}/v2/"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match probe {
            Ok(_) => Ok("https"),
            Err(e) if error_chain(&e).to_lowercase().contains("certificate") => Err(Error::Unreachable(format!(
                "the TLS certificate of registry {host} is not trusted ({}); pass its CA with --ca-file, or --insecure to skip verification",
                error_chain(&e)
            ))),
            Err(e) if e.is_connect() && !error_chain(&e).contains("refused") => Ok("http"),
            Err(e) if e.is_connect() => Err(Error::Unreachable(format!(
                "cannot reach registry {host}: {}; is it running?",
                error_chain(&e)
            ))),
            Err(_) => Ok("http"),
        }
    }

    fn oci_client(&self, host: &str, scheme: &str) -> oci_client::Client {
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::HttpsExcept(vec![host.to_string()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: self.opts.insecure,
            extra_root_certificates: self
                .ca_certs
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            user_agent: USER_AGENT,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        oci_client::Client::new(config)
    }
}

fn apply_auth(request: RequestBuilder, auth: Option<&AuthHeader>) -> RequestBuilder {
    match auth {
        Some(AuthHeader::Basic(user, pass)) => request.basic_auth(user, Some(pass.expose())),
        Some(AuthHeader::Bearer(token)) => request.bearer_auth(token.expose()),
        None => request,
    }
}

fn auth_error(
    host: &Host,
    image: &ImageRef,
    e: &oci_client::errors::OciDistributionError,
) -> Error {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::AuthenticationFailure(_) => Error::Auth(format!(
            "registry {} refused the credentials for {}: check the docker config in --secret-path, DOCKER_CONFIG or ~/.docker/config.json",
            host.name, image.repository
        )),
        other => Error::Unreachable(format!(
            "authentication with registry {} failed: {}",
            host.name,
            redact_oci_error(other)
        )),
    }
}

/// oci-client errors may quote server bodies; keep only their kind.
fn redact_oci_error(e: &oci_client::errors::OciDistributionError) -> String {
    let s = e.to_string();
    s.chars().take(200).collect()
}

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    bare == "localhost"
        || bare == "::1"
        || bare
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error with its causes, e.g. "error sending request: connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
