//! Transient registry faults, injected by a proxy in front of a real
//! registry: pushes and pulls retry them and still produce exactly what a
//! fault-free run does; permanent failures end with exit code 8 after
//! `--retries` attempts and change nothing; 4xx answers are not retried.
//! A bundle's layer goes out while it is packed (all of it into a new
//! repository or with `--stream-upload`; into an existing repository while
//! the registry keeps up, and none of the rest when the registry has it); a
//! stream that fails cancels its upload session and falls back to the usual
//! upload, and a layer given up while it streams cancels its session too.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ocistep::archive::staging::STAGING_PREFIX;
use ocistep::oci::digest::Digest;
use support::faults::{Fault, FaultProxy, Rule};
use support::tree::{all_paths, pseudo_random, sample_tree, snapshot, write};
use support::{http_request_with, run_ok, tool, Registry, RegistryOptions, Run};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes in this file carry a fixed source timestamp, so their digests
/// can be compared.
const STAMP: [&str; 2] = ["--source-timestamp", "1700000000"];

fn status(code: u16) -> Fault {
    Fault::Status {
        code,
        retry_after: None,
    }
}

/// The layer digest of the bundle at `repo:tag`, read from the registry.
fn layer_digest(reg: &Registry, repo: &str, tag: &str) -> Digest {
    let manifest = http_request_with(
        "GET",
        &reg.host(),
        &format!("/v2/{repo}/manifests/{tag}"),
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    Digest::parse(manifest["layers"][0]["digest"].as_str().unwrap()).unwrap()
}

/// Pushes the sample tree straight to the registry as `app:v1`; returns
/// the source directory.
fn pushed_sample(reg: &Registry, dir: &Path) -> PathBuf {
    let src = dir.join("src");
    sample_tree(&src);
    Run::push_bundle(&src)
        .image(format!("{}/app:v1", reg.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(dir.join("d"))
        .assert()
        .success();
    src
}

/// Pushes a one-file tree straight to the registry as `{repo}:base`, so the
/// repository exists.
fn existing_repository(reg: &Registry, dir: &Path, repo: &str) {
    let base = dir.join(format!("{repo}-base"));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("base.txt"), repo).unwrap();
    let digest = dir.join(format!("{repo}-base.digest"));
    Run::push_bundle(&base)
        .image(format!("{}/{repo}:base", reg.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest)
        .assert()
        .success();
}

/// Asserts that the request right after each one answered with an error
/// status repeats it (same method and target) and got through.
fn assert_status_faults_retried_as_is(proxy: &FaultProxy) {
    let hits = proxy.hits();
    for (i, (method, target, fault)) in hits.iter().enumerate() {
        if fault.as_ref().is_some_and(|f| f.starts_with("status ")) {
            let next = hits.get(i + 1);
            assert!(
                next.is_some_and(|(m, t, f)| m == method && t == target && f.is_none()),
                "request {i} ({method} {target}, {fault:?}) was not retried next: {hits:#?}"
            );
        }
    }
}

#[test]
fn push_retries_transient_faults_and_gives_the_same_digest() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![
            Rule::new(
                "HEAD",
                "/blobs/sha256:",
                &[1],
                Fault::Status {
                    code: 429,
                    retry_after: Some(1),
                },
            ),
            Rule::new("POST", "/blobs/uploads/", &[1], status(503)),
            Rule::new(
                "PUT",
                "/blobs/uploads/",
                &[1],
                Fault::ResetMidBody {
                    after_bytes: 64 * 1024,
                },
            ),
            Rule::new("PUT", "/manifests/", &[1], status(502)),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);

    // Packed first, then uploaded the usual way (HEAD, POST, PUT).
    let started = Instant::now();
    let run = Run::push_bundle(&src)
        .image(format!("{}/app:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(tmp.path().join("proxied"))
        .args(["--retries", "3", "--stream-upload=never"])
        .assert();
    let elapsed = started.elapsed();
    let output = run.get_output();
    assert!(
        output.status.success(),
        "push failed ({}): {}\nrequests: {:#?}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        proxy.hits()
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: the push took {elapsed:?}"
    );

    let digest = std::fs::read_to_string(tmp.path().join("proxied")).unwrap();

    Run::push_bundle(&src)
        .image(format!("{}/direct:v1", reg.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(tmp.path().join("direct"))
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("direct")).unwrap(),
        digest
    );
    let raw = run_ok(tool("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/app:v1", reg.host()),
    ]));
    assert_eq!(Digest::of(raw.as_bytes()).to_string(), digest);

    let layer = layer_digest(&reg, "app", "v1");
    let requests = labelled(&proxy, &layer);
    // Each fault is followed by one more attempt; an upload cut short
    // starts over from a new upload session.
    let expected = [
        ("HEAD layer", "status 429"),
        ("HEAD layer", ""),
        ("POST upload", "status 503"),
        ("POST upload", ""),
        ("PUT layer", "reset mid-body"),
        ("POST upload", ""),
        ("PUT layer", ""),
        ("HEAD config", ""),
        ("POST upload", ""),
        ("PUT config", ""),
        ("PUT manifest", "status 502"),
        ("PUT manifest", ""),
    ];
    assert_eq!(
        requests,
        expected.map(|(r, f)| (r.to_string(), f.to_string())),
        "requests: {:#?}",
        proxy.hits()
    );
    assert_status_faults_retried_as_is(&proxy);
}

#[test]
fn an_upload_cut_short_starts_over_in_a_new_session() {
    let reg = Registry::start();
    // The first blob PUT is the config's (200 bytes; it goes out before the
    // layer's closing PUT): the registry keeps the 50 bytes that got
    // through, so that upload session is spoilt.
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Rule::new(
            "PUT",
            "/blobs/uploads/",
            &[1],
            Fault::ResetMidBody { after_bytes: 50 },
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);

    let run = Run::push_bundle(&src)
        .image(format!("{}/app:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(tmp.path().join("digest"))
        .args(["--retries", "3"])
        .assert();
    let output = run.get_output();
    let hits = proxy.hits();
    assert!(
        output.status.success(),
        "push failed ({}): {}\nrequests: {hits:#?}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    let cut = hits.iter().position(|(_, _, f)| f.is_some()).unwrap();
    let session = |i: usize| hits[i].1.split('?').next().unwrap().to_string();
    assert_eq!(hits[cut + 1].0, "POST", "a new session next: {hits:#?}");
    assert_eq!(hits[cut + 2].0, "PUT", "{hits:#?}");
    assert_ne!(session(cut), session(cut + 2), "{hits:#?}");
}

#[test]
fn pull_retries_transient_faults_and_leaves_no_staging_behind() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_sample(&reg, tmp.path());
    let blob = format!("/blobs/{}", layer_digest(&reg, "app", "v1"));
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![
            Rule::new("GET", "/manifests/", &[1], status(500)),
            Rule::new("GET", "/manifests/", &[2], Fault::Stall { millis: 200 }),
            Rule::new(
                "GET",
                &blob,
                &[1],
                Fault::ResetMidBody {
                    after_bytes: 64 * 1024,
                },
            ),
            Rule::new(
                "GET",
                &blob,
                &[2],
                Fault::TruncateBody {
                    after_bytes: 300 * 1024,
                },
            ),
        ],
    );

    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(format!("{}/app:v1", proxy.host()))
        .args(["--retries", "3"])
        .assert()
        .success();

    assert_eq!(snapshot(&src), snapshot(&work));
    let leftovers: Vec<_> = all_paths(&work)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(STAGING_PREFIX))
        })
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    let labels: Vec<(String, String)> = proxy
        .hits()
        .into_iter()
        .map(|(method, target, fault)| {
            let what = if target.contains("/manifests/") {
                "manifest"
            } else {
                "layer"
            };
            (format!("{method} {what}"), fault.unwrap_or_default())
        })
        .collect();
    let expected = [
        ("GET manifest", "status 500"),
        ("GET manifest", "stall"),
        ("GET layer", "reset mid-body"),
        ("GET layer", "truncated body"),
        ("GET layer", ""),
    ];
    assert_eq!(
        labels,
        expected.map(|(r, f)| (r.to_string(), f.to_string())),
        "hits: {:#?}",
        proxy.hits()
    );
    assert!(proxy.hits().iter().all(|(_, t, _)| t.contains("/v2/app/")));
}

