//! Where blobs live: with `--cache-dir`, every run remembers the registry
//! repositories it saw each blob in, and a later run that needs the blob in
//! another repository of that registry mounts it from there instead of
//! sending its bytes (`--copy`, `--push-image`, `--push-artifact`,
//! `--assemble-index`). A mount the registry declines (202, as ECR answers
//! when no manifest in the source repository uses the blob; or a refusal)
//! falls back to an upload that is counted in the log line, and leaves no
//! upload session open.

mod support;

use support::faults::{Fault, FaultProxy, Rule};
use support::images::{four_bundle_index, platform_layout, TestPlatform};
use support::{require_tool, run_ok, AccessLogEntry, Registry, Run};

/// The requests `reg` logged after the first `since`.
fn requests_after(reg: &Registry, since: usize) -> Vec<AccessLogEntry> {
    reg.requests().into_iter().skip(since).collect()
}

/// Requests that send blob bytes: a PATCH or PUT to an upload session.
fn blob_uploads(requests: &[AccessLogEntry]) -> Vec<&AccessLogEntry> {
    requests
        .iter()
        .filter(|r| (r.method == "PATCH" || r.method == "PUT") && r.uri.contains("/blobs/uploads/"))
        .collect()
}

/// Mount requests answered with `status`.
fn mounts(requests: &[AccessLogEntry], status: u16) -> usize {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.status == status)
        .count()
}

/// `skopeo inspect --raw` of `reference` (a plain-HTTP registry).
fn raw_manifest(reference: &str) -> String {
    let out = run_ok(support::tool("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    out
}

#[test]
fn a_copy_into_another_repository_mounts_what_the_cache_saw_there() {
    require_tool("skopeo");
    let (a, b) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let index = four_bundle_index(&a, &tmp.path().join("trees"));

    // The first copy into B sends every blob: eight (four configs, four
    // layers), and remembers where they now are.
    let first = Run::copy(&index, format!("{}/seed/app:v1", b.host()))
        .cache_dir(&cache)
        .output_ok();
    let log = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(log.contains("8 blobs copied"), "{log}");

    // The second, into a new repository of B, mounts all of them from
    // there: no blob byte goes to B again.
    let since = b.requests().len();
    let second = Run::copy(&index, format!("{}/promoted/app:v1", b.host()))
        .cache_dir(&cache)
        .output_ok();
    let log = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(log.contains("0 blobs copied (0 bytes), 8 mounted"), "{log}");
    let after = requests_after(&b, since);
    assert_eq!(blob_uploads(&after), Vec::<&AccessLogEntry>::new());
    assert_eq!(mounts(&after, 201), 8, "{after:#?}");
    assert!(
        after
            .iter()
            .all(|r| r.method != "GET" || !r.uri.contains("/blobs/")),
        "nothing is read back from B: {after:#?}"
    );
    // The copy is whole: skopeo copies it with every child and blob.
    assert_eq!(
        raw_manifest(&format!("{}/promoted/app:v1", b.host())),
        raw_manifest(&index)
    );
    let out = tmp.path().join("out");
    run_ok(support::tool("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/promoted/app:v1", b.host()),
        &format!("oci:{}:v1", out.display()),
    ]));

    // Without the cache, nothing is known: every blob is sent again.
    let since = b.requests().len();
    Run::copy(&index, format!("{}/uncached/app:v1", b.host()))
        .assert()
        .success();
    assert_eq!(
        blob_uploads(&requests_after(&b, since)).len(),
        8,
        "without --cache-dir every blob is uploaded"
    );
}

