//! Hostile bundles: every unsafe entry is refused with exit code 6 (digest
//! tampering with 5), the target stays exactly as it was, and nothing is
//! written outside it.

mod support;

use support::jail::Jail;

use std::process::Command;

use support::tree::{all_paths, gzip, layout_with_layer, raw_tar};
use support::{require_tool, Registry, Run};

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn refused(layer: Vec<u8>, extra: &[&str], expect_in_message: &str) {
    let layouts = tempfile::tempdir().unwrap();
    layout_with_layer(layouts.path(), "bad", &layer, GZ);
    let jail = Jail::new();
    let image = format!("oci:{}:bad", layouts.path().display());
    Run::pull_bundle(&jail.target)
        .image(&image)
        .args(extra)
        .assert()
        .code(6)
        .stderr(
            predicates::str::contains("unsafe archive")
                .and(predicates::str::contains(expect_in_message)),
        );
    jail.assert_untouched();
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn path_traversal_is_refused() {
    refused(
        gzip(&raw_tar(&[("../evil", b'0', "", b"x")])),
        &[],
        "../evil",
    );
    refused(
        gzip(&raw_tar(&[("ok/../../evil", b'0', "", b"x")])),
        &[],
        "evil",
    );
}

#[test]
fn absolute_names_are_refused() {
    let outside = std::env::temp_dir().join(format!("ocistep-abs-{}", std::process::id()));
    let name = outside.to_str().unwrap().to_string();
    refused(gzip(&raw_tar(&[(&name, b'0', "", b"x")])), &[], &name);
    assert!(!outside.exists());
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let abs = outside.path().to_str().unwrap().to_string();
    refused(
        gzip(&raw_tar(&[
            ("link", b'2', &abs, b""),
            ("link/pwned", b'0', "", b"x"),
        ])),
        &[],
        "link",
    );
    refused(
        gzip(&raw_tar(&[
            ("up", b'2', "..", b""),
            ("up/pwned", b'0', "", b"x"),
        ])),
        &[],
        "up",
    );
    refused(
        gzip(&raw_tar(&[
            ("d", b'5', "", b""),
            ("d/l", b'2', ".", b""),
            ("d/l/x", b'0', "", b"x"),
        ])),
        &[],
        "d/l",
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn escaping_symlinks_are_refused() {
    refused(
        gzip(&raw_tar(&[("esc", b'2', "../../etc/passwd", b"")])),
        &[],
        "esc",
    );
    refused(
        gzip(&raw_tar(&[("abs", b'2', "/etc/passwd", b"")])),
        &[],
        "abs",
    );
}

#[test]
fn hardlinks_to_outside_are_refused() {
    refused(gzip(&raw_tar(&[("h", b'1', "../outside", b"")])), &[], "h");
    refused(gzip(&raw_tar(&[("h", b'1', "/etc/passwd", b"")])), &[], "h");
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    refused(gzip(&raw_tar(&[("tty", b'3', "", b"")])), &[], "tty");
    refused(gzip(&raw_tar(&[("disk", b'4', "", b"")])), &[], "disk");
    refused(gzip(&raw_tar(&[("pipe", b'6', "", b"")])), &[], "pipe");
}

#[test]
fn a_gzip_bomb_stops_at_the_size_limit() {
    let zeros = vec![0u8; 64 << 20];
    let layer = gzip(&raw_tar(&[("bomb", b'0', "", &zeros)]));
    assert!(layer.len() < 1 << 20, "the bomb is small when compressed");
    refused(layer, &["--max-extract-size", "4M"], "--max-extract-size");
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, u8, &str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b'0', "", &b"x"[..]))
        .collect();
    refused(
        gzip(&raw_tar(&entries)),
        &["--max-entries", "10"],
        "--max-entries",
    );
}

#[test]
fn a_tampered_layer_is_a_digest_mismatch_and_leaves_nothing() {
    let layouts = tempfile::tempdir().unwrap();
    let layer = gzip(&raw_tar(&[("file", b'0', "", b"genuine content")]));
    layout_with_layer(layouts.path(), "t", &layer, GZ);
    let forged = gzip(&raw_tar(&[("file", b'0', "", b"forged! content")]));
    let blob = layouts
        .path()
        .join("blobs/sha256")
        .join(ocistep::oci::digest::Digest::of(&layer).hex());
    std::fs::write(&blob, &forged).unwrap();
    let jail = Jail::new();
    Run::pull_bundle(&jail.target)
        .image(format!("oci:{}:t", layouts.path().display()))
        .assert()
        .code(5)
        .stderr(predicates::str::contains("digest mismatch"));
    jail.assert_untouched();
}

#[test]
fn hostile_bundles_are_refused_from_a_registry_too() {
    require_tool("skopeo");
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    layout_with_layer(
        layouts.path(),
        "bad",
        &gzip(&raw_tar(&[
            ("ok", b'0', "", b"fine"),
            ("../evil", b'0', "", b"x"),
        ])),
        GZ,
    );
    let image = format!("{}/hostile:bad", reg.host());
    let status = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bad", layouts.path().display()))
        .arg(format!("docker://{image}"))
        .status()
        .unwrap();
    assert!(status.success());
    let jail = Jail::new();
    Run::pull_bundle(&jail.target)
        .image(&image)
        .assert()
        .code(6);
    jail.assert_untouched();
}

#[test]
fn a_registry_serving_other_bytes_is_caught() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    support::tree::write(
        tmp.path(),
        "src/file",
        &support::tree::pseudo_random(4096, 1),
    );
    let image = format!("{}/app:v1", reg.host());
    Run::push_bundle(tmp.path().join("src"))
        .image(&image)
        .assert()
        .success();
    // Corrupt the stored layer (the only gzip blob over 100 bytes) in the registry's storage.
    let mut corrupted = 0;
    for path in all_paths(&reg.storage_dir()) {
        if path.file_name().is_some_and(|n| n == "data")
            && std::fs::metadata(&path).unwrap().len() > 100
        {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let last = bytes.len() - 20;
                bytes[last] ^= 0xff;
                std::fs::write(&path, bytes).unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 1, "exactly the layer was corrupted");
    let jail = Jail::new();
    Run::pull_bundle(&jail.target)
        .image(&image)
        .assert()
        .code(5);
    jail.assert_untouched();
}
