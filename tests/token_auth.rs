//! Bearer-token auth against a real registry: `docker-registry` with
//! distribution's token auth and the harness's token server (see
//! `support::token`).

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::faults::{Fault, FaultProxy, Rule};
use support::token::{self, decode_claims, Grant};
use support::tree::{sample_tree, snapshot};
use support::{
    http_get, http_request_with, AccessLogEntry, Registry, RegistryOptions, Run, TokenPolicy,
};

const USER: &str = "ci";
const PASSWORD: &str = "T0ken-s3cret-pa55";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn token_registry() -> Registry {
    Registry::start_with(RegistryOptions::with_token_auth(USER, PASSWORD))
}

/// Writes `DIR/config.json` with `auths` credentials for `host`.
fn secret_dir(dir: &Path, host: &str, user: &str, pass: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({ "auths": { host: { "auth": auth } } }).to_string(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// `GET /token?service=…&scope=SCOPE` on the registry's token server.
fn fetch_token(reg: &Registry, scope: &str, basic: Option<(&str, &str)>) -> support::HttpResponse {
    let path = format!(
        "/token?service={}&scope={}",
        token::SERVICE,
        scope.replace(':', "%3A").replace(',', "%2C")
    );
    http_get(&reg.token_host().unwrap(), &path, basic).expect("GET token")
}

fn token_of(response: &support::HttpResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("token JSON");
    body["token"].as_str().expect("token field").to_string()
}

fn with_bearer(reg: &Registry, method: &str, path: &str, token: &str) -> support::HttpResponse {
    let bearer = format!("Bearer {token}");
    http_request_with(
        method,
        &reg.host(),
        path,
        None,
        &[("Authorization", &bearer), ("Accept", OCI_MANIFEST)],
    )
    .expect("registry request")
}

/// Requests for `uri_part` in the access log, in order.
fn requests_for(reg: &Registry, method: &str, uri_part: &str) -> Vec<AccessLogEntry> {
    reg.requests()
        .into_iter()
        .filter(|entry| entry.method.eq_ignore_ascii_case(method) && entry.uri.contains(uri_part))
        .collect()
}

fn manifest_dir(reg: &Registry, repository: &str) -> PathBuf {
    reg.storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_manifests")
}

#[test]
fn token_server_issues_tokens_the_registry_verifies() {
    let reg = token_registry();
    assert_eq!(reg.credentials(), Some((USER.into(), PASSWORD.into())));
    assert!(reg
        .docker_config_dir()
        .unwrap()
        .join("config.json")
        .is_file());
    assert_eq!(reg.token_requests(), 0);
    let realm = reg.token_realm().unwrap();
    assert_eq!(realm, format!("http://{}/token", reg.token_host().unwrap()));

    let challenge = http_get(&reg.host(), "/v2/", None).unwrap();
    assert_eq!(challenge.status, 401);
    let www = challenge.header("WWW-Authenticate").unwrap_or_default();
    assert!(www.starts_with("Bearer "), "{www}");
    assert!(www.contains(&format!("realm=\"{realm}\"")), "{www}");
    assert!(
        www.contains(&format!("service=\"{}\"", token::SERVICE)),
        "{www}"
    );

    // Right credentials: a token for exactly what was asked.
    let granted = fetch_token(
        &reg,
        "repository:probe/app:pull,push",
        Some((USER, PASSWORD)),
    );
    assert_eq!(granted.status, 200, "{}", granted.text());
    let body: serde_json::Value = serde_json::from_slice(&granted.body).unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], token::TOKEN_LIFETIME_SECS);
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(
        issued_at.len() == 20 && issued_at.ends_with('Z') && issued_at.as_bytes()[10] == b'T',
        "{issued_at}"
    );
    let user_token = token_of(&granted);
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(user_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
    let claims = decode_claims(&user_token);
    assert_eq!(claims["iss"], token::ISSUER);
    assert_eq!(claims["aud"], token::SERVICE);
    assert_eq!(claims["sub"], USER);
    assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "probe/app", "actions": ["pull", "push"]}])
    );
    // The registry accepts the signature: 404 for the unknown repository,
    // not 401.
    let listed = with_bearer(&reg, "GET", "/v2/probe/app/tags/list", &user_token);
    assert_eq!(listed.status, 404, "{}", listed.text());
    assert!(listed.text().contains("NAME_UNKNOWN"), "{}", listed.text());

    // Wrong credentials: refused by the token server.
    let refused = fetch_token(&reg, "repository:probe/app:pull", Some((USER, "nope")));
    assert_eq!(refused.status, 401);
    assert!(!refused.text().contains("token"), "{}", refused.text());

    // No credentials: a valid token that grants nothing.
    let anonymous = fetch_token(&reg, "repository:probe/app:pull", None);
    assert_eq!(anonymous.status, 200);
    let anonymous_token = token_of(&anonymous);
    assert_eq!(
        decode_claims(&anonymous_token)["access"],
        serde_json::json!([])
    );
    assert_eq!(
        with_bearer(&reg, "GET", "/v2/", &anonymous_token).status,
        200,
        "a valid token opens the base endpoint"
    );
    let denied = with_bearer(&reg, "GET", "/v2/probe/app/tags/list", &anonymous_token);
    assert_eq!(denied.status, 401);
    let www = denied.header("WWW-Authenticate").unwrap_or_default();
    assert!(www.contains("insufficient_scope"), "{www}");

    // A token whose claims were changed after signing is rejected.
    let mut forged = decode_claims(&anonymous_token);
    forged["access"] =
        serde_json::json!([{"type": "repository", "name": "probe/app", "actions": ["pull"]}]);
    let parts: Vec<&str> = anonymous_token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        token::base64url(forged.to_string().as_bytes()),
        parts[2]
    );
    let rejected = with_bearer(&reg, "GET", "/v2/probe/app/tags/list", &forged);
    assert_eq!(rejected.status, 401, "{}", rejected.text());

    let log = reg.token_log();
    assert_eq!(reg.token_requests(), 3);
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].user.as_deref(), Some(USER));
    assert_eq!(log[0].service.as_deref(), Some(token::SERVICE));
    assert_eq!(log[0].scopes, ["repository:probe/app:pull,push"]);
    assert_eq!(
        log[0].granted,
        [Grant {
            repository: "probe/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }]
    );
    assert!(log[0].asked_for("probe/app", "push"));
    assert_eq!((log[1].status, log[1].user.as_deref()), (401, Some(USER)));
    assert!(log[1].granted.is_empty());
    assert_eq!((log[2].status, log[2].user.as_deref()), (200, None));
    assert!(log[2].granted.is_empty());
}

#[test]
fn push_and_pull_with_a_token() {
    let reg = token_registry();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let secrets = secret_dir(&tmp.path().join("secret"), &reg.host(), USER, PASSWORD);
    let image = format!("{}/private/app:v1", reg.host());

    Run::push_bundle(&src)
        .image(&image)
        .arg("-vv")
        .secret_path(&secrets)
        .assert()
        .success()
        .stderr(contains(PASSWORD).not());
    let pushes = reg.token_log();
    assert!(!pushes.is_empty(), "the push asked for a token");
    assert!(
        pushes
            .iter()
            .all(|r| r.status == 200 && r.user.as_deref() == Some(USER)),
        "{pushes:?}"
    );
    assert!(
        pushes.iter().any(|r| r.asked_for("private/app", "push")),
        "{pushes:?}"
    );

    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .arg("-vv")
        .secret_path(&secrets)
        .assert()
        .success()
        .stderr(contains(PASSWORD).not());
    assert_eq!(snapshot(&src), snapshot(&work));
    let pulls = &reg.token_log()[pushes.len()..];
    assert!(
        pulls
            .iter()
            .any(|r| r.asked_for("private/app", "pull") && r.status == 200),
        "the pull asked for a token of its own: {pulls:?}"
    );

    // Each run first met the challenge (401), then succeeded with the token.
    let first = reg
        .requests()
        .into_iter()
        .find(|entry| entry.uri.starts_with("/v2/private/app/"))
        .expect("requests for the repository");
    assert_eq!(first.status, 401, "{first:?}");
    let manifest_puts = requests_for(&reg, "PUT", "/v2/private/app/manifests/v1");
    assert_eq!(
        manifest_puts.iter().map(|e| e.status).collect::<Vec<_>>(),
        [201],
        "{}",
        reg.access_log()
    );
    assert!(reg.request_count("PUT", "/v2/private/app/blobs/uploads/") >= 2);
    let manifest_gets = requests_for(&reg, "GET", "/v2/private/app/manifests/v1");
    assert_eq!(
        manifest_gets.iter().map(|e| e.status).collect::<Vec<_>>(),
        [401, 200],
        "{}",
        reg.access_log()
    );
    // The layer download reused the pull token: no second challenge.
    assert_eq!(
        requests_for(&reg, "GET", "/v2/private/app/blobs/")
            .iter()
            .map(|e| e.status)
            .collect::<Vec<_>>(),
        [200],
        "{}",
        reg.access_log()
    );
}

#[test]
fn wrong_password_exits_3_without_leaking_and_pushes_nothing() {
    let reg = token_registry();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(tmp.path(), "src/a", b"a");
    let bad_password = "Wr0ng-t0ken-pa55word";
    let secrets = secret_dir(&tmp.path().join("wrong"), &reg.host(), USER, bad_password);
    let digest_file = tmp.path().join("digest");
    let out = Run::push_bundle(tmp.path().join("src"))
        .image(format!("{}/app:v1", reg.host()))
        .args(["-vv", "--log-format", "json"])
        .secret_path(&secrets)
        .digest_to(&digest_file)
        .assert()
        .code(3)
        .stderr(contains("credentials").and(contains(bad_password).not()));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{bad_password}"));
    assert!(!stderr.contains(&encoded), "{stderr}");
    assert!(!digest_file.exists(), "no result file after a failed push");

    let log = reg.token_log();
    assert!(!log.is_empty(), "the token server was asked");
    assert!(
        log.iter()
            .all(|r| r.status == 401 && r.user.as_deref() == Some(USER)),
        "{log:?}"
    );
    assert_eq!(
        reg.request_count("PUT", "/manifests/"),
        0,
        "no tag was pushed"
    );
    assert!(
        reg.requests().iter().all(|e| e.status == 401),
        "the registry refused everything: {}",
        reg.access_log()
    );
    assert!(!manifest_dir(&reg, "app").exists());
}

#[test]
fn no_credentials_exit_3_because_the_anonymous_token_grants_nothing() {
    let reg = token_registry();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(tmp.path(), "src/a", b"a");
    let image = format!("{}/app:v1", reg.host());
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .assert()
        .code(3)
        .stderr(contains("credentials").and(contains("--secret-path")));
    let log = reg.token_log();
    assert!(!log.is_empty(), "an anonymous token was fetched");
    assert!(
        log.iter()
            .all(|r| r.status == 200 && r.user.is_none() && r.granted.is_empty()),
        "{log:?}"
    );
    // The request retried with the empty token was refused again.
    let first = reg.requests().first().cloned().expect("a request");
    let same: Vec<u16> = requests_for(&reg, &first.method, &first.uri)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(same, [401, 401], "{}", reg.access_log());
    assert_eq!(reg.request_count("PUT", "/manifests/"), 0);
    assert!(!manifest_dir(&reg, "app").exists());

    // A bundle that exists cannot be pulled anonymously either.
    let secrets = secret_dir(&tmp.path().join("secret"), &reg.host(), USER, PASSWORD);
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .secret_path(&secrets)
        .digest_to(tmp.path().join("d"))
        .assert()
        .success();
    assert!(reg.token_requests() > 0);
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .assert()
        .code(3)
        .stderr(contains("credentials"));
    assert!(!work.exists(), "a failed pull leaves no directory behind");
}

/// distribution 2.8 requires the `delete` action for `DELETE`, and ocistep's
/// token handshake asks for `pull,push` only, so `--prune` cannot delete:
/// the pull still succeeds (exit 0) and prune only warns.
#[test]
fn prune_with_token_auth_asks_for_a_delete_scope_and_deletes() {
    let reg = token_registry();
    let Pushed {
        tmp,
        src,
        secrets,
        digest,
    } = push_sample(&reg, &reg.host(), &format!("{}/prune/app:v1", reg.host()));
    let pushed_tokens = reg.token_requests();

    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(format!("{}/prune/app@{digest}", reg.host()))
        .secret_path(&secrets)
        .arg("--prune")
        .assert()
        .success()
        .stderr(
            contains("--prune failed")
                .not()
                .and(contains(PASSWORD).not()),
        );
    assert_eq!(snapshot(&src), snapshot(&work));

    // The DELETE was challenged once, then sent with a token for exactly the
    // scope the registry named.
    let manifest_path = format!("/v2/prune/app/manifests/{digest}");
    let deletes: Vec<u16> = requests_for(&reg, "DELETE", &manifest_path)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(deletes, [401, 202], "{}", reg.access_log());
    let pull_tokens = &reg.token_log()[pushed_tokens..];
    assert!(
        pull_tokens
            .iter()
            .any(|r| r.status == 200 && r.asked_for("prune/app", "delete")),
        "a token request asked for delete: {pull_tokens:?}"
    );

    // The bundle is gone.
    let pull_token = token_of(&fetch_token(
        &reg,
        "repository:prune/app:pull",
        Some((USER, PASSWORD)),
    ));
    assert_eq!(
        with_bearer(&reg, "GET", &manifest_path, &pull_token).status,
        404
    );
}

/// The sample tree, pushed to a token registry.
struct Pushed {
    /// Holds the tree, the credentials and anything a test adds.
    tmp: tempfile::TempDir,
    src: PathBuf,
    secrets: PathBuf,
    digest: String,
}

/// Pushes the sample tree to `image` on `reg` with its secret, with
/// credentials for `host` (the registry's, or a proxy's in front of it).
fn push_sample(reg: &Registry, host: &str, image: &str) -> Pushed {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let secrets = secret_dir(&tmp.path().join("secret"), host, USER, PASSWORD);
    let digest_file = tmp.path().join("digest");
    Run::push_bundle(&src)
        .image(image)
        .secret_path(&secrets)
        .digest_to(&digest_file)
        .assert()
        .success();
    assert!(reg.token_requests() > 0);
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    Pushed {
        tmp,
        src,
        secrets,
        digest,
    }
}

/// The digest `repository:tag` points at, read from the registry's storage.
fn tag_digest(reg: &Registry, repository: &str, tag: &str) -> Option<String> {
    let link = manifest_dir(reg, repository).join(format!("tags/{tag}/current/link"));
    std::fs::read_to_string(link).ok()
}

/// A token registry whose tokens live `lifetime_secs` and may be limited to
/// one repository each.
fn token_registry_with(policy: TokenPolicy) -> Registry {
    Registry::start_with(RegistryOptions {
        token_policy: policy,
        ..RegistryOptions::with_token_auth(USER, PASSWORD)
    })
}

#[test]
fn a_token_that_expires_during_an_upload_is_renewed() {
    let reg = token_registry_with(TokenPolicy {
        lifetime_secs: 3,
        ..TokenPolicy::default()
    });
    let early = token_of(&fetch_token(
        &reg,
        "repository:private/app:pull",
        Some((USER, PASSWORD)),
    ));
    // The first blob upload is held back for longer than a token lives, so
    // it reaches the registry with a token that has run out.
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Rule::new(
            "PUT",
            "/blobs/uploads/",
            &[1],
            Fault::Stall { millis: 4_000 },
        )],
    );
    let image = format!("{}/private/app:v1", proxy.host());
    let Pushed {
        tmp,
        src,
        secrets,
        digest,
    } = push_sample(&reg, &proxy.host(), &image);

    // The registry refused the held-back upload, ocistep asked for a new
    // token and sent it again: 401, then 201.
    let uploads: Vec<u16> = requests_for(&reg, "PUT", "/v2/private/app/blobs/uploads/")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(uploads.first(), Some(&401), "{}", reg.access_log());
    assert!(
        uploads[1..].iter().all(|s| *s == 201),
        "{}",
        reg.access_log()
    );
    let pushes = reg
        .token_log()
        .iter()
        .filter(|r| r.asked_for("private/app", "push") && r.status == 200)
        .count();
    assert!(pushes >= 2, "a new push token: {:?}", reg.token_log());
    // The tag is there and the pushed bundle pulls back.
    assert_eq!(
        tag_digest(&reg, "private/app", "v1").as_deref(),
        Some(digest.as_str())
    );
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .secret_path(&secrets)
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
    // The premise: the registry enforces the lifetime.
    let refused = with_bearer(&reg, "GET", "/v2/private/app/tags/list", &early);
    assert_eq!(refused.status, 401, "an expired token is refused");
}

