//! Checks of the test harness itself against a real `docker-registry`:
//! plain, basic-auth and TLS registries, the access-log counters, and
//! interoperability with `skopeo`/`umoci`.

mod support;

use std::io::Write;
use std::process::Stdio;

use base64::Engine as _;
use support::{
    http_get, http_request, http_request_with, require_tool, run_ok, tool, umoci_image,
    AccessLogEntry, Registry, RegistryOptions, Run,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The manifest digest recorded for `tag` in an OCI layout's `index.json`.
fn layout_digest(layout: &std::path::Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("parse index.json");
    index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("tag {tag} not in {index}"))
        .to_string()
}

#[test]
fn plain_registry_serves_the_v2_api() {
    let registry = Registry::start();
    assert!(
        registry.host().starts_with("127.0.0.1:"),
        "{}",
        registry.host()
    );
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert_eq!(registry.ca_file(), None);
    assert_eq!(registry.docker_config_dir(), None);

    let response = http_get(&registry.host(), "/v2/", None).expect("GET /v2/");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("Docker-Distribution-Api-Version"),
        Some("registry/2.0")
    );

    // Readiness probes are not counted; our single request is.
    assert_eq!(
        registry.request_count("GET", "/v2/"),
        1,
        "{}",
        registry.access_log()
    );
    assert_eq!(registry.request_count("get", "/v2/"), 1);
    assert_eq!(registry.request_count("HEAD", "/v2/"), 0);

    let missing = http_request(
        "HEAD",
        &registry.host(),
        "/v2/nothing/manifests/latest",
        None,
    )
    .expect("HEAD");
    assert_eq!(missing.status, 404);
    let entries = registry.requests();
    assert_eq!(
        entries.last(),
        Some(&AccessLogEntry {
            method: "HEAD".into(),
            uri: "/v2/nothing/manifests/latest".into(),
            status: 404,
            user_agent: support::http::USER_AGENT.into(),
        })
    );
    assert!(registry.access_log().contains("msg=\"response completed\""));
}

#[test]
fn basic_auth_registry_requires_credentials() {
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("tester", "s3cret"));
    let host = registry.host();

    let anonymous = http_get(&host, "/v2/", None).expect("GET /v2/");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(
        anonymous.header("WWW-Authenticate"),
        Some("Basic realm=\"ocistep-test\"")
    );

    let wrong = http_get(&host, "/v2/", Some(("tester", "wrong"))).expect("GET /v2/");
    assert_eq!(wrong.status, 401);

    let authorized = http_get(&host, "/v2/", Some(("tester", "s3cret"))).expect("GET /v2/");
    assert_eq!(authorized.status, 200, "{authorized:?}");
    assert_eq!(
        authorized.header("Docker-Distribution-Api-Version"),
        Some("registry/2.0")
    );

    // Each request is counted once, whatever its outcome.
    let statuses: Vec<u16> = registry.requests().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 200], "{}", registry.access_log());
    assert_eq!(registry.request_count("GET", "/v2/"), 3);

    assert_eq!(
        registry.credentials(),
        Some(("tester".into(), "s3cret".into()))
    );
    let config_dir = registry.docker_config_dir().expect("docker config dir");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config_dir.join("config.json")).expect("read config.json"),
    )
    .unwrap();
    let auth = config["auths"][&host]["auth"]
        .as_str()
        .expect("auth entry for the registry");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    assert_eq!(decoded, b"tester:s3cret");
}

