//! Blob storage behind a registry. Many registries answer a blob's `GET`
//! with a redirect to another origin (S3, a CDN, a storage account) whose
//! URL carries a short-lived signature. That origin is not the registry:
//!
//! - nothing of the registry's goes there: neither its `Authorization` nor
//!   the docker config's `HttpHeaders`, so the redirect is followed by a
//!   client of its own that holds neither (the registry's client follows
//!   redirects only within the registry's origin);
//! - its answers are not the registry's: a 401 there is no challenge to
//!   answer with the registry's credentials, and a refusal (an expired
//!   signature) is worth asking the registry again, for a fresh URL;
//! - its URL is a capability: errors name its host only.

use reqwest::{Method, Response, StatusCode, Url};

/// Redirects the registry's client follows: within one origin, up to 10.
/// A redirect to another origin is left to [`target`].
pub fn same_origin_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .last()
            .is_none_or(|previous| authority(previous) == authority(attempt.url()));
        match (same, attempt.previous().len()) {
            (false, _) => attempt.stop(),
            (true, n) if n >= 10 => attempt.error("more than 10 redirects"),
            (true, _) => attempt.follow(),
        }
    })
}

/// The storage URL `resp` redirects a `method` request to, when it is a
/// redirect to another origin that can be followed without a body (a
/// `GET` or `HEAD`).
pub fn target(method: &Method, resp: &Response) -> Option<Url> {
    if !(resp.status().is_redirection() && (method == Method::GET || method == Method::HEAD)) {
        return None;
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    let next = resp.url().join(location).ok()?;
    (authority(&next) != authority(resp.url())).then_some(next)
}

/// The host (and port) of the storage `resp` came from, when it did not
/// come from `registry` (a `host[:port]`).
pub fn elsewhere(resp: &Response, registry: &str) -> Option<String> {
    let url = resp.url();
    let origin = Url::parse(&format!("{}://{registry}/", url.scheme())).ok()?;
    (authority(&origin) != authority(url)).then(|| host_of(url))
}

/// True for a storage answer that a fresh redirect may cure: a refused
/// or expired signature.
pub fn worth_asking_again(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
}

/// `url`'s host and port, as an error may name it.
pub fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The host and port `url` reaches, ports spelt out.
fn authority(url: &Url) -> (Option<&str>, Option<u16>) {
    (url.host_str(), url.port_or_known_default())
}

/// The `Code` and `Message` of a storage service's XML error body (S3,
/// Google Cloud Storage and Azure all answer `<Error><Code>…</Code>
/// <Message>…</Message>…</Error>`), which say more than its status.
pub fn xml_error(body: &str) -> Option<(String, String)> {
    let element = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let len = body[start..].find(&format!("</{name}>"))?;
        Some(unescape(&body[start..start + len]))
    };
    if !body.contains("<Error>") {
        return None;
    }
    Some((element("Code")?, element("Message").unwrap_or_default()))
}

/// `text` with XML's predefined entities replaced.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_says_its_code_and_message() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                    <Message>Request has expired</Message><X-Amz-Expires>900</X-Amz-Expires>\
                    <Expires>2026-12-06T05:00:00Z</Expires><RequestId>R1</RequestId></Error>";
        assert_eq!(
            xml_error(body),
            Some(("AccessDenied".into(), "Request has expired".into()))
        );
    }

    #[test]
    fn an_azure_error_keeps_its_message_without_the_detail() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server \
                    failed to authenticate the request &amp; more</Message>\
                    <AuthenticationErrorDetail>Signature did not match. String to sign used was r\
                    </AuthenticationErrorDetail></Error>";
        let (code, message) = xml_error(body).unwrap();
        assert_eq!(code, "AuthenticationFailed");
        assert_eq!(message, "Server failed to authenticate the request & more");
    }

    #[test]
    fn other_xml_and_text_are_no_storage_error() {
        assert_eq!(xml_error("<html><body>Forbidden</body></html>"), None);
        assert_eq!(xml_error("<Error><Message>no code</Message></Error>"), None);
        assert_eq!(xml_error("plain text"), None);
    }
}
