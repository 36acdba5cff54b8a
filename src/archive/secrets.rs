//! A look for credentials in a tree about to be pushed: a checkout's
//! persisted token in `.git/config`, `.git-credentials`, `.env` files,
//! `.npmrc`, `.pypirc`, `.docker/config.json` and `.netrc`.
//!
//! Only files with those names are opened, and only their first
//! [`READ_LIMIT`] bytes read, so a push of a large tree stays as fast as
//! before. A finding is a warning naming the file, what kind of credential
//! it holds and how to leave it out; the value itself is never shown.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use crate::archive::beneath;
use crate::archive::ignore_rules::IGNORE_FILE_NAME;
use crate::archive::walk::{FileAt, SourceKind, SourceTree};

/// How much of a candidate file is read: credential stores are a few
/// hundred bytes; a `.git/config` with many branches a few KiB.
pub const READ_LIMIT: u64 = 64 * 1024;

/// A file of the tree that looks like it holds a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The path inside the bundle.
    pub rel: String,
    /// What was found, without the value (e.g. "an npm auth token").
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = format!("/{}", self.rel);
        write!(
            f,
            "{:?} holds {} and is pushed as it is (the value is not shown); to leave it out, \
             use --exclude {pattern:?} or the line {} in {IGNORE_FILE_NAME}",
            self.rel,
            self.what,
            pattern.escape_debug(),
        )
    }
}

/// Logs a warning for every file of `tree` that holds a credential.
pub fn warn(tree: &SourceTree) {
    for finding in find(tree) {
        tracing::warn!("{finding}");
    }
}

/// The files of `tree` that hold a credential, in walk order. Files are
/// read beneath the tree's root, never through a symlink.
pub fn find(tree: &SourceTree) -> Vec<Finding> {
    tree.entries
        .iter()
        .filter_map(|entry| {
            let SourceKind::File {
                at: FileAt::Tree(at),
                ..
            } = &entry.kind
            else {
                return None;
            };
            let store = Store::of(&entry.rel)?;
            let text = read_head(tree.root.as_fd(), at)?;
            Some(Finding {
                rel: entry.rel.clone(),
                what: store.credential_in(&text)?,
            })
        })
        .collect()
}

/// The kinds of file that commonly hold credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// `.git/config` (a checkout's `http.extraheader`, a remote URL with a password).
    GitConfig,
    /// `.git-credentials` (git's `store` helper).
    GitCredentials,
    /// `.env`, `.env.production`, ... (not `.env.example` and other templates).
    DotEnv,
    /// `.npmrc`.
    Npmrc,
    /// `.pypirc`.
    Pypirc,
    /// `.docker/config.json`.
    DockerConfig,
    /// `.netrc` or `_netrc`.
    Netrc,
}

/// Suffixes of `.env.*` files that are templates, committed on purpose.
const ENV_TEMPLATES: &[&str] = &[
    "example", "sample", "template", "dist", "defaults", "schema",
];

/// Parts of a `.env` key that make its value a secret, anywhere in it.
const SECRET_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "APIKEY",
    "CREDENTIAL",
];

/// Words of a `.env` key (between underscores) that make its value a
/// secret: `API_KEY`, `NPM_AUTH`, `DB_PASS`, but not `AUTHOR` or `KEYBOARD`.
const SECRET_WORDS: &[&str] = &["KEY", "AUTH", "PASS", "PWD", "PAT"];

/// True when a `.env` key names a secret.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    SECRET_PARTS.iter().any(|part| key.contains(part))
        || key.split('_').any(|word| SECRET_WORDS.contains(&word))
}

