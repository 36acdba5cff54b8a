//! Streamed uploads through a fault-injecting proxy in front of a real
//! registry: a bundle's layer goes out while it is packed (all of it into a
//! new repository or with `--stream-upload`; into an existing repository
//! while the registry keeps up, and none of the rest when the registry has
//! it); a stream that fails cancels its upload session and falls back to
//! the usual upload, and a layer given up while it streams cancels its
//! session too.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ocistep::oci::digest::Digest;
use support::fault_runs::*;
use support::faults::{Fault, FaultProxy, Rule};
use support::tree::{pseudo_random, sample_tree, snapshot, write};
use support::{http_request_with, Registry, Run};

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
            .digest_to(&digest_file)
            .args(flags)
            .assert()
            .success();
        assert_eq!(
            std::fs::read_to_string(&digest_file).unwrap(),
            expected,
            "{tag}: the same bundle as a monolithic upload"
        );
        let requests = request_labels(&proxy, &layer);
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
        .digest_to(&digest_file)
        .assert()
        .success();
    let changed = layer_digest(&reg, "streamed", "v5");
    assert_ne!(changed, layer);
    let requests = request_labels(&proxy, &changed);
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
        .digest_to(&expected)
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
        .digest_to(&digest_file)
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
    let proxy = FaultProxy::stalling_first_patch(&reg.host(), 3000);
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
    let requests = request_labels(&proxy, &layer);
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
        .digest_to(&digest_file)
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
        .digest_to(&digest_file)
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
            .digest_to(&digest_file)
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
