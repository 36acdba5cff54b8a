//! Bundles are ordinary OCI content: skopeo, umoci and tar read what ocistep
//! pushes, and ocistep pulls what skopeo copies.

mod support;

use std::path::Path;
use std::process::Command;

use ocistep::oci::digest::Digest;
use support::tree::{pseudo_random, sample_tree, snapshot};
use support::{require_tool, run_ok, Registry, Run};

#[test]
fn skopeo_inspect_sees_an_oci_manifest_with_artifact_type() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(&tmp.path().join("src"));
    let image = format!("{}/app:v1-src", reg.host());
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .digest_to(tmp.path().join("d"))
        .assert()
        .success();
    let digest = std::fs::read_to_string(tmp.path().join("d")).unwrap();

    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        ocistep::oci::digest::Digest::of(raw.as_bytes()).to_string(),
        digest,
        "result digest is the digest of the stored bytes"
    );
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.ocistep.source-bundle.v1"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let inspect = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
}

#[test]
fn skopeo_copy_then_umoci_and_tar_unpack_the_bundle() {
    require_tool("skopeo");
    require_tool("umoci");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = format!("{}/app:v1-src", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .digest_to(tmp.path().join("d"))
        .assert()
        .success();

    let out = tmp.path().join("out");
    let layer = skopeo_copy_layer(&image, &out, &tmp.path().join("d"));

    // tar lists the layer blob like any tar.gz.
    let listing = run_ok(Command::new("tar").arg("-tzf").arg(&layer));
    assert!(
        listing.lines().any(|l| l == "scripts/build.sh"),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l == "empty/dir/"), "{listing}");

    // umoci unpacks it as a root filesystem.
    let rootfs = tmp.path().join("rootfs");
    umoci_unpack(&out, &rootfs);
    assert_eq!(snapshot(&src), snapshot(&rootfs));

    // The layout skopeo wrote is an ocistep source too.
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(format!("oci:{}:x", out.display()))
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
}

#[test]
fn skopeo_copies_a_layout_bundle_into_the_registry_and_ocistep_pulls_it() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("layout");
    Run::push_bundle(&src)
        .image(format!("oci:{}:v1", layout.display()))
        .digest_to(tmp.path().join("d"))
        .assert()
        .success();
    let image = format!("{}/copied:v1", reg.host());
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{image}"),
    ]));
    let work = tmp.path().join("work");
    Run::pull_bundle(&work)
        .image(&image)
        .digest_to(tmp.path().join("d2"))
        .assert()
        .success();
    assert_eq!(snapshot(&src), snapshot(&work));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("d")).unwrap(),
        std::fs::read_to_string(tmp.path().join("d2")).unwrap(),
        "skopeo keeps the manifest bytes"
    );
}

/// Copies `image` with skopeo into the OCI layout `out` (tag `x`) and
/// returns the path of its (only) layer blob there. `digest_file` holds the
/// manifest digest ocistep reported.
fn skopeo_copy_layer(image: &str, out: &Path, digest_file: &Path) -> std::path::PathBuf {
    run_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:x", out.display()),
    ]));
    let manifest_digest = std::fs::read_to_string(digest_file).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    out.join("blobs/sha256").join(&layer[7..])
}

/// Unpacks the layout `out` (tag `x`) with umoci into `rootfs`.
fn umoci_unpack(out: &Path, rootfs: &Path) {
    run_ok(
        Command::new("umoci")
            .args(["raw", "unpack", "--rootless", "--image"])
            .arg(format!("{}:x", out.display()))
            .arg(rootfs),
    );
}

/// Counts the gzip members of a layer ocistep wrote (each header records
/// the member's size) and how many of them hold stored, not deflated, data.
fn members(layer: &[u8]) -> (usize, usize) {
    let (mut at, mut count, mut stored) = (0, 0, 0);
    while at < layer.len() {
        assert_eq!(
            &layer[at..at + 4],
            &[0x1f, 0x8b, 8, 4],
            "member {count} at {at}"
        );
        assert_eq!(
            &layer[at + 12..at + 14],
            b"OS",
            "member {count} records its size"
        );
        let size = u32::from_le_bytes(layer[at + 16..at + 20].try_into().unwrap()) as usize;
        // The first deflate block's type: 00 is stored.
        if layer[at + 20] & 0b110 == 0 {
            stored += 1;
        }
        at += size;
        count += 1;
    }
    assert_eq!(at, layer.len(), "the members fill the layer exactly");
    (count, stored)
}

#[test]
fn a_layer_of_many_gzip_members_reads_everywhere() {
    require_tool("skopeo");
    require_tool("umoci");
    require_tool("python3");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    // Text that deflates well, then bytes that do not, then small files:
    // members of both kinds, and entries that straddle member boundaries.
    let text: String = (0..120_000)
        .map(|i| format!("line {i} of the log\n"))
        .collect();
    std::fs::write(src.join("log.txt"), &text).unwrap();
    let noise = pseudo_random(3 << 20, 7);
    std::fs::write(src.join("noise.bin"), &noise).unwrap();
    std::fs::create_dir(src.join("many")).unwrap();
    for i in 0..300 {
        std::fs::write(
            src.join(format!("many/{i}.txt")),
            format!("file {i}\n").repeat(i),
        )
        .unwrap();
    }
    let image = format!("{}/many:v1", reg.host());
    Run::push_bundle(&src)
        .image(&image)
        .digest_to(tmp.path().join("d"))
        .assert()
        .success();

    let out = tmp.path().join("out");
    let layer = skopeo_copy_layer(&image, &out, &tmp.path().join("d"));
    let (count, stored) = members(&std::fs::read(&layer).unwrap());
    assert!(
        count >= 6 && stored >= 3 && stored < count,
        "{count} members, {stored} stored"
    );

    // GNU tar (through gzip), Go (umoci), Python and ocistep read it all.
    let unpacked = tmp.path().join("tar");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&unpacked),
    );
    assert_eq!(snapshot(&src), snapshot(&unpacked));
    let rootfs = tmp.path().join("rootfs");
    umoci_unpack(&out, &rootfs);
    assert_eq!(snapshot(&src), snapshot(&rootfs));
    let python = run_ok(Command::new("python3").arg("-c").arg(
        "import sys, tarfile, hashlib\n\
         t = tarfile.open(sys.argv[1], 'r:gz')\n\
         print('sha256:' + hashlib.sha256(t.extractfile('noise.bin').read()).hexdigest(), len(t.getnames()))",
    ).arg(&layer));
    let expected = format!("{} {}", Digest::of(&noise), snapshot(&src).len());
    assert_eq!(python.trim(), expected);
    let work = tmp.path().join("work");
    Run::pull_bundle(&work).image(&image).assert().success();
    assert_eq!(snapshot(&src), snapshot(&work));
}