#[test]
fn pull_retries_a_manifest_cut_short() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_sample(&reg, tmp.path());
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![
            Rule::new(
                "GET",
                "/manifests/",
                &[1],
                Fault::TruncateBody { after_bytes: 100 },
            ),
            Rule::new(
                "GET",
                "/manifests/",
                &[2],
                Fault::ResetMidBody { after_bytes: 100 },
            ),
        ],
    );

    let work = tmp.path().join("work");
    let run = Run::pull_bundle(&work)
        .image(format!("{}/app:v1", proxy.host()))
        .args(["--retries", "3"])
        .assert();
    let output = run.get_output();
    assert!(
        output.status.success(),
        "pull failed ({}): {}\nrequests: {:#?}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        proxy.hits()
    );
    assert_eq!(
        proxy.count("GET", "/manifests/v1"),
        3,
        "{:#?}",
        proxy.hits()
    );
    assert_eq!(snapshot(&src), snapshot(&work));
}

#[test]
fn failing_transfers_are_attempted_as_often_as_retries_says() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_sample(&reg, tmp.path());
    let layer = format!("/blobs/{}", layer_digest(&reg, "app", "v1"));
    let cut = Fault::ResetMidBody {
        after_bytes: 64 * 1024,
    };
    existing_repository(&reg, tmp.path(), "other");
    let packed_first: &[&str] = &["--stream-upload=never"];
    let cases: [(&str, Rule, &str, &str, &[&str]); 5] = [
        (
            "pull, layer GET always 503",
            Rule::every(&layer, status(503)),
            "GET",
            "app",
            &[],
        ),
        (
            "push, upload POST always 503",
            Rule::every("/blobs/uploads/", status(503)),
            "POST",
            "other",
            packed_first,
        ),
        (
            "push, upload PUT always cut",
            Rule::new("PUT", "/blobs/uploads/", &[1, 2, 3, 4, 5, 6, 7, 8, 9], cut),
            "PUT",
            "other",
            packed_first,
        ),
        (
            "push into a new repository (streamed), upload POST always 503",
            Rule::every("/blobs/uploads/", status(503)),
            "POST",
            "fresh",
            &[],
        ),
        (
            "push into an existing repository (streamed), upload POST always 503",
            Rule::every("/blobs/uploads/", status(503)),
            "POST",
            "other",
            &[],
        ),
    ];
    let mut wrong = Vec::new();
    for (case, rule, method, repo, flags) in cases {
        let proxy = FaultProxy::start(&reg.host(), vec![rule]);
        let run = if case.starts_with("pull") {
            Run::pull_bundle(tmp.path().join("work"))
                .image(format!("{}/{repo}:v1", proxy.host()))
                .args(["--retries", "3"])
                .assert()
        } else {
            Run::push_bundle(&src)
                .image(format!("{}/{repo}:v1", proxy.host()))
                .args(STAMP)
                .arg("--result-file-image-digest")
                .arg(tmp.path().join("digest"))
                .args([&["--retries", "3"][..], flags].concat())
                .assert()
        };
        let code = run.get_output().status.code();
        let faulted = proxy
            .hits()
            .iter()
            .filter(|(m, _, fault)| m == method && fault.is_some())
            .count();
        if code != Some(8) || faulted != 3 {
            wrong.push(format!(
                "{case}: exit {code:?}, {faulted} {method} attempts: {:#?}",
                proxy.hits()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected exit 8 after exactly 3 attempts:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn push_to_a_registry_that_always_fails_gives_up_after_the_retries() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.host(), vec![Rule::every("/v2/", status(503))]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);

    let started = Instant::now();
    let digest_file = tmp.path().join("digest");
    Run::push_bundle(&src)
        .image(format!("{}/app:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest_file)
        .args(["--retries", "3"])
        .assert()
        .code(8);
    assert!(started.elapsed() < Duration::from_secs(30));

    // The first request (the tag list, which tells whether the repository
    // is new) as often as --retries says, and nothing after it.
    let hits = proxy.hits();
    assert_eq!(hits.len(), 3, "{hits:#?}");
    assert!(hits.iter().all(|hit| *hit == hits[0]), "{hits:#?}");
    assert_eq!(
        (hits[0].0.as_str(), hits[0].1.as_str()),
        ("GET", "/v2/app/tags/list?n=1")
    );
    assert!(!digest_file.exists(), "a failed run writes no result");
    let tag = http_request_with(
        "HEAD",
        &reg.host(),
        "/v2/app/manifests/v1",
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    assert_eq!(tag.status, 404, "no tag after a failed push");
}

#[test]
fn pull_from_a_registry_that_always_fails_gives_up_and_changes_nothing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    pushed_sample(&reg, tmp.path());
    let proxy = FaultProxy::start(&reg.host(), vec![Rule::every("/v2/", status(503))]);
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("keep"), "precious").unwrap();
    let before = snapshot(&work);

    let started = Instant::now();
    Run::pull_bundle(&work)
        .image(format!("{}/app:v1", proxy.host()))
        .args(["--retries", "3"])
        .assert()
        .code(8);
    assert!(started.elapsed() < Duration::from_secs(30));

    assert_eq!(proxy.count("GET", "/v2/app/manifests/v1"), 3);
    assert_eq!(proxy.hits().len(), 3, "{:#?}", proxy.hits());
    assert_eq!(snapshot(&work), before);
}

#[test]
fn pulling_a_missing_tag_is_not_retried() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    pushed_sample(&reg, tmp.path());
    let proxy = FaultProxy::start(&reg.host(), vec![]);

    let target = tmp.path().join("work");
    Run::pull_bundle(&target)
        .image(format!("{}/app:missing", proxy.host()))
        .assert()
        .code(4);
    assert_eq!(proxy.count("GET", "/manifests/missing"), 1);
    assert_eq!(proxy.hits().len(), 1, "{:#?}", proxy.hits());
    assert!(!target.exists());
}

#[test]
fn refused_access_is_not_retried() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.host(), vec![Rule::every("/blobs/", status(403))]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);

    let run = Run::push_bundle(&src)
        .image(format!("{}/app:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(tmp.path().join("d"))
        .assert()
        .code(3);
    // The repository is new, so the layer goes straight to an upload
    // session: that one refused request, after the tag list, ends the push.
    let hits = proxy.hits();
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 1, "{hits:#?}");
    assert_eq!(hits.len(), 2, "{hits:#?}");
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        stderr.contains("may push to"),
        "a push refused with 403 should ask for push access: {stderr}"
    );
}

