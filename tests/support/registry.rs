//! A real OCI registry (CNCF distribution 2.x, Debian's `docker-registry`)
//! for integration tests.
//!
//! Every [`Registry`] is a separate `docker-registry serve` process on a free
//! `127.0.0.1` port with its own temporary storage, configuration and log
//! file. It is killed and its files removed when the value is dropped.
//!
//! With [`RegistryOptions::token_auth`] the registry uses distribution's
//! token auth, and a [`TokenServer`] issuing the tokens runs next to it on
//! another free loopback port (stopped together with the registry).
//!
//! # Access log
//!
//! The registry writes two kinds of lines to its log (stdout and stderr are
//! captured together, see [`Registry::access_log`]):
//!
//! * application log lines on stderr, one or more per request, e.g.
//!   `time="…" level=info msg="response completed" … http.request.method=GET … http.request.uri=/v2/ … http.response.status=200 …`;
//! * exactly one Apache "combined" access-log line per request on stdout,
//!   written after the response was sent, e.g.
//!   `127.0.0.1 - - [25/Nov/2026:20:39:04 +0000] "PUT /v2/repo/manifests/t HTTP/1.1" 201 0 "" "skopeo/1.9.3"`.
//!
//! [`Registry::requests`] and [`Registry::request_count`] parse only the
//! combined lines, so each HTTP request counts exactly once (requests
//! rejected with 401 included). The harness's own readiness probes are left
//! out.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

use super::http::http_request_with;
use super::require_tool;
use super::tls::{self, TlsMaterial};
use super::token::{self, TokenPolicy, TokenRequest, TokenServer};

/// User agent of the readiness probe; its requests are excluded from
/// [`Registry::requests`].
const PROBE_USER_AGENT: &str = "ocistep-test-harness-probe";
/// How long a registry may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Start attempts (each on a new port) when the chosen port got taken.
const START_ATTEMPTS: usize = 3;

/// How to configure a [`Registry`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Require HTTP basic auth (htpasswd, bcrypt) with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Serve HTTPS with a certificate from a throw-away CA (see
    /// [`Registry::ca_file`]) instead of plain HTTP.
    pub tls: bool,
    /// Allow `DELETE` of manifests and blobs.
    pub delete_enabled: bool,
    /// Require a Bearer token (distribution's token auth) issued by a
    /// [`TokenServer`] started with the registry, which accepts this user
    /// and password. Cannot be combined with `basic_auth`.
    pub token_auth: Option<(String, String)>,
    /// What the token server grants, with `token_auth`.
    pub token_policy: TokenPolicy,
}

impl Default for RegistryOptions {
    /// Plain HTTP, no auth, deletes enabled.
    fn default() -> Self {
        Self {
            basic_auth: None,
            tls: false,
            delete_enabled: true,
            token_auth: None,
            token_policy: TokenPolicy::default(),
        }
    }
}

impl RegistryOptions {
    /// Options with basic auth for `user`/`password` (plain HTTP, deletes enabled).
    pub fn with_basic_auth(user: &str, password: &str) -> Self {
        Self {
            basic_auth: Some((user.to_string(), password.to_string())),
            ..Self::default()
        }
    }

    /// Options with token auth for `user`/`password` (plain HTTP, deletes
    /// enabled).
    pub fn with_token_auth(user: &str, password: &str) -> Self {
        Self {
            token_auth: Some((user.to_string(), password.to_string())),
            ..Self::default()
        }
    }

    /// Options with TLS (no auth, deletes enabled).
    pub fn with_tls() -> Self {
        Self {
            tls: true,
            ..Self::default()
        }
    }
}

/// One request from the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// HTTP method, e.g. `HEAD`.
    pub method: String,
    /// Request target including any query, e.g. `/v2/repo/manifests/t`.
    pub uri: String,
    /// Response status code.
    pub status: u16,
    /// The client's `User-Agent` (empty when none was sent).
    pub user_agent: String,
}

