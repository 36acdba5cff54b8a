//! One place that sends requests to registries: scheme choice (TLS, or
//! plain HTTP for loopback and `--insecure`), the auth handshake (the
//! registry's bearer challenge answered with the scopes a request needs;
//! for a refusal that names no challenge, the one `GET /v2/` names), token
//! renewal before expiry, re-authentication on 401, and retries of
//! transient faults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::Mutex;

use super::credentials::{self, Credentials, Secret};
use super::error_chain::error_chain;
use super::rate::MinRate;
use super::retry::{is_transient_status, retry_after, RetryPolicy};
use super::sending::{self, SendError};
use super::storage;
use super::token;
use crate::error::{Error, Result};
use crate::oci::reference::ImageRef;

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
    /// How long a registry may stay silent mid-request; 60 s when `None`.
    /// Also the window over which `min_rate` is averaged.
    pub read_timeout: Option<Duration>,
    /// Bytes per second below which a response body counts as stalled
    /// (see [`super::rate`]); 0 for no minimum.
    pub min_rate: u64,
    /// Blob transfers in flight per registry; [`DEFAULT_MAX_TRANSFERS`]
    /// when 0.
    pub max_transfers: usize,
}

/// Blob transfers in flight per registry unless told otherwise: enough to
/// keep a registry busy while each upload waits on its storage (a
/// filesystem registry syncs several files per blob), few enough that a
/// registry's per-client limits are not reached (docker push uses 5,
/// skopeo 6 per image).
pub const DEFAULT_MAX_TRANSFERS: usize = 8;

/// The read timeout when [`ClientOptions::read_timeout`] is not set.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for any number of registries, shared by one run.
pub struct RegistryClient {
    opts: ClientOptions,
    /// Talks to registries: their auth, the config's `HttpHeaders`.
    http: reqwest::Client,
    /// Follows a registry's redirects to blob storage elsewhere, with
    /// none of the registry's headers (see [`storage`]).
    storage_http: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Blob transfers in flight, per registry host.
    transfer_slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// What is known about one registry host.
struct Host {
    /// The host (and port) requests go to.
    name: String,
    /// `https` or `http`.
    scheme: &'static str,
    /// Credentials found for the host.
    credentials: Credentials,
    /// Authorization per repository and access.
    auth: Mutex<HashMap<AuthKey, AuthHeader>>,
}

/// What one cached authorization is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuthKey {
    repository: String,
    access: Access,
    /// The source repository of a cross-repository mount.
    mount_from: Option<String>,
}

impl AuthKey {
    fn new(image: &ImageRef, access: Access, mount_from: Option<&str>) -> AuthKey {
        AuthKey {
            repository: image.repository.clone(),
            access,
            mount_from: mount_from.map(str::to_string),
        }
    }

    /// The token scopes this key needs, with what a challenge names
    /// (`repository:NAME:ACTIONS`, space-separated) added: the actions a
    /// challenge wants on a repository this key already names join its
    /// actions (distribution wants `delete` to cancel an upload session,
    /// whatever the route), other scopes follow as they are.
    fn scopes(&self, challenged: Option<&str>) -> Vec<String> {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
            Access::Delete => "delete",
        };
        let mut scopes = vec![(
            format!("repository:{}", self.repository),
            actions.to_string(),
        )];
        if let Some(from) = &self.mount_from {
            scopes.push((format!("repository:{from}"), "pull".to_string()));
        }
        for scope in challenged.unwrap_or_default().split_whitespace() {
            let (name, wanted) = scope.rsplit_once(':').unwrap_or((scope, ""));
            match scopes.iter_mut().find(|(known, _)| known == name) {
                Some((_, have)) => {
                    for action in wanted.split(',').filter(|a| !a.is_empty()) {
                        if !have.split(',').any(|a| a == action) {
                            have.push(',');
                            have.push_str(action);
                        }
                    }
                }
                None => scopes.push((name.to_string(), wanted.to_string())),
            }
        }
        scopes
            .into_iter()
            .map(|(name, actions)| match actions.is_empty() {
                true => name,
                false => format!("{name}:{actions}"),
            })
            .collect()
    }
}