#[test]
fn missing_credentials_are_not_retried() {
    let reg = Registry::start_with(RegistryOptions::with_basic_auth("alice", "s3cret"));
    let proxy = FaultProxy::start(&reg.host(), vec![]);
    let tmp = tempfile::tempdir().unwrap();

    let started = Instant::now();
    Run::pull_bundle(tmp.path().join("work"))
        .image(format!("{}/app:v1", proxy.host()))
        .assert()
        .code(3);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The request, and at most one more once the auth handshake found no
    // credentials to use; never the transient-fault retries.
    let manifest_gets = proxy.count("GET", "/manifests/v1");
    assert!(
        (1..=2).contains(&manifest_gets),
        "{manifest_gets} attempts: {:#?}",
        proxy.hits()
    );
    assert!(proxy
        .hits()
        .iter()
        .all(|(_, target, _)| target == "/v2/" || target == "/v2/app/manifests/v1"));
}

/// The proxy's requests as (`METHOD what`, fault): `what` is `layer` for
/// the layer (by digest), `manifest`, `upload` for opening, streaming and
/// cancelling an upload session, and `config` for the rest (the config
/// blob).
fn labelled(proxy: &FaultProxy, layer: &Digest) -> Vec<(String, String)> {
    proxy
        .hits()
        .into_iter()
        .map(|(method, target, fault)| {
            let what = if target.contains("/tags/list") {
                "tags"
            } else if target.contains(layer.hex()) {
                "layer"
            } else if target.contains("/manifests/") {
                "manifest"
            } else if method == "POST" || method == "PATCH" || method == "DELETE" {
                "upload"
            } else {
                "config"
            };
            (format!("{method} {what}"), fault.unwrap_or_default())
        })
        .collect()
}