impl AccessLogEntry {
    /// Parses one combined-format line such as
    /// `127.0.0.1 - - [25/Nov/2026:20:39:04 +0000] "PUT /v2/r/manifests/t HTTP/1.1" 201 0 "" "ua"`.
    /// Returns `None` for any other line.
    pub fn parse(line: &str) -> Option<Self> {
        if line.starts_with("time=") {
            return None;
        }
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once('"')?;
        let mut request_parts = request.split(' ');
        let method = request_parts.next()?.to_string();
        let uri = request_parts.next()?.to_string();
        if !request_parts.next()?.starts_with("HTTP/") {
            return None;
        }
        let status = rest.split_whitespace().next()?.parse().ok()?;
        let user_agent = rest
            .trim_end()
            .strip_suffix('"')
            .and_then(|quoted| quoted.rsplit_once('"'))
            .map(|(_, agent)| agent.to_string())
            .unwrap_or_default();
        Some(Self {
            method,
            uri,
            status,
            user_agent,
        })
    }
}

/// A running `docker-registry` process. See the module documentation.
pub struct Registry {
    child: Child,
    port: u16,
    tls: Option<TlsMaterial>,
    basic_auth: Option<(String, String)>,
    token_auth: Option<(String, String)>,
    docker_config_dir: Option<PathBuf>,
    log_path: PathBuf,
    storage_dir: PathBuf,
    /// The token server (with token auth); stopped when dropped.
    token_server: Option<TokenServer>,
    /// Declared last so it is removed after the process was stopped.
    dir: TempDir,
}

impl Registry {
    /// Starts a plain-HTTP registry without auth, with deletes enabled.
    pub fn start() -> Registry {
        Self::start_with(RegistryOptions::default())
    }

    /// Starts a registry configured by `opts` and waits until it serves.
    ///
    /// Panics (with the registry's log) when it cannot be started, and with
    /// an installation hint when a needed tool is missing.
    pub fn start_with(opts: RegistryOptions) -> Registry {
        assert!(
            opts.basic_auth.is_none() || opts.token_auth.is_none(),
            "a registry has either basic auth or token auth, not both"
        );
        let binary = require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("ocistep-registry-")
            .tempdir()
            .expect("create registry directory");
        let storage_dir = dir.path().join("storage");
        std::fs::create_dir(&storage_dir).expect("create registry storage");
        let htpasswd = opts
            .basic_auth
            .as_ref()
            .map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let tls = opts.tls.then(|| tls::generate(dir.path()));
        let token_server = opts.token_auth.as_ref().map(|(user, password)| {
            TokenServer::start(
                user,
                password,
                token::generate(dir.path()),
                opts.token_policy,
            )
        });
        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let config = config_yaml(
                port,
                &storage_dir,
                &opts,
                htpasswd.as_deref(),
                tls.as_ref(),
                token_server.as_ref(),
            );
            std::fs::write(&config_path, config).expect("write registry config");
            let child = spawn(&binary, &config_path, &log_path, dir.path());
            match wait_until_ready(child, port, tls.is_some(), &log_path) {
                Ok(child) => {
                    let docker_config_dir =
                        opts.basic_auth.as_ref().or(opts.token_auth.as_ref()).map(
                            |(user, password)| {
                                write_docker_config(dir.path(), port, user, password)
                            },
                        );
                    return Registry {
                        child,
                        port,
                        tls,
                        basic_auth: opts.basic_auth,
                        token_auth: opts.token_auth,
                        docker_config_dir,
                        log_path,
                        storage_dir,
                        token_server,
                        dir,
                    };
                }
                Err(StartFailure::PortTaken(log)) => {
                    failures.push(format!("port {port} taken:\n{log}"))
                }
                Err(StartFailure::Fatal(message)) => {
                    panic!("docker-registry did not start: {message}")
                }
            }
        }
        panic!(
            "docker-registry did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when TLS is on.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// With TLS: the PEM file of the CA that signed the registry's
    /// certificate (valid for `127.0.0.1` and `localhost`).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|material| material.ca_cert.clone())
    }

