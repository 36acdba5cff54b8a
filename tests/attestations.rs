//! Attestation manifests as buildx pushes them (each per-platform image an
//! index of the image and its attestation): `--assemble-index` keeps them
//! next to their image, `--append`/`--remove-platform` edit an index with
//! them, `--copy --platform` takes a platform with its attestation, and
//! skopeo copies every result with `--all`.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::assembly::*;
use support::buildx::{attestations, push_buildx_image, skopeo_copy_all, BuildxImage};
use support::{require_tool, Registry, Run};

fn two_builds(host: &str) -> (BuildxImage, BuildxImage) {
    require_tool("skopeo");
    require_tool("umoci");
    (
        push_buildx_image(host, "builds/amd64", "v1", "linux/amd64"),
        push_buildx_image(host, "builds/arm64", "v1", "linux/arm64"),
    )
}

/// Asserts that every attestation of `index` points at one of its images
/// and is `unknown/unknown`; returns the attested digests.
fn attested(index: &Value) -> BTreeSet<String> {
    let images = child_digests(index);
    attestations(index)
        .iter()
        .map(|a| {
            assert_eq!(a["platform"]["os"], "unknown", "{a:#}");
            assert_eq!(a["platform"]["architecture"], "unknown", "{a:#}");
            let of = a["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .expect("an attestation names its image")
                .to_string();
            assert!(images.contains(&of), "{of} is not in {index:#}");
            of
        })
        .collect()
}

#[test]
fn buildx_indexes_assemble_with_their_attestations() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd, arm) = two_builds(&host);
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));
    let target = format!("{host}/app:v1");
    Run::assemble_index()
        .image(&target)
        .platform_images([amd.reference.clone(), arm.reference.clone()])
        .args(["--require-platforms", "linux/amd64,linux/arm64"])
        .args(results.args())
        .output_ok();

    let (_, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(children(&index).len(), 4, "{index:#}");
    assert_eq!(
        attested(&index),
        BTreeSet::from([amd.image.clone(), arm.image.clone()])
    );
    let listed: BTreeSet<String> = attestations(&index)
        .iter()
        .map(|a| a["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, BTreeSet::from([amd.attestation, arm.attestation]));
    // Platform results name the two images only.
    let platforms = results.platforms();
    let names: BTreeSet<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["linux/amd64", "linux/arm64"]));
    // A client picks the image, never the attestation.
    assert_eq!(
        copy_for_platform(
            &target,
            &["--override-os", "linux", "--override-arch", "arm64"]
        ),
        arm.image
    );
    assert_eq!(
        skopeo_copy_all(&format!("docker://{target}")),
        results.digest()
    );

    // --drop-attestations leaves them out.
    let dropped = format!("{host}/app:v1-plain");
    Run::assemble_index()
        .image(&dropped)
        .platform_images([amd.reference.clone(), arm.reference.clone()])
        .arg("--drop-attestations")
        .output_ok();
    let (_, index) = fetch_index(&format!("docker://{dropped}"));
    assert_eq!(
        child_digests(&index),
        BTreeSet::from([amd.image, arm.image])
    );
    assert!(attestations(&index).is_empty());
}

#[test]
fn append_replaces_a_platform_with_its_attestation_and_remove_drops_one() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd, arm) = two_builds(&host);
    let target = format!("{host}/app:v1");
    Run::assemble_index()
        .image(&target)
        .platform_images([amd.reference.clone()])
        .args([
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
        ])
        .output_ok();
    // Appending arm64 keeps amd64, its attestation and the annotation.
    Run::assemble_index()
        .image(&target)
        .arg("--append")
        .platform_images([arm.reference.clone()])
        .output_ok();
    let (_, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(children(&index).len(), 4, "{index:#}");
    assert_eq!(
        index["annotations"]["org.opencontainers.image.source"],
        "https://example.com/app"
    );
    assert_eq!(
        attested(&index),
        BTreeSet::from([amd.image.clone(), arm.image.clone()])
    );

    // A new arm64 build replaces the old one and its attestation.
    let arm2 = push_buildx_image(&host, "builds/arm64", "v2", "linux/arm64");
    assert_ne!(arm2.image, arm.image);
    let tmp = tempfile::tempdir().unwrap();
    let results = ResultFiles::new(&tmp.path().join("results"));
    Run::assemble_index()
        .image(&target)
        .arg("--append")
        .platform_images([arm2.reference.clone()])
        .args(results.args())
        .output_ok();
    let (_, index) = fetch_index(&format!("docker://{target}"));
    let digests = child_digests(&index);
    assert_eq!(
        digests,
        BTreeSet::from([
            amd.image.clone(),
            amd.attestation.clone(),
            arm2.image.clone(),
            arm2.attestation.clone()
        ])
    );
    // Platform results cover the whole index.
    assert_eq!(results.platforms().len(), 2, "{:#?}", results.platforms());

    // --remove-platform drops amd64 with its attestation.
    Run::assemble_index()
        .image(&target)
        .args(["--remove-platform", "linux/amd64"])
        .output_ok();
    let (raw, index) = fetch_index(&format!("docker://{target}"));
    assert_eq!(
        child_digests(&index),
        BTreeSet::from([arm2.image.clone(), arm2.attestation.clone()])
    );
    assert_eq!(
        skopeo_copy_all(&format!("docker://{target}")),
        ocistep::oci::digest::Digest::of(&raw).to_string()
    );
}