/// The requests of a push into a new repository, as [`labelled`]: a
/// session, one PATCH with the bytes, the config (once the tar's digest is
/// known), a PUT naming the layer's digest (none of the layer's HEAD: its
/// digest is not known yet), the manifest.
const STREAMED_INTO_A_NEW_REPOSITORY: [&str; 8] = [
    "GET tags",
    "POST upload",
    "PATCH upload",
    "HEAD config",
    "POST upload",
    "PUT config",
    "PUT layer",
    "PUT manifest",
];

#[test]
fn a_push_streams_its_layer_while_packing_unless_told_not_to() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_sample(&reg, tmp.path());
    let layer = layer_digest(&reg, "app", "v1");
    let expected = std::fs::read_to_string(tmp.path().join("d")).unwrap();
    // (tag, flags, the requests); the same tree each time.
    let cases: [(&str, &[&str], &[&str]); 4] = [
        // A new repository cannot have the layer.
        ("streamed:v1", &[], &STREAMED_INTO_A_NEW_REPOSITORY),
        // The same tree into that repository, now existing: streamed while
        // packing, then a HEAD finds the layer, so the session is cancelled
        // rather than closed.
        (
            "streamed:v2",
            &[],
            &[
                "GET tags",
                "POST upload",
                "PATCH upload",
                "HEAD config",
                "HEAD layer",
                "DELETE upload",
                "PUT manifest",
            ],
        ),
        // --stream-upload (always) streams whatever the repository has.
        (
            "streamed:v3",
            &["--stream-upload"],
            &[
                "POST upload",
                "PATCH upload",
                "HEAD config",
                "PUT layer",
                "PUT manifest",
            ],
        ),
        // never: packed first, then the HEAD finds the layer.
        (
            "streamed:v4",
            &["--stream-upload=never"],
            &["HEAD layer", "HEAD config", "PUT manifest"],
        ),
    ];
    for (tag, flags, sequence) in cases {
        let proxy = FaultProxy::start(&reg.host(), vec![]);
        let digest_file = tmp.path().join(tag.replace(':', "-"));
        Run::push_bundle(&src)
            .image(format!("{}/{tag}", proxy.host()))
            .args(STAMP)
            .arg("--result-file-image-digest")
            .arg(&digest_file)
            .args(flags)
            .assert()
            .success();
        assert_eq!(
            std::fs::read_to_string(&digest_file).unwrap(),
            expected,
            "{tag}: the same bundle as a monolithic upload"
        );
        let requests: Vec<String> = labelled(&proxy, &layer)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(requests, sequence, "{tag}: {requests:#?}");
    }
    assert_eq!(
        reg.upload_data_left("streamed"),
        Vec::<PathBuf>::new(),
        "the session of the layer the registry had is cancelled"
    );

    // A changed tree into the existing repository: the HEAD finds no such
    // layer, so the closing PUT finishes the upload.
    write(&src, "added.txt", b"a change");
    let proxy = FaultProxy::start(&reg.host(), vec![]);
    let digest_file = tmp.path().join("changed");
    Run::push_bundle(&src)
        .image(format!("{}/streamed:v5", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest_file)
        .assert()
        .success();
    let changed = layer_digest(&reg, "streamed", "v5");
    assert_ne!(changed, layer);
    let requests: Vec<String> = labelled(&proxy, &changed)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        requests,
        [
            "GET tags",
            "POST upload",
            "PATCH upload",
            "HEAD config",
            "POST upload",
            "PUT config",
            "HEAD layer",
            "PUT layer",
            "PUT manifest",
        ],
        "{requests:#?}"
    );
    let out = tmp.path().join("out");
    Run::pull_bundle(&out)
        .image(format!("{}/streamed:v5", reg.host()))
        .assert()
        .success();
    assert_eq!(snapshot(&out), snapshot(&src));
}

