//! The docker reference grammar, `[host[:port]/]path[:tag][@digest]`, read
//! by hand.
//!
//! It accepts what the distribution project's reference regular expression
//! accepts, and splits the name into registry and repository the way the
//! docker CLI does (`alpine` is `docker.io/library/alpine`). Reading it by
//! hand rather than through that expression saves compiling a large regular
//! expression at the start of every run.

use std::fmt;

/// Most characters in a repository name.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The parts of a reference that follows the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Parts<'a> {
    /// Registry host with its port; `docker.io` when the name has none.
    pub registry: String,
    /// Repository path; `library/NAME` for a one-component Docker Hub name.
    pub repository: String,
    /// The text after `:`, if any. Only checked to be non-empty: the caller
    /// checks tags and explains what is wrong with them.
    pub tag: Option<&'a str>,
    /// The text after `@`, if any: `algorithm:hex` of the length the
    /// algorithm needs.
    pub digest: Option<&'a str>,
}

/// Why a text is not a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyntaxError {
    /// The text is empty.
    Empty,
    /// The text does not follow the grammar.
    Format,
    /// The repository name is longer than 255 characters.
    NameTooLong,
    /// The digest's hex part has the wrong length for its algorithm.
    DigestLength,
    /// The digest's algorithm is not sha256, sha384 or sha512.
    DigestAlgorithm,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyntaxError::Empty => "repository name must have at least one component",
            SyntaxError::Format => "invalid reference format",
            SyntaxError::NameTooLong => "repository name must not be more than 255 characters",
            SyntaxError::DigestLength => "invalid checksum digest length",
            SyntaxError::DigestAlgorithm => "unsupported digest algorithm",
        })
    }
}

/// Splits `s` into its parts, or says why it is not a reference.
pub(super) fn parse(s: &str) -> Result<Parts<'_>, SyntaxError> {
    if s.is_empty() {
        return Err(SyntaxError::Empty);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    // A tag cannot hold `/`: a `:` before the last `/` is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if !is_name(name) || tag == Some("") || !digest.is_none_or(is_digest) {
        return Err(SyntaxError::Format);
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(SyntaxError::NameTooLong);
    }
    if let Some((algorithm, hex)) = digest.and_then(|d| d.split_once(':')) {
        let wanted = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(SyntaxError::DigestAlgorithm),
        };
        if hex.len() != wanted {
            return Err(SyntaxError::DigestLength);
        }
    }
    Ok(Parts {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `path`, or `domain[:port]/path`.
fn is_name(name: &str) -> bool {
    is_path(name)
        || name
            .split_once('/')
            .is_some_and(|(domain, path)| is_domain(domain) && is_path(path))
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes,
/// then an optional decimal port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `/`-separated path components.
fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

/// Runs of lowercase letters and digits joined by `.`, `_`, `__` or any
/// number of `-`.
fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of letters and digits.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator.
        i += match (b[i], b.get(i + 1)) {
            (b'.', _) => 1,
            (b'_', Some(b'_')) => 2,
            (b'_', _) => 1,
            (b'-', _) => b[i..].iter().take_while(|&&c| c == b'-').count(),
            _ => return false,
        };
    }
}

/// `algorithm:hex`: the algorithm is letter-led words joined by `-_+.`, the
/// hex part at least 32 hex digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let word_ok = |w: &str| {
        let mut b = w.bytes();
        b.next().is_some_and(|c| c.is_ascii_alphabetic()) && b.all(|c| c.is_ascii_alphanumeric())
    };
    algorithm.split(['-', '_', '+', '.']).all(word_ok)
        && hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Registry and repository of a valid name: the first component is the
/// registry when it looks like a host (has a `.` or `:`, or is
/// `localhost`); otherwise the registry is Docker Hub, where one-component
/// names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_string();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the regular-expression parser of the `oci-client` crate makes
    /// of `s`: registry, repository, tag (`latest` when neither a tag nor a
    /// digest is given) and digest.
    fn oracle(s: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        let r: oci_client::Reference = s.parse().ok()?;
        Some((
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(str::to_string),
        ))
    }

    /// Ours in the same shape, keeping only tags the oracle's grammar
    /// allows (ours leaves tag checks to the caller).
    fn ours(s: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        let p = parse(s).ok()?;
        if p.tag
            .is_some_and(|t| !crate::oci::reference::is_valid_tag(t))
        {
            return None;
        }
        let tag = match (p.tag, p.digest) {
            (None, None) => Some("latest"),
            (tag, _) => tag,
        };
        Some((
            p.registry,
            p.repository,
            tag.map(str::to_string),
            p.digest.map(str::to_string),
        ))
    }

    /// Tests `s` against the oracle, for tags within ASCII (the oracle also
    /// takes non-ASCII word characters, which the caller refuses).
    fn agree(s: &str) {
        let theirs = oracle(s).filter(|(_, _, tag, _)| tag.as_deref().is_none_or(|t| t.is_ascii()));
        assert_eq!(ours(s), theirs, "{s:?}");
    }

    #[test]
    fn agrees_with_the_regular_expression_on_known_cases() {
        let hex = "0123456789abcdef".repeat(4);
        for s in [
            "busybox",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            &format!("test:5000/repo@sha256:{hex}"),
            &format!("test:5000/repo:tag@sha256:{hex}"),
            &format!("sha256:{hex}"),
            "lowercase:Uppercase",
            "Uppercase:tag",
            "localhost/app",
            "localhost:5000/a__b/c-d.e:t_1",
            "a---b/c",
            "a_-b",
            "a..b",
            "a.-b",
            "_a",
            "a_",
            "a/",
            "/a",
            "a//b",
            "a:",
            "a@",
            "a:b:c",
            "a@b@c",
            "index.docker.io/app",
            "docker.io/o/app",
            "-host.io/app",
            "host-.io/app",
            "ho-st.io:/app",
            "h.io:50x/app",
            "[::1]:5000/app",
            "REG.IO:5000/x",
            &format!("a@sha384:{hex}"),
            &format!("a@sha512:{hex}{hex}"),
            &format!("a@md5:{hex}"),
            &format!("a@sha256+b64:{hex}"),
            &format!("a@sha256:{}", &hex[..31]),
            &format!("a@sha256:{}g", &hex[..63]),
            &format!("a/{}", "b".repeat(255)),
            &format!("r.io/{}", "b".repeat(255)),
            &format!("r.io/{}", "b".repeat(256)),
            &format!("a:{}", "t".repeat(128)),
            &format!("a:{}", "t".repeat(129)),
        ] {
            agree(s);
        }
    }

    #[test]
    fn agrees_with_the_regular_expression_on_generated_text() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "a",
            "b",
            "z",
            "0",
            "9",
            "A",
            "Z",
            ".",
            "_",
            "__",
            "-",
            "--",
            ":",
            "/",
            "@",
            "5000",
            "localhost",
            "io",
            "docker.io",
            "index.docker.io",
            "sha256:",
            "sha512:",
            "+",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
            "é",
        ];
        // A fixed seed: the same cases every run.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut next = |n: usize| rng.random_range(0..n);
        for _ in 0..50_000 {
            let len = 1 + next(9);
            let s: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            agree(&s);
        }
    }
}