#[test]
fn tls_registry_is_verified_with_its_ca_file_by_curl() {
    require_tool("curl");
    let registry = Registry::start_with(RegistryOptions::with_tls());
    assert_eq!(registry.url(), format!("https://{}", registry.host()));
    let ca = registry.ca_file().expect("CA file");

    for url in [
        format!("{}/v2/", registry.url()),
        format!("https://localhost:{}/v2/", registry.port()),
    ] {
        let headers = run_ok(
            tool("curl")
                .args([
                    "--silent",
                    "--show-error",
                    "--fail",
                    "--noproxy",
                    "*",
                    "--dump-header",
                    "-",
                    "--output",
                    "/dev/null",
                ])
                .arg("--cacert")
                .arg(&ca)
                .arg(&url),
        );
        assert!(headers.starts_with("HTTP/"), "{headers}");
        assert!(
            headers.lines().next().unwrap().contains(" 200"),
            "{headers}"
        );
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("docker-distribution-api-version: registry/2.0"),
            "{headers}"
        );
    }

    // Without the CA the certificate is rejected (curl exit 60).
    let untrusted = tool("curl")
        .args(["--silent", "--noproxy", "*", "--output", "/dev/null"])
        .arg(format!("{}/v2/", registry.url()))
        .status()
        .expect("run curl");
    assert_eq!(untrusted.code(), Some(60));

    // Plain HTTP does not reach the registry API.
    let plain = http_get(&registry.host(), "/v2/", None).expect("plain GET");
    assert_eq!(plain.status, 400, "{plain:?}");
    assert_eq!(plain.header("Docker-Distribution-Api-Version"), None);

    assert_eq!(
        registry.request_count("GET", "/v2/"),
        2,
        "{}",
        registry.access_log()
    );
}

#[test]
fn tls_registry_is_verified_with_its_ca_file_by_openssl() {
    let registry = Registry::start_with(RegistryOptions::with_tls());
    let ca = registry.ca_file().expect("CA file");
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        registry.host()
    );

    let s_client = |verify_ca: bool| {
        let mut cmd = tool("openssl");
        cmd.args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-connect",
        ])
        .arg(registry.host());
        if verify_ca {
            cmd.arg("-CAfile").arg(&ca);
        } else {
            // An empty trust store: nothing is trusted.
            cmd.args(["-no-CAfile", "-no-CApath", "-no-CAstore"]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl s_client");
        // The request is written up front; the server answers once the
        // handshake completes and then closes the connection.
        let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
        child.wait_with_output().expect("wait for openssl s_client")
    };

    let verified = s_client(true);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        stdout.starts_with("HTTP/1.1 200 OK"),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        stdout.contains("Docker-Distribution-Api-Version: registry/2.0"),
        "{stdout}"
    );

    let unverified = s_client(false);
    assert!(!unverified.status.success());
    assert!(!String::from_utf8_lossy(&unverified.stdout).contains("HTTP/1.1 200"));
}

#[test]
fn skopeo_pushes_an_umoci_image_and_the_manifest_put_is_counted() {
    require_tool("skopeo");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path(), "t");
    let digest = layout_digest(&layout, "t");
    let reference = format!("docker://{}/harness/tiny:t", registry.host());

    run_ok(
        tool("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:t", layout.display()))
            .arg(&reference),
    );
    let inspected: serde_json::Value = serde_json::from_str(&run_ok(
        tool("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(&reference),
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], digest.as_str(), "{inspected}");
    assert_eq!(inspected["RepoTags"], serde_json::json!(["t"]));

    assert_eq!(
        registry.request_count("PUT", "/v2/harness/tiny/manifests/t"),
        1,
        "{}",
        registry.access_log()
    );
    assert!(registry.request_count("PUT", "/v2/harness/tiny/blobs/uploads/") >= 1);

    let manifest_path = "/v2/harness/tiny/manifests/t";
    // Distribution hides OCI manifests from clients that do not accept them.
    let plain_head = http_request("HEAD", &registry.host(), manifest_path, None).unwrap();
    assert_eq!(plain_head.status, 404);
    let head = http_request_with(
        "HEAD",
        &registry.host(),
        manifest_path,
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert!(registry
        .storage_dir()
        .join("docker/registry/v2/repositories/harness/tiny")
        .is_dir());
}

#[test]
fn skopeo_authenticates_with_the_generated_docker_config() {
    require_tool("skopeo");
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("pusher", "pw"));
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path(), "v1");
    let reference = format!("docker://{}/auth/tiny:v1", registry.host());
    let authfile = registry.docker_config_dir().unwrap().join("config.json");

    let anonymous = tool("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "push without credentials must fail"
    );

    run_ok(
        tool("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(&reference),
    );
    assert_eq!(
        registry.request_count("PUT", "/v2/auth/tiny/manifests/v1"),
        1,
        "{}",
        registry.access_log()
    );
}

