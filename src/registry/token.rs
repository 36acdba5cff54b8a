//! The bearer-token handshake: parses the registry's challenge and fetches
//! one token for every scope a request needs, deletes
//! (`repository:NAME:delete`) and cross-repository mounts (a push scope on
//! one repository and a pull scope on another) included.
//!
//! A token service's reply is read up to [`MAX_TOKEN_REPLY_BYTES`] and the
//! token in it may be at most [`MAX_TOKEN_BYTES`]: a service that streams
//! without end, or hands out a token no registry would take as a header,
//! ends the run (exit 11, unusable registry content) instead of filling
//! memory or being sent on.

use serde::Deserialize;

use super::credentials::{Credentials, Secret};
use super::rate::MinRate;
use super::retry::{is_transient_status, retry_after, RetryPolicy};
use crate::error::{Error, Result};

/// A `WWW-Authenticate: Bearer …` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Where to ask for a token.
    pub realm: String,
    /// The `service` parameter to pass on.
    pub service: Option<String>,
    /// The scope the registry wants (`repository:app:delete`).
    pub scope: Option<String>,
    /// `insufficient_scope` and friends.
    pub error: Option<String>,
}

/// Parses a Bearer challenge; `None` for Basic or malformed ones.
pub fn parse_challenge(header: &str) -> Option<BearerChallenge> {
    let rest = header
        .trim()
        .strip_prefix("Bearer")
        .or_else(|| header.trim().strip_prefix("bearer"))?;
    let mut params = std::collections::BTreeMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        params.insert(key, value.to_string());
        s = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(BearerChallenge {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
        error: params.remove("error"),
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    /// Not used, but a secret all the same: registered for redaction.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The most of a token service's reply that is read. A reply holds a
/// token (twice: `token` and `access_token`), its lifetime and perhaps a
/// refresh token: a few KiB.
pub const MAX_TOKEN_REPLY_BYTES: usize = 256 * 1024;

/// The longest token accepted. Registries' tokens are JWTs of a few KiB
/// (Docker Hub, GHCR, Quay, Harbor: 1–3 KiB; GCR and ECR: under 4 KiB),
/// and many registries sit behind proxies whose header buffers hold 8 KiB
/// (nginx's default), so 16 KiB leaves room for large access claims while
/// refusing what is no token.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How long a token lives when the token service does not say (the
/// distribution token specification's default).
const DEFAULT_LIFETIME_SECS: u64 = 60;

/// A token and when to stop using it.
pub struct FetchedToken {
    /// The bearer token.
    pub token: Secret,
    /// A little before the token expires: a quarter of its lifetime early,
    /// at most 30 s, so a request sent just before never carries a token
    /// that runs out on the way.
    pub renew_at: std::time::Instant,
}

/// The longest lifetime believed; a token service may say anything.
const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// Asks the challenge's realm for one token covering all of `scopes`
/// (each passed as its own `scope` parameter), with basic credentials when
/// there are any. A token service that fails transiently (429, 5xx, a
/// broken connection) is asked again as `policy` allows.
/// The reply is read as [`MinRate`] allows, and limited as the module
/// documentation says.
pub async fn fetch_token(
    http: &reqwest::Client,
    policy: RetryPolicy,
    rate: MinRate,
    challenge: &BearerChallenge,
    scopes: &[String],
    credentials: &Credentials,
) -> Result<FetchedToken> {
    let asked_at = std::time::Instant::now();
    // The realm is the registry's text, and could carry a secret.
    let realm = crate::redact::redact(&challenge.realm).into_owned();
    let scope = scopes.join(" ");
    let mut query: Vec<(&str, String)> = scopes.iter().map(|s| ("scope", s.clone())).collect();
    if let Some(service) = &challenge.service {
        query.push(("service", service.clone()));
    }
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        let mut request = http.get(&challenge.realm).query(&query);
        if let Credentials::Basic { username, password } = credentials {
            request = request.basic_auth(username, Some(password.expose()));
        }
        let (problem, retry_after) = match super::sending::send(request, rate).await {
            Ok(resp) if resp.status().is_success() => break resp,
            Ok(resp) if is_transient_status(resp.status()) => {
                let retry_after = retry_after(&resp);
                (format!("answered {}", resp.status()), retry_after)
            }
            Ok(resp) => {
                let status = resp.status();
                let body = super::api::error_body(resp, &realm).await;
                return Err(Error::Auth(format!(
                    "the token service {realm} refused the credentials for {scope} ({}); check the docker config in --secret-path, DOCKER_CONFIG or ~/.docker/config.json",
                    super::api::describe(status, &body)
                )));
            }
            Err(e) if e.is_transient() => (e.to_string(), None),
            Err(e) => {
                return Err(Error::Unreachable(format!(
                    "cannot reach the token service {realm}: {e}"
                )))
            }
        };
        if !policy.may_retry(attempt) {
            return Err(Error::Unreachable(format!(
                "the token service {realm} {problem} after {attempt} attempt(s); try again later or raise --retries"
            )));
        }
        let delay = policy.delay(attempt, retry_after);
        tracing::warn!(
            "token service {realm}: {problem} (attempt {attempt}), retrying in {delay:?}"
        );
        tokio::time::sleep(delay).await;
    };
    let what = format!("reading the reply of the token service {realm}");
    let bytes = super::api::read_limited(rate.guard(resp)?, MAX_TOKEN_REPLY_BYTES, &what)
        .await
        .map_err(|e| match e {
            Error::BadContent(_) => Error::BadContent(format!(
                "the token service {realm} sent a reply larger than {} KiB, the most ocistep reads; \
                 it is no token service reply (check the registry's auth realm)",
                MAX_TOKEN_REPLY_BYTES / 1024
            )),
            other => other,
        })?;
    let body: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
        Error::BadContent(format!(
            "the token service {realm} sent no token: {}",
            crate::redact::redact(&e.to_string())
        ))
    })?;
    if let Some(refresh) = &body.refresh_token {
        crate::redact::register(refresh);
    }
    let lifetime = std::time::Duration::from_secs(
        body.expires_in
            .unwrap_or(DEFAULT_LIFETIME_SECS)
            .min(MAX_LIFETIME_SECS),
    );
    let margin = (lifetime / 4).min(std::time::Duration::from_secs(30));
    let token = body
        .token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::BadContent(format!("the token service {realm} sent no token")))?;
    check_token(&token, &realm)?;
    Ok(FetchedToken {
        token: Secret::new(token),
        renew_at: asked_at + lifetime - margin,
    })
}