#[derive(Clone)]
enum AuthHeader {
    Basic(String, Secret),
    Bearer(Bearer),
}

/// A bearer token, with what is needed to renew it.
#[derive(Clone)]
struct Bearer {
    token: Secret,
    renewal: Renewal,
}

/// When and how to ask for a new token rather than send the old one.
#[derive(Clone)]
struct Renewal {
    at: std::time::Instant,
    /// The challenge the token answered.
    challenge: token::BearerChallenge,
}

impl Bearer {
    /// The challenge to answer again, once the token is due for renewal.
    fn due_renewal(&self) -> Option<&token::BearerChallenge> {
        (std::time::Instant::now() >= self.renewal.at).then_some(&self.renewal.challenge)
    }
}

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("ocistep/", env!("CARGO_PKG_VERSION"));

impl RegistryClient {
    /// Builds a client; reads the CA file now so a bad path fails early.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        crate::registry::install_crypto_provider();
        let mut extra_roots = Vec::new();
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::io("reading --ca-file", path, e))?;
            extra_roots = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--ca-file {} holds no valid PEM certificate; give it the registry's CA \
                         certificate in PEM form (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    ))
                })?;
        }
        let tls = super::tls::client_config(opts.insecure, extra_roots)
            .map_err(|e| Error::Internal(format!("cannot set up TLS: {e}")))?;
        let builder = || {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .connect_timeout(Duration::from_secs(15))
                .pool_idle_timeout(Duration::from_secs(60))
                .tls_backend_preconfigured(tls.clone())
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| Error::Internal(format!("cannot set up the HTTP client: {e}")))
        };
        let http = built(
            builder()
                .default_headers(config_headers(&opts.credential_files)?)
                .redirect(storage::same_origin_policy()),
        )?;
        Ok(RegistryClient {
            opts,
            http,
            storage_http: built(builder())?,
            hosts: Mutex::new(HashMap::new()),
            transfer_slots: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Waits for one of the registry's transfer slots (`--max-transfers`):
    /// held while one blob moves, so a copy of many blobs keeps a bounded
    /// number of connections open to each registry.
    pub async fn transfer_slot(&self, image: &ImageRef) -> tokio::sync::OwnedSemaphorePermit {
        let semaphore = {
            let mut slots = self
                .transfer_slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let limit = match self.opts.max_transfers {
                0 => DEFAULT_MAX_TRANSFERS,
                n => n,
            };
            slots
                .entry(image.api_host().to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit)))
                .clone()
        };
        semaphore
            .acquire_owned()
            .await
            .expect("transfer slots are never closed")
    }

    /// How long a registry may stay silent mid-request (`--timeout`).
    pub fn read_timeout(&self) -> Duration {
        self.opts.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT)
    }

    /// The minimum transfer rate of response bodies (`--min-rate` over
    /// `--timeout`).
    pub fn min_rate(&self) -> MinRate {
        MinRate {
            bytes_per_sec: self.opts.min_rate,
            window: self.read_timeout(),
        }
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
        let key = AuthKey::new(image, access, None);
        self.send_with(self.opts.retry, image, key, what, build)
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
        let key = AuthKey::new(image, access, None);
        self.send_with(once, image, key, what, build).await
    }

    /// Like [`RegistryClient::send`] for a cross-repository mount from
    /// `from`: on token registries the token must cover pulling `from` too,
    /// so it is asked for (and kept) separately.
    pub async fn send_mount<F>(
        &self,
        image: &ImageRef,
        from: &str,
        what: &str,
        build: F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> Result<RequestBuilder>,
    {
        let key = AuthKey::new(image, Access::Push, Some(from));
        self.send_with(self.opts.retry, image, key, what, build)
            .await
    }

    async fn send_with<F>(
        &self,
        policy: RetryPolicy,
        image: &ImageRef,
        key: AuthKey,
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
            let auth = self.current_auth(&host, &key).await?;
            let request = apply_auth(build(&self.http, &origin)?, auth.as_ref());
            match self.send_following_storage(request).await {
                Err(e) if e.is_transient() && policy.may_retry(attempt) => {
                    let delay = policy.delay(attempt, None);
                    tracing::warn!("{what}: {e} (attempt {attempt}), retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(e @ SendError::Stalled(_)) => {
                    return Err(Error::Unreachable(format!(
                        "{what}: registry {} {e}, after {attempt} attempt(s); raise --timeout (or lower --min-rate) if the link is that slow",
                        host.name
                    )));
                }
                Err(e) => {
                    return Err(Error::Unreachable(format!(
                        "{what}: cannot reach registry {} after {attempt} attempt(s): {e}; check the address, the network, and TLS settings (--ca-file, --insecure)",
                        host.name
                    )));
                }
                Ok(resp)
                    if storage::worth_asking_again(resp.status())
                        && policy.may_retry(attempt)
                        && storage::elsewhere(&resp, &host.name).is_some() =>
                {
                    let delay = policy.delay(attempt, None);
                    tracing::warn!(
                        "{what}: the registry's blob storage at {} answered {} (attempt {attempt}), asking the registry again in {delay:?}",
                        storage::host_of(resp.url()),
                        resp.status()
                    );
                    tokio::time::sleep(delay).await;
                }
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        && !authenticated
                        && storage::elsewhere(&resp, &host.name).is_none() =>
                {
                    authenticated = true;
                    attempt -= 1;
                    let www = resp
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok());
                    let challenge = www.and_then(token::parse_challenge);
                    // A basic challenge is answered here, so that the
                    // config's HttpHeaders go with every request.
                    let basic = www.is_some_and(|w| {
                        w.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic "))
                    });
                    match (&host.credentials, basic) {
                        (Credentials::Basic { username, password }, true) => {
                            let header = AuthHeader::Basic(username.clone(), password.clone());
                            host.auth.lock().await.insert(key.clone(), header);
                        }
                        _ => self.authenticate(&host, &key, challenge).await?,
                    }
                }
                Ok(resp) if is_transient_status(resp.status()) && policy.may_retry(attempt) => {
                    let retry_after = retry_after(&resp);
                    let delay = policy.delay(attempt, retry_after);
                    tracing::warn!(
                        "{what}: registry answered {} (attempt {attempt}), retrying in {delay:?}",
                        resp.status()
                    );
                    tokio::time::sleep(delay).await;
                }
                Ok(resp) => return self.min_rate().guard(resp),
            }
        }
    }

    /// Sends `request`; a redirect to blob storage on another origin is
    /// followed without the registry's headers.
    async fn send_following_storage(
        &self,
        request: RequestBuilder,
    ) -> std::result::Result<Response, SendError> {
        let (client, request) = request.build_split();
        let request = request.map_err(sending::failed)?;
        let method = request.method().clone();
        let resp =
            sending::send(RequestBuilder::from_parts(client, request), self.min_rate()).await?;
        match storage::target(&method, &resp) {
            Some(url) => {
                tracing::debug!(
                    "following a redirect to blob storage at {}",
                    storage::host_of(&url)
                );
                sending::send(self.storage_http.request(method, url), self.min_rate()).await
            }
            None => Ok(resp),
        }
    }

    /// The authorization to send for `key`: a bearer token about to expire
    /// is renewed first, so a long transfer does not start with it.
    async fn current_auth(&self, host: &Host, key: &AuthKey) -> Result<Option<AuthHeader>> {
        let cached = host.auth.lock().await.get(key).cloned();
        if let Some(AuthHeader::Bearer(bearer)) = &cached {
            if let Some(challenge) = bearer.due_renewal() {
                tracing::debug!(
                    "renewing the token for {} before it expires",
                    key.repository
                );
                let renewed = self.fetch_bearer(host, key, challenge.clone()).await?;
                host.auth.lock().await.insert(key.clone(), renewed.clone());
                return Ok(Some(renewed));
            }
        }
        Ok(cached)
    }

    /// Runs the token handshake (or settles on basic auth) for one
    /// repository. A refusal without a bearer challenge is answered with
    /// the one the registry's `GET /v2/` names, if any; with none, basic
    /// credentials are sent when there are some, else nothing.
    async fn authenticate(
        &self,
        host: &Host,
        key: &AuthKey,
        challenge: Option<token::BearerChallenge>,
    ) -> Result<()> {
        let challenge = match challenge {
            Some(challenge) => Some(challenge),
            None => self.version_check_challenge(host).await?,
        };
        let header = match (challenge, &host.credentials) {
            (Some(challenge), _) => Some(self.fetch_bearer(host, key, challenge).await?),
            (None, Credentials::Basic { username, password }) => {
                Some(AuthHeader::Basic(username.clone(), password.clone()))
            }
            (None, Credentials::Anonymous) => None,
        };
        let mut auth = host.auth.lock().await;
        match header {
            Some(h) => auth.insert(key.clone(), h),
            None => auth.remove(key),
        };
        Ok(())
    }

    /// The bearer challenge of the registry's version check (`GET /v2/`),
    /// the handshake's starting point in the distribution token
    /// specification; `None` when it names none.
    async fn version_check_challenge(&self, host: &Host) -> Result<Option<token::BearerChallenge>> {
        let request = self
            .http
            .get(format!("{}://{}/v2/", host.scheme, host.name));
        let resp = sending::send(request, self.min_rate()).await.map_err(|e| {
            Error::Unreachable(format!(
                "asking registry {} how to authenticate (GET /v2/): {e}",
                host.name
            ))
        })?;
        Ok(resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(token::parse_challenge))
    }

    /// A token for every scope `key` needs, plus any other scope the
    /// registry's challenge names.
    async fn fetch_bearer(
        &self,
        host: &Host,
        key: &AuthKey,
        challenge: token::BearerChallenge,
    ) -> Result<AuthHeader> {
        let scopes = key.scopes(challenge.scope.as_deref());
        let fetched = token::fetch_token(
            &self.http,
            self.opts.retry,
            self.min_rate(),
            &challenge,
            &scopes,
            &host.credentials,
        )
        .await?;
        Ok(AuthHeader::Bearer(Bearer {
            token: fetched.token,
            renewal: Renewal {
                at: fetched.renew_at,
                challenge,
            },
        }))
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
}