impl Store {
    /// The kind of store `rel` (a bundle path) names, if any.
    fn of(rel: &str) -> Option<Store> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = dir.rsplit('/').next().unwrap_or("");
        Some(match name {
            "config" if parent == ".git" => Store::GitConfig,
            ".git-credentials" => Store::GitCredentials,
            ".env" => Store::DotEnv,
            n if n
                .strip_prefix(".env.")
                .is_some_and(|suffix| !ENV_TEMPLATES.contains(&suffix)) =>
            {
                Store::DotEnv
            }
            ".npmrc" => Store::Npmrc,
            ".pypirc" => Store::Pypirc,
            "config.json" if parent == ".docker" => Store::DockerConfig,
            ".netrc" | "_netrc" => Store::Netrc,
            _ => return None,
        })
    }

    /// What credential `text` (the head of such a file) holds, if any.
    fn credential_in(self, text: &str) -> Option<String> {
        let found = match self {
            Store::GitConfig => assignments(text, '=')
                .any(|(key, value)| {
                    key.eq_ignore_ascii_case("extraheader")
                        && value.to_ascii_lowercase().contains("authorization")
                })
                .then(|| {
                    "an http.extraheader with an authorization header \
                     (a token persisted by the checkout)"
                        .to_string()
                }),
            Store::GitCredentials => None,
            Store::DotEnv => assignments(text, '=').find_map(|(key, value)| {
                let key = key.trim_start_matches("export ").trim();
                (secret_key(key) && is_literal(value))
                    .then(|| format!("a value for {}", key.escape_debug()))
            }),
            Store::Npmrc => assignments(text, '=')
                .any(|(key, value)| {
                    let name = key.rsplit(':').next().unwrap_or(key);
                    matches!(name, "_authToken" | "_auth" | "_password") && is_literal(value)
                })
                .then(|| "an npm auth token".to_string()),
            Store::Pypirc => assignments(text, '=')
                .chain(assignments(text, ':'))
                .any(|(key, value)| key.eq_ignore_ascii_case("password") && is_literal(value))
                .then(|| "a package index password".to_string()),
            Store::DockerConfig => {
                docker_auth(text).then(|| "registry credentials under auths".to_string())
            }
            Store::Netrc => netrc_password(text).then(|| "a password".to_string()),
        };
        found.or_else(|| has_url_password(text).then(|| "a URL with a password".to_string()))
    }
}

/// True when a `.netrc` gives a password for some machine.
fn netrc_password(text: &str) -> bool {
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "password" {
            return words.next().is_some();
        }
    }
    false
}

/// Reads at most [`READ_LIMIT`] bytes of `rel` beneath `root` (without
/// waiting on a fifo put in its place); `None` when it cannot be read (the
/// push reports that itself).
fn read_head(root: BorrowedFd<'_>, rel: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    let fd = beneath::open_beneath(root, rel, flags, rustix::fs::Mode::empty()).ok()?;
    std::fs::File::from(fd)
        .take(READ_LIMIT)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `key sep value` lines, trimmed; comments and sections skipped.
fn assignments(text: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.starts_with(['#', ';', '[']) {
            return None;
        }
        let (key, value) = line.split_once(sep)?;
        Some((key.trim(), value.trim()))
    })
}

/// True for a value written out, not empty and not a reference to an
/// environment variable (`${NPM_TOKEN}`, `$TOKEN`).
fn is_literal(value: &str) -> bool {
    let value = value.trim_matches(|c| c == '"' || c == '\'').trim();
    !value.is_empty() && !value.starts_with('$')
}

/// True when `text` holds a URL with a password (`scheme://user:password@host`).
fn has_url_password(text: &str) -> bool {
    text.match_indices("://").any(|(at, _)| {
        let rest = &text[at + 3..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, _)) => userinfo
                .split_once(':')
                .is_some_and(|(_, password)| is_literal(password)),
            None => false,
        }
    })
}