#[test]
fn append_to_an_image_is_invalid_input_and_changes_nothing() {
    let reg = Registry::start();
    let host = reg.host();
    let (amd, arm) = two_builds(&host);
    let image_tag = format!("{host}/app:single");
    Run::copy(format!("{}@{}", amd.name, amd.image), &image_tag).output_ok();
    let before = support::images::inspect_raw(&format!("docker://{image_tag}"));
    let (code, err) = Run::assemble_index()
        .image(&image_tag)
        .arg("--append")
        .platform_images([arm.reference])
        .code_and_stderr();
    assert_eq!(code, EXIT_INVALID_INPUT, "{err}");
    assert!(
        err.contains("is an image") && err.contains("not an index"),
        "{err}"
    );
    assert_eq!(
        support::images::inspect_raw(&format!("docker://{image_tag}")),
        before
    );
}

#[test]
fn copy_platform_takes_that_platform_and_its_attestation() {
    let (reg, mirror) = (Registry::start(), Registry::start());
    let host = reg.host();
    let (amd, arm) = two_builds(&host);
    let index = format!("{host}/app:v1");
    Run::assemble_index()
        .image(&index)
        .platform_images([amd.reference.clone(), arm.reference.clone()])
        .output_ok();
    let dst = format!("{}/app:v1-arm64", mirror.host());
    let tmp = tempfile::tempdir().unwrap();
    let digest_file = tmp.path().join("digest");
    Run::copy(&index, &dst)
        .args(["--platform", "linux/arm64"])
        .digest_to(&digest_file)
        .output_ok();
    let (_, copied) = fetch_index(&format!("docker://{dst}"));
    assert_eq!(
        child_digests(&copied),
        BTreeSet::from([arm.image.clone(), arm.attestation.clone()])
    );
    assert_eq!(attested(&copied), BTreeSet::from([arm.image.clone()]));
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(skopeo_copy_all(&format!("docker://{dst}")), digest);

    // Two platforms into a layout, attestations dropped.
    let layout = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::copy(&index, &layout)
        .args(["--platform", "linux/arm64", "--platform", "linux/amd64"])
        .arg("--drop-attestations")
        .output_ok();
    let (_, copied) = fetch_index(&layout);
    assert_eq!(
        child_digests(&copied),
        BTreeSet::from([amd.image, arm.image])
    );

    // A platform the index lacks: exit 7, nothing at the destination.
    let missing = format!("{}/app:v1-s390x", mirror.host());
    let (code, err) = Run::copy(&index, &missing)
        .args(["--platform", "linux/s390x"])
        .code_and_stderr();
    assert_eq!(code, EXIT_PLATFORM_NOT_FOUND, "{err}");
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(!err.contains("unknown/unknown"), "{err}");
    assert_no_tag(&mirror.host(), "app", "v1-s390x");
}

#[test]
fn image_processing_keeps_attestations_on_their_changed_image() {
    use std::io::Read;
    let reg = Registry::start();
    let host = reg.host();
    let (built, _) = two_builds(&host);
    // image_processing.go's arguments for an image the strategy pushed.
    Run::with([
        "--annotation",
        "org.opencontainers.image.url=https://example.com",
    ])
    .args(["--label", "team=build", "--image-timestamp", "1700000000"])
    .args(["--image", &built.reference])
    .output_ok();
    let (_, index) = fetch_index(&format!("docker://{}", built.reference));
    let image = children(&index)
        .iter()
        .find(|c| c["platform"]["os"] == "linux")
        .expect("the image is still there");
    let new_image = image["digest"].as_str().unwrap();
    assert_ne!(new_image, built.image, "the image changed");
    // The attestation names the changed image, is otherwise as it was but
    // for the annotation, and its in-toto layer is untouched.
    assert_eq!(attested(&index), BTreeSet::from([new_image.to_string()]));
    let attestation = &attestations(&index)[0];
    let repo = built.name.split_once('/').unwrap().1;
    let fetch = |digest: &str, kind: &str| {
        let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
        let path = format!("/v2/{repo}/{kind}/{digest}");
        let got = support::http_request_with("GET", &host, &path, None, &accept).unwrap();
        assert_eq!(got.status, 200, "{kind} {digest}");
        got.body
    };
    let att: Value =
        serde_json::from_slice(&fetch(attestation["digest"].as_str().unwrap(), "manifests"))
            .unwrap();
    assert_eq!(
        att["annotations"]["org.opencontainers.image.url"],
        "https://example.com"
    );
    assert_eq!(att["layers"][0]["mediaType"], support::buildx::IN_TOTO);
    let att_config: Value =
        serde_json::from_slice(&fetch(att["config"]["digest"].as_str().unwrap(), "blobs")).unwrap();
    assert_eq!(
        att_config["config"],
        serde_json::json!({}),
        "no labels on an attestation"
    );
    assert!(
        att_config.get("created").is_none(),
        "no time on an attestation"
    );

    // The image: labelled, timed, and every file in its layer at that time.
    let manifest: Value = serde_json::from_slice(&fetch(new_image, "manifests")).unwrap();
    let config: Value = serde_json::from_slice(&fetch(
        manifest["config"]["digest"].as_str().unwrap(),
        "blobs",
    ))
    .unwrap();
    assert_eq!(config["config"]["Labels"]["team"], "build");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let layer = fetch(manifest["layers"][0]["digest"].as_str().unwrap(), "blobs");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        ocistep::oci::digest::Digest::of(&tar).as_str(),
        "the config names the re-timed layer"
    );
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
        names.push(entry.path().unwrap().display().to_string());
    }
    assert!(names.iter().any(|n| n.ends_with("platform")), "{names:?}");
}
