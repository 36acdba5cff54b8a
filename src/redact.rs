//! Secrets never reach a log line or an error message, even when a registry
//! or token service quotes them back (an error body repeating the
//! `Authorization` header, a token in a redirect URL or a challenge).
//!
//! Every credential and token ocistep holds is registered here the moment it
//! is read or received ([`register`], [`register_basic`]), together with the
//! encoded forms in which a server may echo it: URL-encoded, JSON-escaped,
//! base64, and `base64(user:password)` of basic auth. [`redact`] replaces
//! each of them with [`MARKER`]; it is applied where server text enters an
//! error or a log record, by the log writer, and to the final error.
//!
//! Values shorter than [`MIN_SECRET_LEN`] characters are not registered:
//! replacing every `ab` in every message would garble digests and paths,
//! and such a value is no secret against guessing anyway.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use base64::Engine as _;

/// What a secret is replaced with.
pub const MARKER: &str = "[redacted]";

/// The shortest value that is registered and redacted.
pub const MIN_SECRET_LEN: usize = 4;

/// Every registered form, longest first (so a form that contains another
/// is replaced whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// True once anything is registered: [`redact`] costs one atomic load
/// until then.
static ANY: AtomicBool = AtomicBool::new(false);

/// Registers a credential or token, with its URL-encoded, JSON-escaped and
/// base64 forms.
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    insert([
        secret.to_string(),
        percent_encoded(secret),
        json_escaped(secret),
        b64.trim_end_matches('=').to_string(),
        b64.clone(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    ]);
}

/// Registers basic-auth credentials: the password (see [`register`]) and
/// `base64(user:password)`, the value of an `Authorization: Basic` header.
pub fn register_basic(user: &str, password: &str) {
    register(password);
    if password.len() < MIN_SECRET_LEN {
        return;
    }
    let pair = format!("{user}:{password}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pair);
    insert([
        b64.trim_end_matches('=').to_string(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&pair),
        percent_encoded(&b64),
        b64,
    ]);
}

fn insert(forms: impl IntoIterator<Item = String>) {
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for form in forms {
        if form.len() >= MIN_SECRET_LEN && !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ANY.store(!secrets.is_empty(), Ordering::Release);
}

/// `text` with every registered secret replaced by [`MARKER`]; borrowed
/// as it is when it holds none.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !ANY.load(Ordering::Acquire) {
        return Cow::Borrowed(text);
    }
    let secrets = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MARKER));
        }
    }
    out
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The string as it appears inside a JSON string literal.
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// A writer that redacts what it is given before passing it on: for the
/// log output, which receives each record in one write.
pub struct RedactingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !ANY.load(Ordering::Acquire) {
            return self.0.write(buf);
        }
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_their_encodings_are_replaced() {
        register_basic("redact-user", "Pa55+w/rd=\"x");
        let b64 = base64::engine::general_purpose::STANDARD.encode("redact-user:Pa55+w/rd=\"x");
        let text = format!(
            "401: got Basic {b64} for Pa55+w/rd=\"x, url ?p=Pa55%2Bw%2Frd%3D%22x, json \"Pa55+w/rd=\\\"x\""
        );
        let out = redact(&text);
        assert!(!out.contains("Pa55"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert!(out.starts_with("401: got Basic [redacted]"), "{out}");
        register("tok.abcdefghijklmnop");
        assert_eq!(
            redact("Bearer tok.abcdefghijklmnop refused"),
            "Bearer [redacted] refused"
        );
    }

    #[test]
    fn short_values_are_left_alone() {
        register("ab");
        assert_eq!(redact("abcabc"), "abcabc");
    }
}