#[test]
fn pushes_and_assembly_mount_blobs_the_cache_saw_in_the_registry() {
    require_tool("umoci");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");

    // --push-image: the second push of one layout to another repository
    // mounts the layer and sends only what is new (nothing).
    let layout = tmp.path().join("layout");
    platform_layout(&layout, "v1", &TestPlatform::parse("linux/amd64"));
    let push = |repo: &str| {
        Run::push_image(&layout)
            .image(format!("{}/{repo}:v1", reg.host()))
            .cache_dir(&cache)
            .assert()
            .success();
    };
    push("images/one");
    let since = reg.requests().len();
    push("images/two");
    let after = requests_after(&reg, since);
    assert_eq!(blob_uploads(&after), Vec::<&AccessLogEntry>::new());
    assert_eq!(mounts(&after, 201), 2, "layer and config: {after:#?}");

    // --push-artifact: the same file into another repository.
    let file = tmp.path().join("module.wasm");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let artifact = |repo: &str| {
        Run::push_artifact()
            .image(format!("{}/{repo}:v1", reg.host()))
            .cache_dir(&cache)
            .args(["--file", &file.display().to_string()])
            .args(["--artifact-type", "application/vnd.example.module"])
            .assert()
            .success();
    };
    artifact("art/one");
    let since = reg.requests().len();
    artifact("art/two");
    let after = requests_after(&reg, since);
    assert_eq!(blob_uploads(&after), Vec::<&AccessLogEntry>::new());
    assert_eq!(mounts(&after, 201), 2, "file and empty config: {after:#?}");

    // --assemble-index from another registry: the second index, into a
    // new repository, mounts from the first instead of copying across.
    let other = Registry::start();
    let source = four_bundle_index(&other, &tmp.path().join("trees"));
    let entries: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            format!(
                "linux/{arch}={}",
                source.replace(":v1", &format!(":{arch}"))
            )
        })
        .collect();
    let assemble = |repo: &str| {
        Run::assemble_index()
            .image(format!("{}/{repo}:v1", reg.host()))
            .cache_dir(&cache)
            .platform_images(&entries)
            .assert()
            .success();
    };
    assemble("indexes/one");
    let since = reg.requests().len();
    assemble("indexes/two");
    let after = requests_after(&reg, since);
    assert_eq!(blob_uploads(&after), Vec::<&AccessLogEntry>::new());
    assert_eq!(
        mounts(&after, 201),
        4,
        "two configs, two layers: {after:#?}"
    );
}

/// Copies the image at `src` (on `reg`) to `dst` through a proxy in front
/// of `reg` that answers mounts with `fault`; returns the copy's log.
fn copy_with_declined_mounts(reg: &Registry, src: &str, dst: &str, fault: Fault) -> String {
    let proxy = FaultProxy::start(&reg.host(), vec![Rule::every("mount=", fault)]);
    let out = Run::copy(
        format!("{}/{src}", proxy.host()),
        format!("{}/{dst}", proxy.host()),
    )
    .output_ok();
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_declined_or_refused_mount_falls_back_to_an_upload() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = four_bundle_index(&reg, tmp.path());
    let src = index.split_once('/').unwrap().1;

    // ECR: 202 and an upload session instead of the mount.
    let log = copy_with_declined_mounts(&reg, src, "ecr/app:v1", Fault::DeclineMount);
    assert!(log.contains("8 blobs copied"), "{log}");
    assert!(log.contains("(8 mounts declined, copied instead)"), "{log}");
    // The proxy passed each mount on as a plain POST: the registry opened
    // a session for each, which ocistep cancelled.
    let cancelled = reg
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.uri.starts_with("/v2/ecr/app/blobs/uploads/"))
        .filter(|r| r.status == 204)
        .count();
    assert_eq!(cancelled, 8);
    assert!(
        reg.upload_data_left("ecr/app").is_empty(),
        "the sessions the declined mounts opened are cancelled"
    );
    assert_eq!(
        raw_manifest(&format!("{}/ecr/app:v1", reg.host())),
        raw_manifest(&index)
    );

    // A registry without cross-repository mounts (405).
    let refused = Fault::Status {
        code: 405,
        retry_after: None,
    };
    let log = copy_with_declined_mounts(&reg, src, "nomount/app:v1", refused);
    assert!(log.contains("(8 mounts declined, copied instead)"), "{log}");
    assert_eq!(
        raw_manifest(&format!("{}/nomount/app:v1", reg.host())),
        raw_manifest(&index)
    );
}

#[test]
fn a_stale_location_is_declined_and_the_blob_uploaded() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let tree = tmp.path().join("tree");
    support::tree::write(&tree, "f", b"stale location");
    // The cache learns that `gone/app` holds the layer and the config ...
    let pushed = Run::push_bundle(&tree)
        .image(format!("{}/gone/app:v1", reg.host()))
        .cache_dir(&cache)
        .digest();
    let layout = tmp.path().join("layout");
    let in_layout = Run::push_bundle(&tree)
        .image(format!("oci:{}:v1", layout.display()))
        .digest();
    assert_eq!(pushed, in_layout, "the bundle is the same wherever it goes");
    // ... which then loses them behind its back.
    let links = reg
        .storage_dir()
        .join("docker/registry/v2/repositories/gone/app/_layers");
    std::fs::remove_dir_all(&links).unwrap();

    let since = reg.requests().len();
    let out = Run::copy(
        format!("oci:{}:v1", layout.display()),
        format!("{}/fresh/app:v1", reg.host()),
    )
    .cache_dir(&cache)
    .output_ok();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(log.contains("2 blobs copied"), "{log}");
    assert!(log.contains("(2 mounts declined, copied instead)"), "{log}");
    let after = requests_after(&reg, since);
    assert_eq!(mounts(&after, 202), 2, "{after:#?}");
    assert_eq!(blob_uploads(&after).len(), 2, "{after:#?}");
    assert!(reg.upload_data_left("fresh/app").is_empty());
}
