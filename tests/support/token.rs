//! A minimal Docker/distribution token server for a [`Registry`] configured
//! with token auth (`auth.token` in its configuration).
//!
//! A registry with token auth answers an unauthenticated request with
//! `401` and `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`. The
//! client then asks the realm for a token:
//!
//! ```text
//! GET /token?service=ocistep-test-registry&scope=repository:app:pull,push
//! Authorization: Basic <base64 user:password>     (optional)
//! ```
//!
//! and retries with `Authorization: Bearer <token>`. This server answers:
//!
//! * right credentials: `200` with a token granting every requested action
//!   (`pull`, `push`, `delete` or `*`) on every requested `repository` scope;
//! * wrong credentials (or an unreadable `Authorization` header): `401`;
//! * no credentials: `200` with a token granting nothing (an empty `access`
//!   list), as real registries treat anonymous users; the registry then
//!   refuses the actual request with `401` (`insufficient_scope`).
//!
//! Tokens are RS256 JWTs signed with `openssl dgst -sha256 -sign`, carrying
//! the signing certificate in the `x5c` header; the registry trusts that
//! certificate through `rootcertbundle`
//! ([`SigningMaterial::root_cert_bundle`]).
//!
//! The server runs on its own thread (one more thread per connection, one
//! request per connection) on a free `127.0.0.1` port and stops when the
//! [`TokenServer`] is dropped.
//!
//! [`Registry`]: super::Registry

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::require_tool;

/// The `service` the registry announces and the token's audience (`aud`).
pub const SERVICE: &str = "ocistep-test-registry";
/// The token issuer (`iss`) the registry is configured to accept.
pub const ISSUER: &str = "ocistep-test-issuer";
/// Lifetime of an issued token (`expires_in`), in seconds, by default.
pub const TOKEN_LIFETIME_SECS: u64 = 300;
/// How long past `exp` distribution still accepts a token (its allowance
/// for clock skew). Tokens are signed with `exp` this much early, so the
/// registry refuses them exactly `expires_in` seconds after issue.
pub const REGISTRY_LEEWAY_SECS: u64 = 60;

/// What the token server grants, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Seconds until the registry refuses an issued token.
    pub lifetime_secs: u64,
    /// Grant only the first repository asked for in one request, as some
    /// token services do: a token never covers two repositories.
    pub one_repository_per_token: bool,
    /// Answer this many requests (the first ones) with 503.
    pub fail_first: usize,
    /// What a request with the right credentials gets.
    pub reply: TokenReply,
}

/// What the server answers a request with the right credentials: a token,
/// or one of the replies a broken or hostile token service gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenReply {
    /// `200` with a signed token.
    Token,
    /// `401` whose JSON error message quotes the request's `Authorization`
    /// header and the password it decodes to.
    EchoRefusal,
    /// `200` whose body starts a JSON token and never ends: up to
    /// [`ENDLESS_REPLY_BYTES`], or until the client stops reading.
    Endless,
    /// `200` with a token of this many bytes (`a`s), which is no JWT.
    TokenOfBytes(usize),
}

/// How much of an [`TokenReply::Endless`] reply is sent at most.
pub const ENDLESS_REPLY_BYTES: usize = 512 << 20;

impl Default for TokenPolicy {
    /// [`TOKEN_LIFETIME_SECS`], and every repository asked for.
    fn default() -> Self {
        TokenPolicy {
            lifetime_secs: TOKEN_LIFETIME_SECS,
            one_repository_per_token: false,
            fail_first: 0,
            reply: TokenReply::Token,
        }
    }
}
/// Path of the token endpoint on the server.
pub const TOKEN_PATH: &str = "/token";
/// Actions the server knows and may grant on a repository.
pub const KNOWN_ACTIONS: &[&str] = &["pull", "push", "delete", "*"];