/// Pushes the sample tree to `src/app:v1` and copies it to `dst/app:v1` on
/// `reg`; returns the access log entries of the copy's mount requests.
fn copy_across_repositories(reg: &Registry) -> Vec<AccessLogEntry> {
    let Pushed {
        tmp,
        secrets,
        digest: pushed,
        ..
    } = push_sample(reg, &reg.host(), &format!("{}/src/app:v1", reg.host()));
    let copied_file = tmp.path().join("copied");
    Run::new()
        .args([
            "--copy",
            &format!("{}/src/app:v1", reg.host()),
            &format!("{}/dst/app:v1", reg.host()),
        ])
        .secret_path(&secrets)
        .digest_to(&copied_file)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&copied_file).unwrap(), pushed);
    assert_eq!(
        tag_digest(reg, "dst/app", "v1").as_deref(),
        Some(pushed.as_str())
    );
    requests_for(reg, "POST", "/v2/dst/app/blobs/uploads/?mount=")
}

#[test]
fn a_cross_repository_mount_asks_for_one_token_covering_both_repositories() {
    let reg = token_registry();
    let mounts = copy_across_repositories(&reg);
    // Both blobs (config and layer) mounted: 201, nothing uploaded.
    assert_eq!(
        mounts.iter().filter(|e| e.status == 201).count(),
        2,
        "{}",
        reg.access_log()
    );
    assert_eq!(
        reg.request_count("PUT", "/v2/dst/app/blobs/uploads/"),
        0,
        "{}",
        reg.access_log()
    );
    assert!(
        reg.token_log()
            .iter()
            .any(|r| r.asked_for("dst/app", "push") && r.asked_for("src/app", "pull")),
        "{:?}",
        reg.token_log()
    );
}