/// True when a Docker `config.json` holds credentials: an `auth`,
/// `password`, `identitytoken` or `registrytoken` under `auths`.
fn docker_auth(text: &str) -> bool {
    let Ok(config) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return false;
    };
    auths.values().any(|entry| {
        ["auth", "password", "identitytoken", "registrytoken"]
            .iter()
            .any(|key| {
                entry
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| !v.is_empty())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::walk::SourceEntry;

    fn found(rel: &str, text: &str) -> Option<String> {
        Store::of(rel)?.credential_in(text)
    }

    #[test]
    fn stores_are_recognised_by_name() {
        assert_eq!(Store::of(".git/config"), Some(Store::GitConfig));
        assert_eq!(Store::of("vendor/x/.git/config"), Some(Store::GitConfig));
        assert_eq!(Store::of("config"), None);
        assert_eq!(Store::of("app/config"), None);
        assert_eq!(Store::of(".env.local"), Some(Store::DotEnv));
        assert_eq!(Store::of(".env.example"), None);
        assert_eq!(Store::of("web/.env.sample"), None);
        assert_eq!(Store::of(".docker/config.json"), Some(Store::DockerConfig));
        assert_eq!(Store::of("config.json"), None);
        assert_eq!(Store::of("_netrc"), Some(Store::Netrc));
    }

    #[test]
    fn credentials_are_told_from_harmless_values() {
        let git = "[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eDp5\n";
        assert!(found(".git/config", git).is_some());
        let remote =
            "[remote \"o\"]\n\turl = https://github.com/o/r.git\n\turl = git@github.com:o/r\n";
        assert_eq!(found(".git/config", remote), None);
        assert_eq!(
            found(".git/config", "url = https://user@dev.azure.com/o/r"),
            None
        );
        assert!(found(".git/config", "url = https://u:p4ss@h/r").is_some());
        assert_eq!(found(".git/config", "url = https://u:${TOKEN}@h/r"), None);
        assert!(found(".env", "export GITHUB_TOKEN='ghp_x'\n").is_some());
        assert_eq!(
            found(".env", "DEBUG=1\nAPI_KEY=\nTOKEN=${CI_TOKEN}\n"),
            None
        );
        assert_eq!(found(".env", "AUTHOR=me\nKEYBOARD=us\n"), None);
        assert!(found(".env", "SMTP_PASS=x\n").is_some());
        assert!(found(".env", "DATABASE_URL=postgres://app:pw@db/app\n").is_some());
        assert!(found(".npmrc", "//npm.pkg.github.com/:_authToken=ghp_x\n").is_some());
        assert_eq!(
            found(".npmrc", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n"),
            None
        );
        assert!(found(".pypirc", "[pypi]\npassword: pypi-x\n").is_some());
        assert_eq!(found(".pypirc", "[pypi]\nusername = __token__\n"), None);
        assert!(found(".docker/config.json", r#"{"auths":{"r":{"auth":"eDp5"}}}"#).is_some());
        assert_eq!(
            found(
                ".docker/config.json",
                r#"{"credsStore":"pass","auths":{"r":{}}}"#
            ),
            None
        );
        assert!(found(".netrc", "machine h login u password p\n").is_some());
        assert_eq!(found(".netrc", "machine h login u\n"), None);
    }

    #[test]
    fn a_finding_names_the_file_and_the_way_out_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".npmrc");
        std::fs::write(&path, "//r/:_authToken=npm_SECRET\n").unwrap();
        let tree = SourceTree {
            root: std::sync::Arc::new(std::fs::File::open(dir.path()).unwrap().into()),
            entries: vec![SourceEntry {
                rel: "web/.npmrc".to_string(),
                kind: SourceKind::File {
                    path,
                    at: FileAt::Tree(".npmrc".to_string()),
                    size: 26,
                    executable: false,
                    stamp: Default::default(),
                },
            }],
        };
        let findings = find(&tree);
        assert_eq!(findings.len(), 1);
        let text = findings[0].to_string();
        assert!(text.contains("\"web/.npmrc\""), "{text}");
        assert!(text.contains("--exclude \"/web/.npmrc\""), "{text}");
        assert!(text.contains("/web/.npmrc in .shpignore"), "{text}");
        assert!(!text.contains("npm_SECRET"), "{text}");
    }
}