    /// With basic auth or token auth: the configured user and password.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.basic_auth.clone().or_else(|| self.token_auth.clone())
    }

    /// With basic auth or token auth: a directory (usable as
    /// `DOCKER_CONFIG`) holding a `config.json` of the form
    /// `{"auths":{"127.0.0.1:PORT":{"auth":"<base64 user:password>"}}}`.
    pub fn docker_config_dir(&self) -> Option<PathBuf> {
        self.docker_config_dir.clone()
    }

    /// With token auth: the token server's realm,
    /// `http://127.0.0.1:PORT/token`.
    pub fn token_realm(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::realm)
    }

    /// With token auth: `127.0.0.1:PORT` of the token server.
    pub fn token_host(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::host)
    }

    /// Number of requests the token server answered so far, whatever their
    /// outcome (0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.token_server
            .as_ref()
            .map_or(0, TokenServer::request_count)
    }

    /// Every request the token server answered so far, in order (empty
    /// without token auth).
    pub fn token_log(&self) -> Vec<TokenRequest> {
        self.token_server
            .as_ref()
            .map(TokenServer::requests)
            .unwrap_or_default()
    }

    /// The registry's storage root (filesystem driver), e.g. to inspect
    /// `docker/registry/v2/blobs` directly.
    pub fn storage_dir(&self) -> PathBuf {
        self.storage_dir.clone()
    }

    /// The data files of upload sessions still open in `repo`
    /// (distribution's filesystem layout; a cancelled session may keep a
    /// stub of hash state, but no data).
    pub fn upload_data_left(&self, repo: &str) -> Vec<PathBuf> {
        let uploads = self
            .storage_dir
            .join(format!("docker/registry/v2/repositories/{repo}/_uploads"));
        std::fs::read_dir(&uploads)
            .map(|dir| {
                dir.map(|e| e.unwrap().path().join("data"))
                    .filter(|data| data.exists())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything the registry logged so far (stdout and stderr).
    ///
    /// A request's access-log line is written just after its response was
    /// sent, so this first waits briefly until the log stops growing.
    pub fn access_log(&self) -> String {
        settle(&self.log_path);
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// All requests so far, in order, from the combined access-log lines,
    /// excluding the harness's readiness probes.
    pub fn requests(&self) -> Vec<AccessLogEntry> {
        self.access_log()
            .lines()
            .filter_map(AccessLogEntry::parse)
            .filter(|entry| entry.user_agent != PROBE_USER_AGENT)
            .collect()
    }

    /// Number of requests (see [`Registry::requests`]) with method `method`
    /// (case-insensitive) whose URI contains `path_contains`.
    pub fn request_count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|entry| {
                entry.method.eq_ignore_ascii_case(method) && entry.uri.contains(path_contains)
            })
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum StartFailure {
    /// The port was taken between choosing and binding it; retry.
    PortTaken(String),
    /// Anything else; the message includes the registry's log.
    Fatal(String),
}

/// Picks a currently free loopback port.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn config_yaml(
    port: u16,
    storage_dir: &Path,
    opts: &RegistryOptions,
    htpasswd: Option<&Path>,
    tls: Option<&TlsMaterial>,
    token_server: Option<&TokenServer>,
) -> String {
    let mut http = serde_json::json!({
        "addr": format!("127.0.0.1:{port}"),
        "secret": "ocistep-test-secret",
    });
    if let Some(tls) = tls {
        http["tls"] = serde_json::json!({
            "certificate": tls.server_cert,
            "key": tls.server_key,
        });
    }
    let mut config = serde_json::json!({
        "version": "0.1",
        "log": {
            "level": "info",
            "formatter": "text",
            "accesslog": { "disabled": false },
        },
        "storage": {
            "filesystem": { "rootdirectory": storage_dir },
            "delete": { "enabled": opts.delete_enabled },
            "maintenance": { "uploadpurging": { "enabled": false } },
        },
        "http": http,
    });
    if let Some(path) = htpasswd {
        config["auth"] = serde_json::json!({
            "htpasswd": { "realm": "ocistep-test", "path": path },
        });
    }
    if let Some(server) = token_server {
        config["auth"] = serde_json::json!({
            "token": {
                "realm": server.realm(),
                "service": token::SERVICE,
                "issuer": token::ISSUER,
                "rootcertbundle": server.root_cert_bundle(),
            },
        });
    }
    serde_yaml_ng::to_string(&config).expect("serialize registry config")
}

/// Writes a bcrypt htpasswd file made by `htpasswd -Bbn`.
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let htpasswd = require_tool("htpasswd");
    let output = Command::new(htpasswd)
        .args(["-B", "-b", "-n", user, password])
        .output()
        .expect("run htpasswd");
    assert!(
        output.status.success(),
        "htpasswd failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("htpasswd");
    std::fs::write(&path, &output.stdout).expect("write htpasswd file");
    path
}

/// Writes `docker/config.json` with an `auths` entry for the registry.
fn write_docker_config(dir: &Path, port: u16, user: &str, password: &str) -> PathBuf {
    let config_dir = dir.join("docker");
    std::fs::create_dir_all(&config_dir).expect("create docker config directory");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({
        "auths": { format!("127.0.0.1:{port}"): { "auth": auth } },
    });
    std::fs::write(
        config_dir.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("serialize docker config"),
    )
    .expect("write docker config.json");
    config_dir
}

/// Starts `docker-registry serve CONFIG` with a minimal environment (no
/// proxies, no `REGISTRY_*` overrides) and its output in `log_path`.
fn spawn(binary: &Path, config: &Path, log_path: &Path, dir: &Path) -> Child {
    let log = File::create(log_path).expect("create registry log");
    let log_err = log.try_clone().expect("clone registry log handle");
    Command::new(binary)
        .arg("serve")
        .arg(config)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()))
}