/// The sample tree with `noise_bytes` of incompressible data added, at
/// DIR/src, and the file holding the digest of its bundle pushed into an
/// image layout, where nothing is streamed.
fn noisy_tree(dir: &Path, noise_bytes: usize, seed: u64) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    sample_tree(&src);
    write(&src, "noise.bin", &pseudo_random(noise_bytes, seed));
    let layout = dir.join("layout");
    let expected = dir.join("expected");
    Run::push_bundle(&src)
        .image(format!("oci:{}:v1", layout.display()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&expected)
        .assert()
        .success();
    (src, expected)
}

/// Pushes `src` through `proxy` to `repo:v1` and checks it gives the bundle
/// whose digest the file `expected` holds; returns the layer's digest and
/// size, and the body sizes of the PATCH requests and of the PUT requests
/// naming the layer (chunked bodies counted with their framing).
fn streamed_push(
    reg: &Registry,
    proxy: &FaultProxy,
    src: &Path,
    repo: &str,
    expected: &Path,
) -> (Digest, usize, Vec<usize>, Vec<usize>) {
    let digest_file = expected.with_extension(repo);
    Run::push_bundle(src)
        .image(format!("{}/{repo}:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest_file)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        std::fs::read_to_string(expected).unwrap(),
        "the same bundle as unstreamed"
    );
    let layer = layer_digest(reg, repo, "v1");
    let size = http_request_with(
        "HEAD",
        &reg.host(),
        &format!("/v2/{repo}/blobs/{layer}"),
        None,
        &[],
    )
    .unwrap()
    .header("Content-Length")
    .and_then(|v| v.parse::<usize>().ok())
    .unwrap();
    let bodies = proxy.bodies();
    let body_of = |method: &str, what: &dyn Fn(&str) -> bool| {
        bodies
            .iter()
            .filter(|(m, target, _)| m == method && what(target))
            .map(|(_, _, len)| *len)
            .collect::<Vec<usize>>()
    };
    let patch = body_of("PATCH", &|_| true);
    let put = body_of("PUT", &|target| target.contains(layer.hex()));
    assert_eq!((patch.len(), put.len()), (1, 1), "{bodies:#?}");
    (layer, size, patch, put)
}

#[test]
fn into_an_existing_repository_a_layer_streams_only_while_the_registry_keeps_up() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible, and more than the queue and the connection's buffers
    // hold while the registry reads nothing.
    let (src, expected) = noisy_tree(tmp.path(), 24 << 20, 11);
    existing_repository(&reg, tmp.path(), "slow");

    // The registry leaves the PATCH's body unread for 3 s: the push stops
    // waiting on it after a moment, ends the PATCH with what it queued, and
    // sends the rest with the closing PUT.
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Rule::new(
            "PATCH",
            "/blobs/uploads/",
            &[1],
            Fault::StallBeforeBody { millis: 3000 },
        )],
    );
    let (_, size, patch, put) = streamed_push(&reg, &proxy, &src, "slow", &expected);
    // Streaming all of it, the PATCH would carry 31/32 of the layer.
    assert!(
        patch[0] > 1 << 20 && put[0] > size / 4 && put[0] < size,
        "the PATCH ended early, the PUT carried the rest: PATCH {} bytes \
         (chunked), PUT {} bytes, layer {size} bytes",
        patch[0],
        put[0]
    );
}