/// The largest request head the server reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Key and certificate that sign the tokens, made by [`generate`].
#[derive(Debug, Clone)]
pub struct SigningMaterial {
    /// Self-signed certificate (PEM) of the signing key: the registry's
    /// `rootcertbundle`, and the only entry of every token's `x5c` chain.
    pub cert: PathBuf,
    /// Unencrypted RSA private key (PEM) that signs the tokens.
    pub key: PathBuf,
    /// The certificate in DER form, as it goes into `x5c`.
    pub cert_der: Vec<u8>,
}

impl SigningMaterial {
    /// The file to configure as the registry's `auth.token.rootcertbundle`.
    pub fn root_cert_bundle(&self) -> &Path {
        &self.cert
    }
}

/// Generates an RSA 2048 key and a self-signed certificate for it, valid
/// for two days, into `dir` (`token-signing.key`, `token-signing.pem`).
pub fn generate(dir: &Path) -> SigningMaterial {
    let openssl = require_tool("openssl");
    let cert = dir.join("token-signing.pem");
    let key = dir.join("token-signing.key");
    let der = dir.join("token-signing.der");
    run_openssl(
        &openssl,
        dir,
        &[
            "req".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-subj".as_ref(),
            "/CN=ocistep test token signer".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ],
    );
    run_openssl(
        &openssl,
        dir,
        &[
            "x509".as_ref(),
            "-in".as_ref(),
            cert.as_os_str(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            der.as_os_str(),
        ],
    );
    let cert_der = std::fs::read(&der).expect("read DER signing certificate");
    SigningMaterial {
        cert,
        key,
        cert_der,
    }
}

fn run_openssl(openssl: &Path, dir: &Path, args: &[&std::ffi::OsStr]) {
    let output = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .env("RANDFILE", dir.join(".rnd"))
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Actions granted on one repository, as in a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Repository name, e.g. `private/app`.
    pub repository: String,
    /// Granted actions, in the order requested, e.g. `["pull", "push"]`.
    pub actions: Vec<String>,
}

/// One request the token server answered, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The user name from `Authorization: Basic`, or `None` when the request
    /// carried no credentials (or an unreadable header).
    pub user: Option<String>,
    /// The `service` parameter, if any.
    pub service: Option<String>,
    /// Every requested scope, e.g. `repository:app:pull,push`.
    pub scopes: Vec<String>,
    /// The status answered: 200, 401 (wrong credentials), 404, 405.
    pub status: u16,
    /// What the issued token grants (empty for anonymous requests and for
    /// refusals).
    pub granted: Vec<Grant>,
}

impl TokenRequest {
    /// Whether the request asked for `action` on `repository`.
    pub fn asked_for(&self, repository: &str, action: &str) -> bool {
        self.scopes.iter().any(|scope| {
            parse_scope(scope).is_some_and(|(kind, name, actions)| {
                kind == "repository" && name == repository && actions.iter().any(|a| a == action)
            })
        })
    }
}

/// The running token server. See the module documentation.
pub struct TokenServer {
    port: u16,
    root_cert_bundle: PathBuf,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    thread: Option<JoinHandle<()>>,
}

/// What every connection handler needs.
struct Issuer {
    user: String,
    password: String,
    policy: TokenPolicy,
    /// Token requests answered so far.
    answered: std::sync::atomic::AtomicUsize,
    signing: SigningMaterial,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    /// Starts a server that accepts `user`/`password`, signs with
    /// `signing` and grants as `policy` says, on a free loopback port.
    pub fn start(
        user: &str,
        password: &str,
        signing: SigningMaterial,
        policy: TokenPolicy,
    ) -> TokenServer {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the token server port");
        let port = listener.local_addr().expect("token server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let root_cert_bundle = signing.root_cert_bundle().to_path_buf();
        let issuer = Arc::new(Issuer {
            user: user.to_string(),
            password: password.to_string(),
            policy,
            answered: std::sync::atomic::AtomicUsize::new(0),
            signing,
            log: log.clone(),
        });
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("token-server-{port}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let issuer = issuer.clone();
                    let _ = std::thread::Builder::new()
                        .name("token-request".into())
                        .spawn(move || issuer.serve(stream));
                }
            })
            .expect("spawn the token server thread");
        TokenServer {
            port,
            root_cert_bundle,
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.host())
    }

    /// The PEM file the registry must trust (`auth.token.rootcertbundle`).
    pub fn root_cert_bundle(&self) -> &Path {
        &self.root_cert_bundle
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().expect("token log lock").clone()
    }

    /// Number of requests answered so far (whatever their outcome).
    pub fn request_count(&self) -> usize {
        self.log.lock().expect("token log lock").len()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &(Ipv4Addr::LOCALHOST, self.port).into(),
            Duration::from_secs(1),
        );
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed HTTP request head.
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Who a request authenticated as.
enum Caller {
    Anonymous,
    User(String),
    Refused(Option<String>),
}

