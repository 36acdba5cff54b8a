//! Secrets a server echoes never get out: a registry whose 401, 403 or 500
//! body quotes the `Authorization` header it received (basic auth and a
//! bearer token), and a token service whose refusal quotes the password,
//! leave neither the password, nor `base64(user:password)`, nor the bearer
//! token in stdout, stderr or any result file, in text and JSON logs; the
//! error still says what happened, with `[redacted]` in place.

mod support;

use std::path::Path;

use base64::Engine as _;
use support::faults::{Fault, FaultProxy, Rule};
use support::{Registry, RegistryOptions, Run, TokenPolicy, TokenReply};

const USER: &str = "echo-user";
/// Characters that change under URL and base64 encodings on purpose.
const PASSWORD: &str = "Ech0-S3cr3t_p@ss+w/rd=5";

/// Every form of the credentials that must not show up anywhere.
fn forbidden() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let basic = b64.encode(format!("{USER}:{PASSWORD}"));
    vec![
        PASSWORD.to_string(),
        basic.trim_end_matches('=').to_string(),
        PASSWORD.replace('@', "%40").replace('+', "%2B"),
    ]
}

/// A `config.json` for `host` with the credentials, in `dir`.
fn docker_config(dir: &Path, host: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.display().to_string()
}

/// Pulls `image` with the credentials in `config_dir`, in `format` logs at
/// `-v`; returns the exit code and stderr, after asserting that no output
/// holds a secret or a bearer token.
fn pull_and_check(tmp: &Path, image: &str, config_dir: &str, format: &str) -> (i32, String) {
    let results = tmp.join(format!("results-{format}"));
    std::fs::create_dir_all(&results).unwrap();
    let run = Run::pull_bundle(tmp.join(format!("work-{format}")))
        .image(image)
        .args(["--retries", "2", "-v"])
        .args(["--log-format", format])
        .digest_to(results.join("digest"))
        .arg("--dotenv-file")
        .arg(results.join("dotenv"))
        .env("DOCKER_CONFIG", config_dir)
        .timeout(std::time::Duration::from_secs(60))
        .output();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let mut outputs = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(&run.stdout).into_owned(),
        ),
        ("stderr".to_string(), stderr.clone()),
    ];
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        outputs.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    for (name, text) in &outputs {
        for secret in forbidden() {
            assert!(!text.contains(&secret), "{name} holds {secret:?}:\n{text}");
        }
        assert!(
            !text.contains("eyJ"),
            "{name} holds a bearer token:\n{text}"
        );
    }
    (run.status.code().unwrap_or(-1), stderr)
}

/// A proxy in front of `reg` that lets the first manifest request through
/// (the registry's own 401 starts the handshake) and answers every later
/// one with `code`, quoting its `Authorization` header.
fn echoing_proxy(reg: &Registry, code: u16) -> FaultProxy {
    let later: Vec<usize> = (2..=40).collect();
    FaultProxy::start(
        &reg.host(),
        vec![Rule::new(
            "GET",
            "/manifests/",
            &later,
            Fault::EchoAuthorization { code },
        )],
    )
}

fn echoed_authorization_is_redacted(reg: &Registry, scheme: &str) {
    let tmp = tempfile::tempdir().unwrap();
    for (code, exit) in [(401, 3), (403, 3), (500, 8)] {
        for format in ["text", "json"] {
            let proxy = echoing_proxy(reg, code);
            let config = docker_config(&tmp.path().join(format!("config-{code}")), &proxy.host());
            let image = format!("{}/app:v1", proxy.host());
            let (got, stderr) = pull_and_check(tmp.path(), &image, &config, format);
            assert_eq!(got, exit, "{code}, {format}: {stderr}");
            assert!(
                stderr.contains(&format!("Authorization: {scheme} [redacted]")),
                "{code}, {format}: the error should quote the echo, redacted: {stderr}"
            );
            assert!(stderr.contains(&code.to_string()), "{stderr}");
            assert!(
                proxy.hits().iter().any(|(_, _, fault)| fault.is_some()),
                "{:#?}",
                proxy.hits()
            );
        }
    }
}

#[test]
fn a_registry_echoing_basic_auth_has_it_redacted() {
    let reg = Registry::start_with(RegistryOptions::with_basic_auth(USER, PASSWORD));
    echoed_authorization_is_redacted(&reg, "Basic");
}

#[test]
fn a_registry_echoing_a_bearer_token_has_it_redacted() {
    let reg = Registry::start_with(RegistryOptions::with_token_auth(USER, PASSWORD));
    echoed_authorization_is_redacted(&reg, "Bearer");
}

#[test]
fn a_token_service_echoing_the_password_has_it_redacted() {
    let reg = Registry::start_with(RegistryOptions {
        token_policy: TokenPolicy {
            reply: TokenReply::EchoRefusal,
            ..TokenPolicy::default()
        },
        ..RegistryOptions::with_token_auth(USER, PASSWORD)
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = docker_config(&tmp.path().join("config"), &reg.host());
    for format in ["text", "json"] {
        let (code, stderr) = pull_and_check(
            tmp.path(),
            &format!("{}/app:v1", reg.host()),
            &config,
            format,
        );
        assert_eq!(code, 3, "{stderr}");
        assert!(
            stderr.contains("refused the credentials")
                && stderr.contains("Authorization: Basic [redacted] (password [redacted])"),
            "{format}: the refusal should be quoted, redacted: {stderr}"
        );
    }
}
