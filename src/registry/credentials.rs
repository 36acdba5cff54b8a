//! Where credentials come from: `--secret-path`, `DOCKER_CONFIG`,
//! `~/.docker/config.json` and credential helpers.
//!
//! Credentials are held in [`Secret`], whose `Debug` and `Display` never
//! show the value, so they cannot leak through logs or error messages.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::error::{Error, Result};

/// A secret string that never prints itself, and that
/// [`crate::redact::redact`] removes from server text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value, registering it (and its encoded forms) for redaction.
    pub fn new(s: impl Into<String>) -> Self {
        let s = s.into();
        crate::redact::register(&s);
        Secret(s)
    }

    /// The value, for building a request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials found: anonymous access.
    Anonymous,
    /// Username and password (or a token used as password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
}

impl Credentials {
    /// Where the credentials came from, for messages.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }
}

/// The config files to search, in order: the secret path (a config file
/// itself, or a directory's `.dockerconfigjson` / `config.json`), then
/// `$DOCKER_CONFIG/config.json`, then `~/.docker/config.json`.
pub fn config_files(secret_path: Option<&Path>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match secret_path {
        Some(file) if file.is_file() => files.push(file.to_path_buf()),
        Some(dir) => {
            files.push(dir.join(".dockerconfigjson"));
            files.push(dir.join("config.json"));
        }
        None => {}
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(dir).join("config.json"));
    } else if let Some(home) = std::env::var_os("HOME") {
        files.push(PathBuf::from(home).join(".docker").join("config.json"));
    }
    files
}

/// Checks that a `--secret-path` names a docker config file, or a
/// directory with one in it. An empty path means "none" (an unbound Tekton
/// workspace).
pub fn validate_secret_path(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "--secret-path {} is neither a docker config file nor a directory; point it at the config file or the directory holding .dockerconfigjson or config.json",
            path.display()
        )));
    }
    if !path.join(".dockerconfigjson").is_file() && !path.join("config.json").is_file() {
        return Err(Error::Usage(format!(
            "--secret-path {} holds neither .dockerconfigjson nor config.json",
            path.display()
        )));
    }
    Ok(())
}

/// Finds credentials for `registry` (a host with optional port). The first
/// config file with an entry for the host wins; no entry anywhere means
/// anonymous access. Credential helpers are run as the docker CLI runs them.
pub fn lookup(registry: &str, files: &[PathBuf]) -> Result<Credentials> {
    for file in files {
        if !file.is_file() {
            continue;
        }
        for server in server_keys(registry) {
            let reader =
                BufReader::new(File::open(file).map_err(|e| Error::io("reading", file, e))?);
            match docker_credential::get_credential_from_reader(reader, &server) {
                Ok(DockerCredential::UsernamePassword(username, password)) => {
                    crate::redact::register_basic(&username, &password);
                    return Ok(Credentials::Basic {
                        username,
                        password: Secret::new(password),
                    });
                }
                Ok(DockerCredential::IdentityToken(token)) => {
                    // An identity token is exchanged like a password by token servers.
                    crate::redact::register_basic("<token>", &token);
                    return Ok(Credentials::Basic {
                        username: "<token>".to_string(),
                        password: Secret::new(token),
                    });
                }
                Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
                Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                    return Err(Error::Auth(format!(
                        "credential helper {helper} failed for {registry} (config {}); check that it is installed and logged in",
                        file.display()
                    )));
                }
                Err(e) => {
                    return Err(Error::Auth(format!(
                        "cannot read credentials for {registry} from {}: {}",
                        file.display(),
                        describe(&e)
                    )));
                }
            }
        }
    }
    Ok(Credentials::Anonymous)
}

