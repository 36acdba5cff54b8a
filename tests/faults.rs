//! Transient registry faults, injected by a proxy in front of a real
//! registry: pushes and pulls retry them and still produce exactly what a
//! fault-free run does; permanent failures end with exit code 8 after
//! `--retries` attempts and change nothing; 4xx answers are not retried.

mod support;

use std::time::{Duration, Instant};

use ocistep::archive::staging::STAGING_PREFIX;
use ocistep::oci::digest::Digest;
use support::fault_runs::*;
use support::faults::{Fault, FaultProxy, Rule};
use support::tree::{all_paths, sample_tree, snapshot};
use support::{run_ok, tool, Registry, RegistryOptions, Run};

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
        .digest_to(tmp.path().join("proxied"))
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
        .digest_to(tmp.path().join("direct"))
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
        .digest_to(tmp.path().join("digest"))
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
                .digest_to(tmp.path().join("digest"))
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
        .digest_to(&digest_file)
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
    assert_eq!(
        tag_status(&reg, "app", "v1"),
        404,
        "no tag after a failed push"
    );
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
        .digest_to(tmp.path().join("d"))
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