impl Issuer {
    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let Some(head) = read_head(&stream) else {
            return;
        };
        let (status, body, record) = self.answer(&head);
        let granted = record
            .as_ref()
            .is_some_and(|r| r.status == 200 && r.user.is_some());
        if let Some(record) = record {
            self.log.lock().expect("token log lock").push(record);
        }
        let _ = match self.policy.reply {
            TokenReply::Endless if granted => write_endless(stream),
            TokenReply::EchoRefusal if granted => {
                let echo = format!(
                    "authentication failed for Authorization: {} (password {})",
                    head.header("Authorization").unwrap_or_default(),
                    self.password
                );
                write_response(stream, 401, &error_body("UNAUTHORIZED", &echo))
            }
            TokenReply::TokenOfBytes(n) if granted => {
                let token = "a".repeat(n);
                let body = serde_json::json!({ "token": token, "expires_in": 300 });
                write_response(stream, 200, &body.to_string())
            }
            _ => write_response(stream, status, &body),
        };
    }

    /// The status and JSON body for a request, and its log record.
    fn answer(&self, head: &RequestHead) -> (u16, String, Option<TokenRequest>) {
        let (path, query) = head
            .target
            .split_once('?')
            .unwrap_or((head.target.as_str(), ""));
        let params = parse_query(query);
        let service = params
            .iter()
            .find(|(key, _)| key == "service")
            .map(|(_, value)| value.clone());
        let scopes: Vec<String> = params
            .iter()
            .filter(|(key, _)| key == "scope")
            .flat_map(|(_, value)| value.split(' '))
            .filter(|scope| !scope.is_empty())
            .map(str::to_string)
            .collect();
        let mut record = TokenRequest {
            user: None,
            service,
            scopes,
            status: 200,
            granted: Vec::new(),
        };
        if self.answered.fetch_add(1, Ordering::SeqCst) < self.policy.fail_first {
            record.status = 503;
            return (
                503,
                error_body("UNAVAILABLE", "try again later"),
                Some(record),
            );
        }
        if path != TOKEN_PATH {
            record.status = 404;
            return (
                404,
                error_body("NOT_FOUND", "no such endpoint"),
                Some(record),
            );
        }
        if !head.method.eq_ignore_ascii_case("GET") {
            record.status = 405;
            return (
                405,
                error_body("UNSUPPORTED", "only GET is supported"),
                Some(record),
            );
        }
        match self.caller(head.header("Authorization")) {
            Caller::Refused(user) => {
                record.user = user;
                record.status = 401;
                (
                    401,
                    error_body("UNAUTHORIZED", "authentication failed"),
                    Some(record),
                )
            }
            Caller::Anonymous => {
                let body = self.token_body("", &[]);
                (200, body, Some(record))
            }
            Caller::User(user) => {
                record.granted = grants(&record.scopes);
                if self.policy.one_repository_per_token {
                    record.granted.truncate(1);
                }
                let body = self.token_body(&user, &record.granted);
                record.user = Some(user);
                (200, body, Some(record))
            }
        }
    }

    fn caller(&self, authorization: Option<&str>) -> Caller {
        let Some(value) = authorization else {
            return Caller::Anonymous;
        };
        let decoded = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, encoded)| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(decoded) = decoded else {
            return Caller::Refused(None);
        };
        match decoded.split_once(':') {
            Some((user, password)) if user == self.user && password == self.password => {
                Caller::User(user.to_string())
            }
            Some((user, _)) => Caller::Refused(Some(user.to_string())),
            None => Caller::Refused(None),
        }
    }

    /// `{"token", "access_token", "expires_in", "issued_at"}` for a token
    /// issued to `subject` (empty for anonymous) granting `granted`.
    fn token_body(&self, subject: &str, granted: &[Grant]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let token = self.sign(subject, granted, now);
        serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.policy.lifetime_secs,
            "issued_at": rfc3339(now),
        })
        .to_string()
    }

    /// An RS256 JWT with the signing certificate in `x5c`.
    fn sign(&self, subject: &str, granted: &[Grant], now: u64) -> String {
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.signing.cert_der)],
        });
        let access: Vec<serde_json::Value> = granted
            .iter()
            .map(|grant| {
                serde_json::json!({
                    "type": "repository",
                    "name": grant.repository,
                    "actions": grant.actions,
                })
            })
            .collect();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": (now + self.policy.lifetime_secs).saturating_sub(REGISTRY_LEEWAY_SECS),
            "nbf": now.saturating_sub(5),
            "iat": now,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let signature = openssl_sign(&self.signing.key, signing_input.as_bytes());
        format!("{signing_input}.{}", base64url(&signature))
    }
}

