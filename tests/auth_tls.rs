//! Credentials and TLS against real registries: htpasswd basic auth, and a
//! TLS registry with a certificate made by the test.

mod support;

use std::path::Path;

use base64::Engine;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::tree::{sample_tree, snapshot};
use support::{Registry, RegistryOptions, Run};

const PASSWORD: &str = "Sup3r-s3cret-pa55";

fn secret_dir(dir: &Path, host: &str, user: &str, pass: &str, file: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        dir.join(file),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
}

fn auth_registry() -> Registry {
    Registry::start_with(RegistryOptions {
        basic_auth: Some(("ci".into(), PASSWORD.into())),
        ..Default::default()
    })
}

#[test]
fn right_credentials_from_secret_path_push_and_pull() {
    let reg = auth_registry();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let secrets = tmp.path().join("secret");
    secret_dir(&secrets, &reg.host(), "ci", PASSWORD, ".dockerconfigjson");
    let image = format!("{}/private/app:v1", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .arg("-v")
        .secret_path(&secrets)
        .assert()
        .success()
        .stderr(contains(PASSWORD).not());
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .arg("-vv")
        .secret_path(&secrets)
        .assert()
        .success()
        .stderr(contains(PASSWORD).not());
    assert_eq!(snapshot(&src), snapshot(&work));
}

#[test]
fn docker_config_env_is_used() {
    let reg = auth_registry();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(tmp.path(), "src/a", b"a");
    let config = tmp.path().join("docker");
    secret_dir(&config, &reg.host(), "ci", PASSWORD, "config.json");
    Run::push_bundle(tmp.path().join("src"))
        .image(format!("{}/app:env", reg.host()))
        .env("DOCKER_CONFIG", &config)
        .assert()
        .success();
}

#[test]
fn wrong_or_missing_credentials_exit_3_without_leaking_and_push_nothing() {
    let reg = auth_registry();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(tmp.path(), "src/a", b"a");
    let wrong = tmp.path().join("wrong");
    let bad_password = "Wr0ng-pa55word-leak-check";
    secret_dir(&wrong, &reg.host(), "ci", bad_password, "config.json");
    let image = format!("{}/app:v1", reg.host());
    let log = tmp.path().join("log.json");
    let out = Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .args(["-vv", "--log-format", "json"])
        .secret_path(&wrong)
        .digest_to(&log)
        .assert()
        .code(3)
        .stderr(contains(bad_password).not().and(contains("credentials")));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{bad_password}"));
    assert!(!stderr.contains(&encoded));
    assert!(!log.exists(), "no result file after a failed push");

    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .assert()
        .code(3)
        .stderr(contains("--secret-path"));
    assert_eq!(
        reg.request_count("PUT", "/manifests/"),
        0,
        "no tag was pushed"
    );
}

#[test]
fn tls_registry_works_with_ca_file_and_fails_clearly_without() {
    let reg = Registry::start_with(RegistryOptions {
        tls: true,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/tls/app:v1", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .assert()
        .code(8)
        .stderr(contains("--ca-file"));
    Run::push_bundle(&src)
        .image(&image)
        .arg("--ca-file")
        .arg(reg.ca_file().unwrap())
        .assert()
        .success();
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .arg("--insecure")
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
}

#[test]
fn a_system_without_ca_certificates_needs_them_only_for_tls() {
    let plain = Registry::start();
    let tls = Registry::start_with(RegistryOptions {
        tls: true,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    // No system roots: both places they are read from name nothing.
    let missing = tmp.path().join("no-certs");
    let without_roots = || {
        let mut cmd = Run::new();
        cmd.env("SSL_CERT_FILE", &missing)
            .env("SSL_CERT_DIR", &missing);
        cmd
    };
    // Plain HTTP needs no certificate at all.
    let image = format!("{}/plain/app:v1", plain.host());
    without_roots()
        .arg("--push-source-bundle")
        .arg(&src)
        .args(["--image", &image])
        .assert()
        .success();
    let work = tmp.path().join("plain-work");
    without_roots()
        .arg("--pull-source-bundle")
        .arg(&work)
        .args(["--image", &image])
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
    // TLS: the registry's CA from --ca-file is enough ...
    let image = format!("{}/tls/app:v1", tls.host());
    without_roots()
        .arg("--push-source-bundle")
        .arg(&src)
        .args(["--image", &image])
        .arg("--ca-file")
        .arg(tls.ca_file().unwrap())
        .assert()
        .success();
    // ... and without it the error says what to install or pass.
    without_roots()
        .arg("--pull-source-bundle")
        .arg(tmp.path().join("tls-work"))
        .args(["--image", &image, "--retries", "1"])
        .assert()
        .code(8)
        .stderr(contains("ca-certificates").and(contains("--ca-file")));
    assert!(!tmp.path().join("tls-work").exists());
}

#[test]
fn a_ca_file_without_a_certificate_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let not_pem = tmp.path().join("ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    Run::pull_bundle(tmp.path().join("work"))
        .image("127.0.0.1:1/app:v1")
        .arg("--ca-file")
        .arg(&not_pem)
        .assert()
        .code(2)
        .stderr(
            contains("holds no valid PEM certificate")
                .and(contains("ca.txt"))
                .and(contains(
                    "give it the registry's CA certificate in PEM form",
                )),
        );
}

#[test]
fn unreachable_registry_exits_8_after_bounded_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(tmp.path(), "src/a", b"a");
    let started = std::time::Instant::now();
    Run::push_bundle(tmp.path().join("src"))
        .image(format!("127.0.0.1:{port}/app:v1"))
        .args(["--retries", "2"])
        .assert()
        .code(8)
        .stderr(contains(format!("127.0.0.1:{port}")));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
