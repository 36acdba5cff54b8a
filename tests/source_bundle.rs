//! Source bundles end to end against a real registry: round trips, results,
//! pulls by digest, prune, listing, blob reuse and layouts.

mod support;

use std::path::Path;

use support::tree::{sample_tree, snapshot};
use support::{Registry, Run};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn push_then_pull_round_trips_the_tree_byte_for_byte() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/team/app:v1-src", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());

    let digest = read(&tmp.path().join("digest"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "bare digest, no newline: {digest:?}"
    );
    assert_eq!(
        read(&tmp.path().join("ref")),
        format!("{}/team/app@{digest}", reg.host())
    );
    let size: u64 = read(&tmp.path().join("size")).parse().unwrap();
    assert!(
        size > 1 << 20,
        "size counts the 1 MiB incompressible file: {size}"
    );

    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .digest_to(tmp.path().join("pulled-digest"))
        .arg("--result-file-source-timestamp")
        .arg(tmp.path().join("ts"))
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
    assert_eq!(read(&tmp.path().join("pulled-digest")), digest);
    assert_eq!(read(&tmp.path().join("ts")), "1700000000");
    let mtime = std::fs::metadata(work.join("README.md"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_700_000_000
    );
}

#[test]
fn pull_by_digest_lists_entries_and_prunes() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/app:prune-me", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    let pinned = read(&tmp.path().join("ref"));

    let work = tmp.path().join("work");
    let out = Run::pull_bundle(&work)
        .image(&pinned)
        .args(["--show-listing", "--prune"])
        .assert()
        .success();
    let listing = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for expected in ["README.md", "scripts/build.sh", "main-link", "empty/dir"] {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/') == expected),
            "{expected} missing from listing:\n{listing}"
        );
    }
    assert_eq!(snapshot(&src), snapshot(&work));

    // The bundle is gone: pulling again by tag and by digest fails with "not found".
    for reference in [&image, &pinned] {
        Run::pull_bundle(tmp.path().join("again"))
            .image(reference)
            .assert()
            .code(4);
    }
    assert!(
        !tmp.path().join("again").exists(),
        "a failed pull must not leave the target behind"
    );
}

#[test]
fn second_push_of_an_unchanged_tree_completes_no_blob_upload() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/app:v1-src", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    let first = read(&tmp.path().join("digest"));
    let uploads_before = reg.request_count("POST", "/blobs/uploads/");
    assert_eq!(uploads_before, 2, "layer and config uploaded once each");

    // Touch every file: the digest stays, and only HEAD requests go out for blobs.
    for (rel, _) in snapshot(&src) {
        let p = src.join(&rel);
        if std::fs::symlink_metadata(&p).unwrap().is_file() {
            std::fs::File::options()
                .append(true)
                .open(&p)
                .unwrap()
                .set_modified(std::time::SystemTime::now())
                .unwrap();
        }
    }
    // By default the layer streams while it is packed; once its digest is
    // known, a HEAD finds it and the session is cancelled, not completed.
    let closed_before = reg.request_count("PUT", "/blobs/uploads/");
    let heads_before = reg.request_count("HEAD", "/blobs/sha256:");
    Run::push_bundle(&src)
        .image(format!("{}/app:v2-src", reg.host()))
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    assert_eq!(read(&tmp.path().join("digest")), first);
    assert_eq!(
        reg.request_count("PUT", "/blobs/uploads/"),
        closed_before,
        "no upload completed"
    );
    assert_eq!(reg.request_count("DELETE", "/blobs/uploads/"), 1);
    assert!(reg.request_count("HEAD", "/blobs/sha256:") >= heads_before + 2);

    // Packed first: HEAD requests only, no upload session at all.
    let uploads_before = reg.request_count("POST", "/blobs/uploads/");
    let heads_before = reg.request_count("HEAD", "/blobs/sha256:");
    Run::push_bundle(&src)
        .image(format!("{}/app:v3-src", reg.host()))
        .args(["--source-timestamp", "1700000000"])
        .arg("--stream-upload=never")
        .results_in(tmp.path());
    assert_eq!(read(&tmp.path().join("digest")), first);
    assert_eq!(
        reg.request_count("POST", "/blobs/uploads/"),
        uploads_before,
        "no new upload sessions"
    );
    assert_eq!(
        reg.request_count("HEAD", "/blobs/sha256:"),
        heads_before + 2
    );
}

#[test]
fn layout_round_trip_needs_no_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("layout");
    Run::push_bundle(&src)
        .image(format!("oci:{}:v1", layout.display()))
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    let digest = read(&tmp.path().join("digest"));
    assert_eq!(
        read(&tmp.path().join("ref")),
        format!("oci:{}@{digest}", layout.display())
    );
    assert!(layout.join("oci-layout").is_file());

    for image in [
        format!("oci:{}:v1", layout.display()),
        format!("oci:{}@{digest}", layout.display()),
    ] {
        let work = tmp.path().join(format!("work-{}", image.len()));
        Run::pull_bundle(&work).image(&image).assert().success();
        assert_eq!(snapshot(&src), snapshot(&work));
    }
}

#[test]
fn same_tree_gives_same_digest_in_layout_and_registry() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    Run::push_bundle(&src)
        .image(format!("oci:{}:x", tmp.path().join("layout").display()))
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    let layout_digest = read(&tmp.path().join("digest"));
    Run::push_bundle(&src)
        .image(format!("{}/app:x", reg.host()))
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());
    assert_eq!(read(&tmp.path().join("digest")), layout_digest);
}

#[test]
fn pull_into_a_directory_with_conflicting_entries_is_refused_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::push_bundle(&src)
        .image(&image)
        .args(["--source-timestamp", "1700000000"])
        .results_in(tmp.path());

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README.md"), "mine").unwrap();
    std::fs::write(work.join("unrelated"), "keep").unwrap();
    Run::pull_bundle(&work)
        .image(&image)
        .assert()
        .code(10)
        .stderr(
            predicates::str::contains("README.md").and(predicates::str::contains("--overwrite")),
        );
    assert_eq!(read(&work.join("README.md")), "mine");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        2,
        "nothing else was added"
    );

    Run::pull_bundle(&work)
        .image(&image)
        .arg("--overwrite")
        .assert()
        .success();
    assert_eq!(read(&work.join("README.md")), read(&src.join("README.md")));
    assert_eq!(read(&work.join("unrelated")), "keep");
}

use predicates::prelude::PredicateBooleanExt;