/// The docker config's `HttpHeaders`, sent with every request (marked
/// sensitive, so they never print).
fn config_headers(files: &[PathBuf]) -> Result<reqwest::header::HeaderMap> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in credentials::http_headers(files)? {
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::Usage(format!(
                "\"HttpHeaders\" in the docker config names {name:?}, which is not a valid header name"
            ))
        })?;
        let mut value = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
            Error::Usage(format!(
                "\"HttpHeaders\" in the docker config gives {name:?} a value that is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

fn apply_auth(request: RequestBuilder, auth: Option<&AuthHeader>) -> RequestBuilder {
    match auth {
        Some(AuthHeader::Basic(user, pass)) => request.basic_auth(user, Some(pass.expose())),
        Some(AuthHeader::Bearer(bearer)) => request.bearer_auth(bearer.token.expose()),
        None => request,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_adds_its_actions_and_scopes() {
        let image = ImageRef::parse("registry.example/team/app:v1").unwrap();
        let push = AuthKey::new(&image, Access::Push, None);
        assert_eq!(push.scopes(None), ["repository:team/app:pull,push"]);
        assert_eq!(
            push.scopes(Some("repository:team/app:delete")),
            ["repository:team/app:pull,push,delete"]
        );
        assert_eq!(
            push.scopes(Some("repository:team/app:push,pull registry:catalog:*")),
            ["repository:team/app:pull,push", "registry:catalog:*"]
        );
        let mount = AuthKey::new(&image, Access::Push, Some("team/base"));
        assert_eq!(
            mount.scopes(Some("repository:team/base:pull repository:other:pull")),
            [
                "repository:team/app:pull,push",
                "repository:team/base:pull",
                "repository:other:pull"
            ]
        );
    }

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