#[test]
fn skopeo_trusts_the_tls_registry_through_its_ca() {
    require_tool("skopeo");
    let registry = Registry::start_with(RegistryOptions::with_tls());
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path(), "t");
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(registry.ca_file().unwrap(), certs.join("ca.crt")).unwrap();

    run_ok(
        tool("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci:{}:t", layout.display()))
            .arg(format!("docker://{}/tls/tiny:t", registry.host())),
    );
    assert_eq!(
        registry.request_count("PUT", "/v2/tls/tiny/manifests/t"),
        1,
        "{}",
        registry.access_log()
    );
}

#[test]
fn delete_can_be_disabled() {
    require_tool("skopeo");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path(), "t");
    let digest = layout_digest(&layout, "t");

    for (delete_enabled, expected) in [(true, 202), (false, 405)] {
        let registry = Registry::start_with(RegistryOptions {
            delete_enabled,
            ..RegistryOptions::default()
        });
        run_ok(
            tool("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:t", layout.display()))
                .arg(format!("docker://{}/del/tiny:t", registry.host())),
        );
        let path = format!("/v2/del/tiny/manifests/{digest}");
        let response = http_request("DELETE", &registry.host(), &path, None).unwrap();
        assert_eq!(
            response.status, expected,
            "delete_enabled={delete_enabled}: {response:?}"
        );
        assert_eq!(
            registry.request_count("DELETE", "/v2/del/tiny/manifests/"),
            1
        );
    }
}

#[test]
fn registries_run_side_by_side_and_stop_on_drop() {
    let registries: Vec<Registry> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(Registry::start)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = registries.iter().map(Registry::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);

    let storage = registries[0].storage_dir();
    let host = registries[0].host();
    assert!(storage.is_dir());
    drop(registries);
    assert!(!storage.exists(), "storage is removed on drop");
    assert!(
        http_get(&host, "/v2/", None).is_err(),
        "registry still answers after drop"
    );
}

#[test]
fn access_log_lines_parse() {
    let line = r#"127.0.0.1 - - [25/Nov/2026:20:39:04 +0000] "PUT /v2/repo/manifests/t HTTP/1.1" 201 0 "" "skopeo/1.9.3""#;
    assert_eq!(
        AccessLogEntry::parse(line),
        Some(AccessLogEntry {
            method: "PUT".into(),
            uri: "/v2/repo/manifests/t".into(),
            status: 201,
            user_agent: "skopeo/1.9.3".into(),
        })
    );
    let app_line = r#"time="2026-11-25T20:38:42Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/"#;
    assert_eq!(AccessLogEntry::parse(app_line), None);
    assert_eq!(
        AccessLogEntry::parse("2026/11/25 20:38:57 http: TLS handshake error"),
        None
    );
}

#[test]
fn missing_tools_fail_loudly_with_an_install_hint() {
    let panic =
        std::panic::catch_unwind(|| require_tool("surely-not-an-installed-tool")).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        message,
        "missing test dependency `surely-not-an-installed-tool`: install it with `apt-get install -y surely-not-an-installed-tool` (or run .ci/run)"
    );
    assert_eq!(
        support::install_hint("htpasswd"),
        "missing test dependency `htpasswd`: install it with `apt-get install -y apache2-utils` (or run .ci/run)"
    );
    for tool_name in [
        "docker-registry",
        "skopeo",
        "umoci",
        "buildah",
        "htpasswd",
        "openssl",
    ] {
        require_tool(tool_name);
    }
}

#[test]
fn run_is_isolated() {
    // Building the command resolves the binary Cargo built for these tests.
    let cmd = Run::new().command();
    assert_eq!(cmd.get_program(), support::ocistep_bin());
    assert!(support::ocistep_bin().is_file());
    let envs: std::collections::HashMap<_, _> = cmd.get_envs().collect();
    for var in support::SCRUBBED_ENV {
        assert_eq!(envs.get(std::ffi::OsStr::new(var)), Some(&None), "{var}");
    }
    let home = std::path::Path::new(envs[std::ffi::OsStr::new("HOME")].unwrap());
    assert!(home.is_dir());
    assert_eq!(std::fs::read_dir(home).unwrap().count(), 0);
    let home = support::fresh_home();
    assert!(home.is_dir());
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
}