#[test]
fn a_token_scoped_to_one_repository_makes_a_mount_fall_back_to_copying() {
    let reg = token_registry_with(TokenPolicy {
        one_repository_per_token: true,
        ..TokenPolicy::default()
    });
    let mounts = copy_across_repositories(&reg);
    assert!(
        !mounts.is_empty(),
        "a mount was tried: {}",
        reg.access_log()
    );
    assert!(
        mounts.iter().all(|e| e.status != 201),
        "{}",
        reg.access_log()
    );
    // Each blob read from src/app with a pull token and uploaded to dst/app.
    assert_eq!(
        requests_for(&reg, "PUT", "/v2/dst/app/blobs/uploads/")
            .iter()
            .filter(|e| e.status == 201)
            .count(),
        2,
        "{}",
        reg.access_log()
    );
    assert!(
        reg.token_log().iter().all(|r| r.granted.len() <= 1),
        "{:?}",
        reg.token_log()
    );
}

#[test]
fn a_token_service_that_fails_for_a_while_is_asked_again() {
    let reg = token_registry_with(TokenPolicy {
        fail_first: 2,
        ..TokenPolicy::default()
    });
    let Pushed {
        tmp, src, digest, ..
    } = push_sample(&reg, &reg.host(), &format!("{}/private/app:v1", reg.host()));
    let statuses: Vec<u16> = reg.token_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses[..3], [503, 503, 200], "{statuses:?}");
    assert_eq!(tag_digest(&reg, "private/app", "v1"), Some(digest));

    // A token service that never recovers: exit 8 (unreachable), not 3.
    let reg = token_registry_with(TokenPolicy {
        fail_first: usize::MAX,
        ..TokenPolicy::default()
    });
    Run::push_bundle(&src)
        .image(format!("{}/private/app:v1", reg.host()))
        .args(["--retries", "2"])
        .secret_path(secret_dir(
            &tmp.path().join("secret2"),
            &reg.host(),
            USER,
            PASSWORD,
        ))
        .assert()
        .code(8)
        .stderr(contains("token service").and(contains(PASSWORD).not()));
    assert_eq!(reg.token_requests(), 2, "{:?}", reg.token_log());
}