/// Polls `GET /v2/` until the registry answers, it exits, or the startup
/// timeout passes. On failure the process is stopped.
///
/// Plain HTTP must answer 200 or 401. A TLS listener answers the plain
/// probe with Go's `400 Client sent an HTTP request to an HTTPS server`,
/// which shows it is serving. In both cases the log must also show this
/// process listening on the port, so another server that grabbed the
/// port is not mistaken for ours.
fn wait_until_ready(
    mut child: Child,
    port: u16,
    tls: bool,
    log_path: &Path,
) -> Result<Child, StartFailure> {
    let host = format!("127.0.0.1:{port}");
    let listening = format!("listening on 127.0.0.1:{port}");
    let read_log = || std::fs::read_to_string(log_path).unwrap_or_default();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll docker-registry") {
            let log = read_log();
            return Err(if log.contains("address already in use") {
                StartFailure::PortTaken(log)
            } else {
                StartFailure::Fatal(format!("exited early ({status}); log:\n{log}"))
            });
        }
        if read_log().contains(&listening) {
            if let Ok(response) = http_request_with(
                "GET",
                &host,
                "/v2/",
                None,
                &[("User-Agent", PROBE_USER_AGENT)],
            ) {
                let ready = if tls {
                    response.status == 400
                } else {
                    matches!(response.status, 200 | 401)
                };
                if ready {
                    return Ok(child);
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartFailure::Fatal(format!(
                "no answer on {host} within {STARTUP_TIMEOUT:?}; log:\n{}",
                read_log()
            )));
        }
        sleep(POLL_INTERVAL);
    }
}

/// Waits (up to one second) until the file at `path` stops growing.
fn settle(path: &Path) {
    let size = || std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut last = size();
    loop {
        sleep(Duration::from_millis(25));
        let now = size();
        if now == last || Instant::now() >= deadline {
            return;
        }
        last = now;
    }
}