#[test]
fn a_large_streamed_layer_sends_its_last_part_with_the_closing_put() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible, so well over 1 MiB has gone out when the PATCH ends.
    let (src, expected) = noisy_tree(tmp.path(), 3 << 20, 7);

    let proxy = FaultProxy::start(&reg.host(), vec![]);
    let (layer, size, patch, put) = streamed_push(&reg, &proxy, &src, "big", &expected);
    let requests: Vec<String> = labelled(&proxy, &layer)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(requests, STREAMED_INTO_A_NEW_REPOSITORY, "{requests:#?}");
    assert!(
        patch[0] > 1 << 20 && put[0] > 0 && put[0] < size - (1 << 20),
        "the PATCH carries most of the layer, the PUT the rest: \
         PATCH {} bytes (chunked), PUT {} bytes, layer {size} bytes",
        patch[0],
        put[0]
    );

    let out = tmp.path().join("out");
    Run::pull_bundle(&out)
        .image(format!("{}/big:v1", reg.host()))
        .assert()
        .success();
    assert_eq!(snapshot(&out), snapshot(&src));

    // A registry that refuses the closing PUT (with the rest of the layer)
    // gets the whole layer again the usual way.
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Rule::new("PUT", layer.hex(), &[1], status(400))],
    );
    let digest_file = tmp.path().join("refused");
    Run::push_bundle(&src)
        .image(format!("{}/refused:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest_file)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        std::fs::read_to_string(&expected).unwrap()
    );
    let requests: Vec<(String, String)> = labelled(&proxy, &layer);
    let refused = requests
        .iter()
        .position(|(_, fault)| !fault.is_empty())
        .expect("the closing PUT was refused");
    let around: Vec<&str> = requests[refused - 1..]
        .iter()
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(
        around,
        [
            "PUT config",
            "PUT layer",
            "DELETE upload",
            "HEAD layer",
            "POST upload",
            "PUT layer",
            "PUT manifest"
        ],
        "{requests:#?}"
    );
    assert_eq!(
        reg.upload_data_left("refused"),
        Vec::<PathBuf>::new(),
        "the refused session is cancelled, its data gone"
    );
}