#[test]
fn into_an_existing_repository_a_streamed_layer_is_cancelled_or_finished_with_a_token() {
    let reg = token_registry();
    let image = |tag: &str| format!("{}/private/app:{tag}", reg.host());
    let Pushed {
        tmp,
        src,
        secrets,
        digest,
    } = push_sample(&reg, &reg.host(), &image("v1"));
    let digest_file = tmp.path().join("again");
    let closed = |reg: &Registry| {
        requests_for(reg, "PUT", "/v2/private/app/blobs/uploads/")
            .iter()
            .filter(|e| e.status == 201)
            .count()
    };
    let closed_before = closed(&reg);

    // The same tree: streamed while packing, then the HEAD finds the layer
    // and the session is cancelled. distribution wants a `delete` action for
    // that (the push token gets a 401 naming it), so the token is asked for
    // again with it added.
    Run::push_bundle(&src)
        .image(image("v2"))
        .secret_path(&secrets)
        .digest_to(&digest_file)
        .assert()
        .success();
    assert!(reg.token_requests() > 0);
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);
    let patched: Vec<u16> = requests_for(&reg, "PATCH", "/v2/private/app/blobs/uploads/")
        .iter()
        .map(|e| e.status)
        .collect();
    let cancelled: Vec<u16> = requests_for(&reg, "DELETE", "/v2/private/app/blobs/uploads/")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        (patched.last(), cancelled.as_slice()),
        (Some(&202), &[401, 204][..]),
        "{}",
        reg.access_log()
    );
    assert!(
        reg.token_log()
            .iter()
            .any(|r| r.asked_for("private/app", "delete") && r.asked_for("private/app", "push")),
        "{:?}",
        reg.token_log()
    );
    assert_eq!(closed(&reg), closed_before, "no upload completed");

    // A changed tree: streamed, and the closing PUT finishes the upload.
    std::fs::write(src.join("added.txt"), "a change").unwrap();
    Run::push_bundle(&src)
        .image(image("v3"))
        .secret_path(&secrets)
        .digest_to(&digest_file)
        .assert()
        .success();
    assert!(reg.token_requests() > 0);
    assert_ne!(std::fs::read_to_string(&digest_file).unwrap(), digest);
    assert!(closed(&reg) > closed_before, "{}", reg.access_log());
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(image("v3"))
        .secret_path(&secrets)
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
}