/// What a user with the right credentials gets: every known action asked
/// for on each `repository` scope, merged per repository.
fn grants(scopes: &[String]) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for (kind, name, actions) in scopes.iter().filter_map(|s| parse_scope(s)) {
        if kind != "repository" {
            continue;
        }
        let index = match out.iter().position(|grant| grant.repository == name) {
            Some(index) => index,
            None => {
                out.push(Grant {
                    repository: name.to_string(),
                    actions: Vec::new(),
                });
                out.len() - 1
            }
        };
        for action in actions {
            let grant = &mut out[index];
            if KNOWN_ACTIONS.contains(&action.as_str()) && !grant.actions.contains(&action) {
                grant.actions.push(action);
            }
        }
    }
    out
}

/// Splits `type:name:actions` (the name may itself hold `:`, e.g. a port).
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .filter(|action| !action.is_empty())
        .map(str::to_string)
        .collect();
    Some((kind, name, actions))
}

/// Signs `data` with `openssl dgst -sha256 -sign KEY` (RSASSA-PKCS1-v1_5
/// with SHA-256, i.e. JWS `RS256`).
fn openssl_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(require_tool("openssl"))
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(data)
        .expect("write to openssl dgst");
    let output = child.wait_with_output().expect("wait for openssl dgst");
    assert!(
        output.status.success(),
        "openssl dgst -sign failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Base64url without padding, as JWS requires.
pub fn base64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decodes the claims (the middle part) of a JWT issued by this server.
pub fn decode_claims(token: &str) -> serde_json::Value {
    let claims = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .expect("claims are base64url");
    serde_json::from_slice(&bytes).expect("claims are JSON")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string()
}

/// Reads the request line and header fields; `None` for anything that is
/// not a readable HTTP request (such as the wake-up connection on drop).
fn read_head(stream: &TcpStream) -> Option<RequestHead> {
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).ok()?;
        total += read;
        if read == 0 || total > MAX_HEAD_BYTES {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut request_line = lines.first()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers = lines[1..]
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Some(RequestHead {
        method,
        target,
        headers,
    })
}

fn write_response(mut stream: TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        response.push_str("WWW-Authenticate: Basic realm=\"ocistep-test-token\"\r\n");
    }
    response.push_str("\r\n");
    response.push_str(body);
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// `200` and the start of a JSON token reply that goes on, in 64 KiB
/// writes, until [`ENDLESS_REPLY_BYTES`] or until the client goes away.
fn write_endless(mut stream: TcpStream) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"token\":\"",
    )?;
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..ENDLESS_REPLY_BYTES / block.len() {
        stream.write_all(&block)?;
    }
    stream.flush()
}

/// `key=value&…` pairs, percent-decoded (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