#[test]
fn a_layer_given_up_while_it_streams_cancels_its_upload_session() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Text that takes the compressor a while, so the stream is under way
    // when packing reaches the last entry: a file the walk saw empty (as
    // /proc reports its files) that then has content, so packing fails.
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {} of {}\n", i * 7919 % 100_003, i % 97).into_bytes())
        .collect();
    write(&src, "a/text.txt", &text);
    std::os::unix::fs::symlink("/proc/self/status", src.join("zz-status")).unwrap();

    let proxy = FaultProxy::start(&reg.host(), vec![]);
    let digest_file = tmp.path().join("d");
    let run = Run::push_bundle(&src)
        .image(format!("{}/given-up:v1", proxy.host()))
        .args(STAMP)
        .arg("--result-file-image-digest")
        .arg(&digest_file)
        .arg("--dereference-symlinks")
        .assert()
        .code(9);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        stderr.contains("file zz-status changed while packing"),
        "{stderr}"
    );
    let hits = proxy.hits();
    let count = |method: &str| {
        hits.iter()
            .filter(|(m, target, _)| m == method && target.contains("/blobs/uploads/"))
            .count()
    };
    assert_eq!(
        (count("POST"), count("PATCH")),
        (1, 1),
        "streamed: {hits:#?}"
    );
    assert_eq!(count("DELETE"), 1, "the session is cancelled: {hits:#?}");
    assert!(
        hits.iter().all(|(method, _, _)| method != "PUT"),
        "no blob completed, no manifest: {hits:#?}"
    );
    assert!(!digest_file.exists(), "a failed run writes no result");
}

#[test]
fn a_stream_that_fails_falls_back_to_a_monolithic_upload() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = pushed_sample(&reg, tmp.path());
    let layer = layer_digest(&reg, "app", "v1");
    let cases = [
        (
            "cut",
            Fault::ResetMidBody {
                after_bytes: 64 * 1024,
            },
        ),
        ("stalled", Fault::Stall { millis: 600_000 }),
    ];
    for (name, fault) in cases {
        let proxy = FaultProxy::start(
            &reg.host(),
            vec![Rule::new("PATCH", "/blobs/uploads/", &[1], fault)],
        );
        let digest_file = tmp.path().join(name);
        let started = Instant::now();
        Run::push_bundle(&src)
            .image(format!("{}/{name}:v1", proxy.host()))
            .args(STAMP)
            .arg("--result-file-image-digest")
            .arg(&digest_file)
            .args(["--stream-upload", "--timeout", "2"])
            .assert()
            .success();
        assert!(started.elapsed() < Duration::from_secs(30), "{name}");
        assert_eq!(
            std::fs::read_to_string(&digest_file).unwrap(),
            std::fs::read_to_string(tmp.path().join("d")).unwrap(),
            "{name}"
        );
        let requests = labelled(&proxy, &layer);
        let after_patch: Vec<&str> = requests
            .iter()
            .skip_while(|(r, _)| r != "PATCH upload")
            .skip(1)
            .take(4)
            .map(|(r, _)| r.as_str())
            .collect();
        assert_eq!(
            after_patch,
            ["DELETE upload", "HEAD layer", "POST upload", "PUT layer"],
            "{name}: the broken session is cancelled, then the layer goes out again: {:#?}",
            proxy.hits()
        );
        // The stalled PATCH never reached the registry, which therefore
        // honours the DELETE and drops the session's data. After the cut PATCH it
        // refuses the DELETE ("blob upload invalid": the session's token
        // records offset 0, its data the bytes that got through), and only
        // the registry's purge removes that session.
        if name == "stalled" {
            assert_eq!(
                reg.upload_data_left(name),
                Vec::<PathBuf>::new(),
                "{name}: upload data left behind"
            );
        }
        assert_eq!(
            http_request_with(
                "HEAD",
                &reg.host(),
                &format!("/v2/{name}/manifests/v1"),
                None,
                &[("Accept", OCI_MANIFEST)],
            )
            .unwrap()
            .status,
            200,
            "{name}: tagged"
        );
    }
}
