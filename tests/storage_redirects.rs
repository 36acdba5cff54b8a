//! Registries that keep blobs on other storage (S3, a CDN, a storage
//! account) answer a blob's `GET` with a redirect to a signed URL there.
//! ocistep follows it without the registry's secrets (its `Authorization`,
//! the docker config's `HttpHeaders`), never prints the signed URL, asks
//! the registry again when the storage refuses a URL (an expired
//! signature), names the storage and its error when it keeps refusing,
//! never answers the storage's challenge with the registry's credentials,
//! and verifies what the storage serves like any other download.
//!
//! The registry is CNCF distribution behind a fault-proxy persona that
//! turns each blob it serves into a redirect to a small storage server on
//! 127.0.0.2 (another host than the registry's 127.0.0.1).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use support::faults::storage::{Answer, BlobStorage, SIGNATURE};
use support::faults::FaultProxy;
use support::{Registry, RegistryOptions, Run};

const USER: &str = "storage-user";
const PASSWORD: &str = "st0rage-pass";
/// A header the docker config adds to every registry request.
const CONFIG_HEADER: (&str, &str) = ("X-Registry-Key", "hdr-secret-5");

/// A basic-auth registry behind the storage persona, with an artifact
/// pushed to it, and a docker config for it.
struct Setup {
    _reg: Registry,
    proxy: FaultProxy,
    storage: Arc<BlobStorage>,
    image: String,
    module: Vec<u8>,
    config_dir: PathBuf,
    tmp: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let reg = Registry::start_with(RegistryOptions::with_basic_auth(USER, PASSWORD));
        let storage = BlobStorage::start();
        let proxy = FaultProxy::storage_redirects(&reg.host(), storage.clone());
        let tmp = tempfile::tempdir().unwrap();
        let config_dir = tmp.path().join("docker");
        docker_config(&config_dir, &proxy.host());
        let module: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = tmp.path().join("app.wasm");
        std::fs::write(&file, &module).unwrap();
        let image = format!("{}/apps/app:v1", proxy.host());
        Run::push_artifact()
            .image(&image)
            .args(["--artifact-type", "application/vnd.example.app", "--file"])
            .arg(&file)
            .env("DOCKER_CONFIG", &config_dir)
            .assert()
            .success();
        Setup {
            _reg: reg,
            proxy,
            storage,
            image,
            module,
            config_dir,
            tmp,
        }
    }

    /// Pulls the artifact into a new directory with `extra`; returns the
    /// directory and the outcome.
    fn pull(&self, extra: &[&str]) -> (PathBuf, assert_cmd::assert::Assert) {
        let out = self
            .tmp
            .path()
            .join(format!("out-{}", self.storage.requests().len()));
        let run = Run::pull_artifact(&out)
            .image(&self.image)
            .args(extra)
            .env("DOCKER_CONFIG", &self.config_dir)
            .assert();
        (out, run)
    }

    /// The storage's requests for the module's blob.
    fn module_fetches(&self) -> usize {
        let digest = ocistep::oci::digest::Digest::of(&self.module);
        self.storage
            .requests()
            .iter()
            .filter(|(target, _)| target.contains(digest.as_str()))
            .count()
    }
}

fn docker_config(dir: &Path, host: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({
        "auths": { host: { "auth": auth } },
        "HttpHeaders": { CONFIG_HEADER.0: CONFIG_HEADER.1 },
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn stderr_of(run: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&run.get_output().stderr).into_owned()
}

#[test]
fn a_blob_on_other_storage_is_fetched_without_the_registrys_secrets() {
    let setup = Setup::start();

    let (out, run) = setup.pull(&[]);

    let run = run.success();
    assert_eq!(std::fs::read(out.join("app.wasm")).unwrap(), setup.module);
    assert_eq!(setup.module_fetches(), 1, "{:#?}", setup.storage.requests());
    for (target, headers) in setup.storage.requests() {
        for (name, value) in headers {
            assert!(
                !name.eq_ignore_ascii_case("Authorization")
                    && !name.eq_ignore_ascii_case(CONFIG_HEADER.0)
                    && !value.contains(CONFIG_HEADER.1),
                "the storage got the registry's {name}: {value} (GET {target})"
            );
        }
    }
    let registry_saw = |name: &str| {
        setup
            .proxy
            .header_values(name)
            .iter()
            .filter(|v| v.is_some())
            .count()
    };
    assert!(
        registry_saw("Authorization") > 0 && registry_saw(CONFIG_HEADER.0) > 0,
        "the registry itself gets both"
    );
    assert!(!stderr_of(&run).contains(SIGNATURE));
}

#[test]
fn an_expired_storage_url_is_asked_for_again_through_the_registry() {
    let setup = Setup::start();
    setup.storage.then(vec![Answer::Expired]);

    let (out, run) = setup.pull(&["--retries", "3"]);

    let run = run.success();
    assert_eq!(std::fs::read(out.join("app.wasm")).unwrap(), setup.module);
    assert_eq!(setup.module_fetches(), 2, "{:#?}", setup.storage.requests());
    let stderr = stderr_of(&run);
    assert!(
        stderr.contains("blob storage at 127.0.0.2") && stderr.contains("403"),
        "the retry names the storage and its answer: {stderr}"
    );
    assert!(!stderr.contains(SIGNATURE), "{stderr}");
}

#[test]
fn storage_that_keeps_refusing_ends_with_exit_8_naming_it_and_its_error() {
    let setup = Setup::start();
    setup.storage.then(vec![Answer::Expired; 10]);

    let (out, run) = setup.pull(&["--retries", "2"]);

    let stderr = stderr_of(&run.code(8));
    assert!(
        stderr.contains("blob storage at 127.0.0.2")
            && stderr.contains("403 Forbidden (AccessDenied: Request has expired)"),
        "the error names the storage and what it said: {stderr}"
    );
    assert!(
        !stderr.contains(SIGNATURE) && !stderr.contains("credentials"),
        "no signature, and no advice about the registry's credentials: {stderr}"
    );
    assert_eq!(setup.module_fetches(), 2);
    assert!(!out.join("app.wasm").exists());
}

#[test]
fn corrupt_bytes_from_storage_are_a_digest_mismatch() {
    let setup = Setup::start();
    setup.storage.then(vec![Answer::Corrupt; 10]);

    let (out, run) = setup.pull(&["--retries", "2"]);

    let stderr = stderr_of(&run.code(5));
    let digest = ocistep::oci::digest::Digest::of(&setup.module);
    assert!(
        stderr.contains(&format!("digest mismatch for blob {digest}")),
        "{stderr}"
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing is left in the target"
    );
}

#[test]
fn a_challenge_from_storage_is_never_answered_with_the_registrys_credentials() {
    let setup = Setup::start();
    let realm = TcpListener::bind("127.0.0.1:0").unwrap();
    realm.set_nonblocking(true).unwrap();
    let realm_url = format!("http://{}/token", realm.local_addr().unwrap());
    setup
        .storage
        .then(vec![Answer::Challenge { realm: realm_url }]);

    let (out, run) = setup.pull(&["--retries", "3"]);

    run.success();
    assert_eq!(std::fs::read(out.join("app.wasm")).unwrap(), setup.module);
    assert!(
        realm.accept().is_err(),
        "ocistep went to the realm the storage named"
    );
    assert_eq!(setup.module_fetches(), 2);
}
