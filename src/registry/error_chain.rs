//! Errors of the HTTP stack as one line of text: each cause appended once,
//! and secrets redacted.

/// An error with its causes, e.g. "error sending request: connection refused",
/// with secrets redacted (the URL of a redirect may carry a token).
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
    crate::redact::redact(&s).into_owned()
}