/// Refuses a token too long for [`MAX_TOKEN_BYTES`] or with bytes an HTTP
/// header cannot carry, before it is sent anywhere.
fn check_token(token: &str, realm: &str) -> Result<()> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::BadContent(format!(
            "the token service {realm} sent a token of {} bytes, longer than the {} KiB ocistep \
             sends (registries' tokens take a few KiB); check the registry's auth realm",
            token.len(),
            MAX_TOKEN_BYTES / 1024
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadContent(format!(
            "the token service {realm} sent a token with spaces, control or non-ASCII \
             characters, which no Authorization header can carry"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_unprintable_tokens_are_refused() {
        assert!(check_token("eyJ.abc.def", "realm").is_ok());
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let e = check_token(&long, "http://auth/token").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::BadContent);
        assert!(e.to_string().contains("16 KiB"), "{e}");
        assert!(check_token("a b", "realm").is_err());
        assert!(check_token("a\nb", "realm").is_err());
    }

    #[test]
    fn parses_distribution_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:delete",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(c.realm, "http://127.0.0.1:1/token");
        assert_eq!(c.service.as_deref(), Some("reg"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:delete"));
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert_eq!(
            parse_challenge("Bearer realm=https://auth.example/token")
                .unwrap()
                .realm,
            "https://auth.example/token"
        );
    }
}