/// The `HttpHeaders` of the first config file that exists, as the docker
/// CLI sends them with every request. Their values are treated as secrets
/// (a header may carry a token): they never print and are redacted from
/// server text. A `User-Agent` there is left out, as Shipwright leaves it.
pub fn http_headers(files: &[PathBuf]) -> Result<Vec<(String, Secret)>> {
    let Some(file) = files.iter().find(|f| f.is_file()) else {
        return Ok(Vec::new());
    };
    let text = std::fs::read(file).map_err(|e| Error::io("reading", file, e))?;
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|_| {
        Error::Auth(format!(
            "{} is not a valid docker config (not JSON)",
            file.display()
        ))
    })?;
    let Some(headers) = doc.get("HttpHeaders") else {
        return Ok(Vec::new());
    };
    let headers = headers.as_object().ok_or_else(|| {
        Error::Auth(format!(
            "\"HttpHeaders\" in {} is not an object of header names and values",
            file.display()
        ))
    })?;
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(value) = value.as_str() else {
            return Err(Error::Auth(format!(
                "header {name:?} of \"HttpHeaders\" in {} is not a string",
                file.display()
            )));
        };
        if !name.eq_ignore_ascii_case("user-agent") {
            out.push((name.clone(), Secret::new(value)));
        }
    }
    Ok(out)
}

/// The keys a docker config may use for a host: the bare host, with a
/// scheme, and Docker Hub's historical index URL.
fn server_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".to_string());
    }
    keys
}

/// A description of a credential error that never includes secret material.
fn describe(e: &CredentialRetrievalError) -> &'static str {
    match e {
        CredentialRetrievalError::ConfigReadError | CredentialRetrievalError::ConfigNotFound => {
            "the file is not a valid docker config"
        }
        CredentialRetrievalError::CredentialDecodingError => {
            "an `auth` value is not valid base64 of user:password"
        }
        CredentialRetrievalError::CredentialMismatchError => {
            "`auth` disagrees with `username`/`password`"
        }
        _ => "unexpected credential format",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn finds_auth_by_host_and_secret_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        // base64("user:s3cret")
        let f = write_config(
            dir.path(),
            ".dockerconfigjson",
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpzM2NyZXQ="}}}"#,
        );
        let c = lookup("127.0.0.1:5000", &[f]).unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "user".into(),
                password: Secret::new("s3cret")
            }
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn a_config_file_itself_is_a_secret_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_config(dir.path(), "shp.json", r#"{"auths":{}}"#);
        validate_secret_path(&f).unwrap();
        assert_eq!(config_files(Some(&f))[0], f);
        let e = validate_secret_path(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("config file"), "{e}");
    }

    #[test]
    fn http_headers_come_from_the_first_config() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_config(
            dir.path(),
            "config.json",
            r#"{"HttpHeaders":{"X-Meta-Source":"ci-hdr-value","User-Agent":"not-ours"}}"#,
        );
        let other = write_config(dir.path(), "other.json", r#"{"HttpHeaders":{"X-B":"b"}}"#);
        let headers = http_headers(&[dir.path().join("absent"), f, other]).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].0, "X-Meta-Source");
        assert_eq!(headers[0].1.expose(), "ci-hdr-value");
        assert!(!format!("{headers:?}").contains("ci-hdr-value"));
        let bad = write_config(dir.path(), "bad.json", r#"{"HttpHeaders":{"X":1}}"#);
        assert_eq!(
            http_headers(&[bad]).unwrap_err().exit_code(),
            crate::ExitCode::Auth
        );
    }

    #[test]
    fn https_prefixed_keys_match() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_config(
            dir.path(),
            "config.json",
            r#"{"auths":{"https://reg.example":{"username":"u","password":"p"}}}"#,
        );
        assert!(!lookup("reg.example", std::slice::from_ref(&f))
            .unwrap()
            .is_anonymous());
        assert!(lookup("other.example", &[f]).unwrap().is_anonymous());
    }

    #[test]
    fn broken_auth_is_an_auth_error_without_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_config(
            dir.path(),
            "config.json",
            r#"{"auths":{"h":{"auth":"!!notbase64!!"}}}"#,
        );
        let e = lookup("h", &[f]).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Auth);
        assert!(!e.to_string().contains("notbase64"));
    }
}
