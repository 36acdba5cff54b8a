//! Generic artifacts (`--push-artifact`, `--pull-artifact`) against a real
//! registry: media types and artifactType exactly as given (seen through
//! skopeo), the empty and custom configs, directory layers, ORAS's
//! conventions in both directions, hostile titles, the media type filter,
//! and a CLI binary pulled per platform from an index.

mod support;

use support::jail::Jail;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::{Descriptor, ImageManifest, ANNOTATION_TITLE, OCI_MANIFEST};
use ocistep::store::layout::Layout;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::{json, Value};
use support::images::inspect_raw;
use support::tree::{all_paths, gzip, sample_tree, set_mode, snapshot, write, Node};
use support::{require_tool, run_ok, tool, Registry, Run};

const WASM: &str = "application/vnd.wasm.content.layer.v1+wasm";
const WASM_DATA: &str = "application/vnd.wasm.content.layer.v1+data";
const SPIN_CONFIG: &str = "application/vnd.fermyon.spin.application.v1+config";
const CUP_TYPE: &str = "application/vnd.io.flipt.cup.controller+type";
const CUP_RESOURCE: &str = "application/vnd.io.flipt.cup.resource.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The manifest as the registry serves it, read by skopeo.
fn raw_manifest(image: &str) -> (Vec<u8>, Value) {
    let raw = inspect_raw(&format!("docker://{image}"));
    let value = serde_json::from_slice(&raw).unwrap();
    (raw, value)
}

fn arg(p: &Path, media_type: &str) -> String {
    if media_type.is_empty() {
        p.display().to_string()
    } else {
        format!("{}:{media_type}", p.display())
    }
}

/// A Spin-style app: a Wasm module, a static file and a directory of assets.
fn wasm_app(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    write(root, "app/spin_http.wasm", b"\0asm\x01\0\0\0module");
    write(root, "app/favicon.ico", b"icon");
    write(root, "app/static/index.html", b"<h1>hi</h1>\n");
    write(root, "app/static/css/site.css", b"h1 { color: red }\n");
    (
        root.join("app/spin_http.wasm"),
        root.join("app/favicon.ico"),
        root.join("app/static"),
    )
}

#[test]
fn round_trip_keeps_media_types_and_artifact_type_exactly() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (module, icon, assets) = wasm_app(tmp.path());
    let image = format!("{}/spin/app:v1", reg.host());
    let files = [
        "--file".to_string(),
        arg(&module, WASM),
        "--file".into(),
        arg(&icon, WASM_DATA),
        "--file".into(),
        assets.display().to_string(),
    ];
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.extend(["--artifact-type", SPIN_CONFIG]);
    args.extend([
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
    ]);
    let digest = Run::push_artifact().image(&image).args(&args).digest();

    let (raw, m) = raw_manifest(&image);
    assert_eq!(Digest::of(&raw).to_string(), digest);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], SPIN_CONFIG);
    assert_eq!(
        m["config"],
        json!({"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2})
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["mediaType"], WASM);
    assert_eq!(layers[0]["annotations"][ANNOTATION_TITLE], "spin_http.wasm");
    assert_eq!(layers[0]["annotations"]["dev.ocistep.file.mode"], "0644");
    assert_eq!(layers[1]["mediaType"], WASM_DATA);
    assert_eq!(layers[1]["annotations"][ANNOTATION_TITLE], "favicon.ico");
    assert_eq!(layers[2]["mediaType"], TAR_GZ);
    assert_eq!(layers[2]["annotations"][ANNOTATION_TITLE], "static");
    assert_eq!(
        layers[2]["annotations"]["io.deis.oras.content.unpack"],
        "true"
    );
    assert_eq!(
        m["annotations"],
        json!({"org.opencontainers.image.source": "https://example.com/app"})
    );

    // Same files (touched, copied elsewhere) give the same digest.
    let copy = tempfile::tempdir().unwrap();
    let (module2, icon2, assets2) = wasm_app(copy.path());
    let again = Run::push_artifact()
        .image(format!("{}/spin/app:v1-again", reg.host()))
        .args([
            "--file",
            &arg(&module2, WASM),
            "--file",
            &arg(&icon2, WASM_DATA),
            "--file",
            &assets2.display().to_string(),
            "--artifact-type",
            SPIN_CONFIG,
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
        ])
        .digest();
    assert_eq!(again, digest);

    let out = tmp.path().join("out");
    let result = tmp.path().join("result");
    Run::pull_artifact(&out)
        .image(&image)
        .digest_to(&result)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&result).unwrap(), digest);
    assert_eq!(
        std::fs::read(out.join("spin_http.wasm")).unwrap(),
        std::fs::read(&module).unwrap()
    );
    assert_eq!(std::fs::read(out.join("favicon.ico")).unwrap(), b"icon");
    assert_eq!(snapshot(&out.join("static")), snapshot(&assets));
    assert_eq!(snapshot(&out).len(), 6, "{:?}", snapshot(&out));
}

#[test]
fn empty_config_has_the_shape_oras_writes_and_needs_an_artifact_type() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "hello.txt", b"hello\n");
    let file = tmp.path().join("hello.txt");
    let image = format!("{}/oras/hello:v1", reg.host());

    Run::push_artifact()
        .image(&image)
        .arg("--file")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(contains("--artifact-type"));

    Run::push_artifact()
        .image(&image)
        .args([
            "--file",
            &arg(&file, "text/plain"),
            "--artifact-type",
            "application/vnd.example.hello",
        ])
        .digest();
    let (_, m) = raw_manifest(&image);
    // Exactly what `oras push --artifact-type … hello.txt:text/plain` writes
    // (less ORAS's creation-time annotation, which would break determinism).
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], "application/vnd.example.hello");
    assert_eq!(
        m["config"],
        json!({"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2})
    );
    assert_eq!(m["layers"][0]["mediaType"], "text/plain");
    assert_eq!(m["layers"][0]["size"], 6);
    assert_eq!(m["layers"][0]["digest"], Digest::of(b"hello\n").to_string());
    assert_eq!(m["layers"][0]["annotations"][ANNOTATION_TITLE], "hello.txt");
    let config = run_ok(tool("skopeo").args([
        "inspect",
        "--raw",
        "--config",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    assert_eq!(config, "{}");
}

#[test]
fn custom_config_is_pushed_as_given() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let lock = br#"{"spin_lock_version":0,"components":[]}"#;
    write(tmp.path(), "spin.lock", lock);
    write(tmp.path(), "m.wasm", b"\0asm");
    let image = format!("{}/spin/locked:v1", reg.host());

    Run::push_artifact()
        .image(&image)
        .arg("--file")
        .arg(tmp.path().join("m.wasm"))
        .arg("--config")
        .arg(tmp.path().join("spin.lock"))
        .assert()
        .code(2)
        .stderr(contains("needs a media type"));

    Run::push_artifact()
        .image(&image)
        .args([
            "--file",
            &arg(&tmp.path().join("m.wasm"), WASM),
            "--config",
            &arg(&tmp.path().join("spin.lock"), SPIN_CONFIG),
        ])
        .digest();
    let (_, m) = raw_manifest(&image);
    assert!(m.get("artifactType").is_none(), "{m}");
    assert_eq!(
        m["config"],
        json!({"mediaType": SPIN_CONFIG, "digest": Digest::of(lock).to_string(), "size": lock.len()})
    );
    let config = run_ok(tool("skopeo").args([
        "inspect",
        "--raw",
        "--config",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    assert_eq!(config.as_bytes(), lock);

    let out = tmp.path().join("out");
    Run::pull_artifact(&out).image(&image).assert().success();
    assert_eq!(std::fs::read(out.join("m.wasm")).unwrap(), b"\0asm");
    assert_eq!(all_paths(&out), vec![out.join("m.wasm")]);
}

#[test]
fn a_directory_layer_is_unpacked_with_modes_and_links() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    sample_tree(&src);
    let image = format!("{}/dirs/tree:v1", reg.host());
    Run::push_artifact()
        .image(&image)
        .args([
            "--file",
            &src.display().to_string(),
            "--artifact-type",
            "application/x-tree",
        ])
        .digest();
    let out = tmp.path().join("out");
    Run::pull_artifact(&out)
        .image(&image)
        .arg("--show-listing")
        .assert()
        .success()
        .stdout(contains("tree/scripts/build.sh\n").and(contains("tree/main-link\n")));
    assert_eq!(snapshot(&out.join("tree")), snapshot(&src));
    assert!(matches!(
        snapshot(&out)["tree/scripts/build.sh"],
        Node::File {
            executable: true,
            ..
        }
    ));
}

/// The tar ORAS writes for a directory pushed as `site`: every entry under
/// `site/`, the directory itself first.
fn oras_style_dir_layer() -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    let dir = |name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        (h, name.to_string())
    };
    for name in ["site/", "site/css/"] {
        let (mut h, name) = dir(name);
        builder.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    for (name, content) in [
        ("site/index.html", &b"<p>oras</p>"[..]),
        ("site/css/a.css", &b"p{}"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        h.set_cksum();
        builder.append_data(&mut h, name, content).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let tar_digest = Digest::of(&tar);
    (gzip(&tar), tar_digest)
}

struct FixtureLayer {
    media_type: &'static str,
    content: Vec<u8>,
    annotations: Vec<(&'static str, String)>,
}

impl FixtureLayer {
    fn titled(title: &str, content: &[u8]) -> Self {
        FixtureLayer {
            media_type: "application/octet-stream",
            content: content.to_vec(),
            annotations: vec![(ANNOTATION_TITLE, title.to_string())],
        }
    }
}

/// Stores an artifact built by hand (as ORAS or an attacker would write
/// it) in the layout at `dir` under `tag`; `config_data` adds ORAS's
/// inline `data` field to the empty config descriptor.
fn store_artifact(dir: &Path, tag: &str, layers: Vec<FixtureLayer>, config_data: bool) {
    let layout = Layout::open_or_create(dir).unwrap();
    layout.put_blob_bytes(&Digest::of(b"{}"), b"{}").unwrap();
    let mut descs = Vec::new();
    for l in layers {
        let d = Digest::of(&l.content);
        layout.put_blob_bytes(&d, &l.content).unwrap();
        let mut desc = Descriptor::new(l.media_type, &d, l.content.len() as u64);
        for (k, v) in l.annotations {
            desc.annotations.insert(k.to_string(), v);
        }
        descs.push(desc);
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        artifact_type: Some("application/vnd.example.test".to_string()),
        config: Descriptor::new(EMPTY, &Digest::of(b"{}"), 2),
        layers: descs,
        subject: None,
        annotations: BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            "2024-01-01T00:00:00Z".to_string(),
        )]),
    };
    let mut value: Value = serde_json::from_slice(&manifest.to_bytes()).unwrap();
    if config_data {
        value["config"]["data"] = json!("e30=");
    }
    let bytes = serde_json::to_vec(&value).unwrap();
    let digest = Digest::of(&bytes);
    layout.put_blob_bytes(&digest, &bytes).unwrap();
    layout
        .set_tag(
            tag,
            Descriptor::new(OCI_MANIFEST, &digest, bytes.len() as u64),
        )
        .unwrap();
}

#[test]
fn an_oras_style_artifact_pulls_from_a_registry() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layer, tar_digest) = oras_style_dir_layer();
    let layout = tmp.path().join("layout");
    store_artifact(
        &layout,
        "v1",
        vec![
            FixtureLayer::titled("controller.wasm", b"\0asm"),
            FixtureLayer {
                media_type: TAR_GZ,
                content: layer,
                annotations: vec![
                    (ANNOTATION_TITLE, "site".to_string()),
                    ("io.deis.oras.content.unpack", "true".to_string()),
                    ("io.deis.oras.content.digest", tar_digest.to_string()),
                ],
            },
            FixtureLayer {
                media_type: CUP_RESOURCE,
                content: b"{}".to_vec(),
                annotations: vec![],
            },
        ],
        true,
    );
    let image = format!("{}/oras/made:v1", reg.host());
    run_ok(tool("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{image}"),
    ]));
    let out = tmp.path().join("out");
    Run::pull_artifact(&out).image(&image).assert().success();
    assert_eq!(
        all_paths(&out).len(),
        5,
        "untitled layer skipped: {:?}",
        all_paths(&out)
    );
    assert_eq!(
        std::fs::read(out.join("controller.wasm")).unwrap(),
        b"\0asm"
    );
    assert_eq!(
        std::fs::read(out.join("site/index.html")).unwrap(),
        b"<p>oras</p>"
    );
    assert_eq!(std::fs::read(out.join("site/css/a.css")).unwrap(), b"p{}");
}

#[test]
fn a_pushed_directory_layer_has_oras_entries_and_content_digest() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "defs/flag.json", b"{\"kind\":\"Flag\"}");
    write(tmp.path(), "defs/segment.json", b"{\"kind\":\"Segment\"}");
    let layout = tmp.path().join("layout");
    Run::push_artifact()
        .image(format!("oci:{}:v1", layout.display()))
        .args([
            "--file",
            &tmp.path().join("defs").display().to_string(),
            "--artifact-type",
            CUP_TYPE,
        ])
        .digest();
    let l = Layout::open(&layout).unwrap();
    let desc = l.resolve(Some("v1"), None).unwrap();
    let m: ImageManifest = serde_json::from_slice(&l.read_manifest(&desc).unwrap().bytes).unwrap();
    let layer = &m.layers[0];
    let blob = std::fs::read(l.blob_path(&layer.parsed_digest().unwrap())).unwrap();
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        layer.annotations["io.deis.oras.content.digest"],
        Digest::of(&tar).to_string()
    );
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["defs/", "defs/flag.json", "defs/segment.json"]);
}

#[test]
fn hostile_titles_are_refused_before_anything_is_written() {
    let cases: &[(&[&str], &str)] = &[
        (&["good", "../x"], "`..`"),
        (&["good", "/abs"], "absolute"),
        (&["good", "a/../../x"], "`..`"),
        (&["good", "dup", "dup"], "two layers have the title"),
        (&["good", "a", "a/b"], "collide"),
        (&["good", "a\\b"], "backslash"),
        (&["good", ""], "empty"),
    ];
    for (titles, message) in cases {
        let layouts = tempfile::tempdir().unwrap();
        store_artifact(
            layouts.path(),
            "bad",
            titles
                .iter()
                .enumerate()
                .map(|(i, t)| FixtureLayer::titled(t, format!("layer {i}").as_bytes()))
                .collect(),
            false,
        );
        let jail = Jail::new();
        Run::pull_artifact(&jail.target)
            .image(format!("oci:{}:bad", layouts.path().display()))
            .assert()
            .code(6)
            .stderr(contains("unsafe archive").and(contains(*message)));
        jail.assert_untouched();
    }
}

#[test]
fn a_corrupt_layer_leaves_the_target_unchanged() {
    let layouts = tempfile::tempdir().unwrap();
    store_artifact(
        layouts.path(),
        "v1",
        vec![
            FixtureLayer::titled("first", b"fine"),
            FixtureLayer::titled("second", b"original"),
        ],
        false,
    );
    let blob = Layout::open(layouts.path())
        .unwrap()
        .blob_path(&Digest::of(b"original"));
    std::fs::write(&blob, b"tampered").unwrap();
    let jail = Jail::new();
    Run::pull_artifact(&jail.target)
        .image(format!("oci:{}:v1", layouts.path().display()))
        .assert()
        .code(5)
        .stderr(contains("digest mismatch"));
    jail.assert_untouched();

    // A directory layer whose tar does not match its content digest.
    let (layer, _) = oras_style_dir_layer();
    let layouts = tempfile::tempdir().unwrap();
    store_artifact(
        layouts.path(),
        "v1",
        vec![FixtureLayer {
            media_type: TAR_GZ,
            content: layer,
            annotations: vec![
                (ANNOTATION_TITLE, "site".to_string()),
                ("io.deis.oras.content.unpack", "true".to_string()),
                (
                    "io.deis.oras.content.digest",
                    Digest::of(b"other").to_string(),
                ),
            ],
        }],
        false,
    );
    Run::pull_artifact(&jail.target)
        .image(format!("oci:{}:v1", layouts.path().display()))
        .assert()
        .code(5)
        .stderr(contains("io.deis.oras.content.digest"));
    jail.assert_untouched();
}

#[test]
fn media_type_filter_picks_layers() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "controller.wasm", b"\0asm controller");
    write(tmp.path(), "flag.json", b"{\"kind\":\"Flag\"}");
    write(tmp.path(), "segment.json", b"{\"kind\":\"Segment\"}");
    let image = format!("{}/cup/flipt:v1", reg.host());
    Run::push_artifact()
        .image(&image)
        .args([
            "--artifact-type",
            CUP_TYPE,
            "--file",
            &arg(&tmp.path().join("controller.wasm"), WASM),
            "--file",
            &arg(&tmp.path().join("flag.json"), CUP_RESOURCE),
            "--file",
            &arg(&tmp.path().join("segment.json"), CUP_RESOURCE),
        ])
        .digest();
    let defs = tmp.path().join("defs");
    Run::pull_artifact(&defs)
        .image(&image)
        .args(["--media-type", CUP_RESOURCE])
        .assert()
        .success();
    assert_eq!(
        all_paths(&defs).len(),
        2,
        "only the resource definitions: {:?}",
        all_paths(&defs)
    );
    assert!(defs.join("flag.json").is_file() && defs.join("segment.json").is_file());

    let both = tmp.path().join("both");
    Run::pull_artifact(&both)
        .image(&image)
        .args(["--media-type", CUP_RESOURCE, "--media-type", WASM])
        .assert()
        .success();
    assert_eq!(all_paths(&both).len(), 3);

    let none = tmp.path().join("none");
    Run::pull_artifact(&none)
        .image(&image)
        .args(["--media-type", "text/plain"])
        .assert()
        .code(4)
        .stderr(contains(CUP_RESOURCE).and(contains(WASM)));
    assert!(!none.exists());
}

#[test]
fn existing_files_conflict_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "src/tool", b"new");
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::push_artifact()
        .image(&image)
        .args([
            "--file",
            &tmp.path().join("src/tool").display().to_string(),
            "--artifact-type",
            "application/x-tool",
        ])
        .digest();
    let out = tmp.path().join("out");
    write(&out, "tool", b"old");
    Run::pull_artifact(&out).image(&image).assert().code(10);
    assert_eq!(std::fs::read(out.join("tool")).unwrap(), b"old");
    Run::pull_artifact(&out)
        .image(&image)
        .arg("--overwrite")
        .assert()
        .success();
    assert_eq!(std::fs::read(out.join("tool")).unwrap(), b"new");
}

#[test]
fn a_cli_binary_is_pulled_for_each_platform_with_its_exec_bit() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        let dir = tmp.path().join(arch);
        write(&dir, "d8", format!("#!/bin/sh\necho {arch}\n").as_bytes());
        set_mode(&dir.join("d8"), 0o755);
        Run::push_artifact()
            .image(format!("{}/cli/d8:v1-linux-{arch}", reg.host()))
            .args([
                "--file",
                &arg(&dir.join("d8"), "application/vnd.example.cli.binary"),
                "--artifact-type",
                "application/vnd.example.cli.v1",
            ])
            .digest();
    }
    let index = format!("{}/cli/d8:v1", reg.host());
    Run::assemble_index()
        .image(&index)
        .arg("--platform-image")
        .arg(format!("linux/amd64={}/cli/d8:v1-linux-amd64", reg.host()))
        .arg("--platform-image")
        .arg(format!("linux-arm64={}/cli/d8:v1-linux-arm64", reg.host()))
        .assert()
        .success();

    for (platform, arch) in [
        ("linux/arm64", "arm64"),
        ("linux-arm64", "arm64"),
        ("linux/amd64", "amd64"),
    ] {
        let out = tmp
            .path()
            .join(format!("out-{}", platform.replace('/', "_")));
        Run::pull_artifact(&out)
            .image(&index)
            .args(["--platform", platform])
            .assert()
            .success();
        let bin = out.join("d8");
        assert_eq!(
            std::fs::read_to_string(&bin).unwrap(),
            format!("#!/bin/sh\necho {arch}\n"),
            "{platform}"
        );
        assert!(matches!(
            snapshot(&out)["d8"],
            Node::File {
                executable: true,
                ..
            }
        ));
        let ran = run_ok(&mut std::process::Command::new(&bin));
        assert_eq!(ran, format!("{arch}\n"));
    }

    let missing = tmp.path().join("missing");
    Run::pull_artifact(&missing)
        .image(&index)
        .args(["--platform", "windows/amd64"])
        .assert()
        .code(7)
        .stderr(
            contains("windows/amd64")
                .and(contains("linux/amd64"))
                .and(contains("linux/arm64")),
        );
    assert!(!missing.exists());
}

#[test]
fn pushes_refuse_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    write(tmp.path(), "a/x", b"1");
    write(tmp.path(), "b/x", b"2");
    Run::push_artifact()
        .image(&image)
        .args(["--artifact-type", "a/b", "--file"])
        .arg(tmp.path().join("a/x"))
        .arg("--file")
        .arg(tmp.path().join("b/x"))
        .assert()
        .code(2)
        .stderr(contains("would both be pulled as \"x\""));
    Run::push_artifact()
        .image(&image)
        .args(["--artifact-type", "a/b", "--file"])
        .arg(tmp.path().join("nope"))
        .assert()
        .code(2)
        .stderr(contains("does not exist"));
    Run::push_artifact()
        .image(&image)
        .args(["--artifact-type", "not-a-type", "--file"])
        .arg(tmp.path().join("a/x"))
        .assert()
        .code(2)
        .stderr(contains("invalid media type"));
    Run::push_artifact()
        .image(&image)
        .args(["--artifact-type", "a/b"])
        .assert()
        .code(2)
        .stderr(contains("--file"));
    Run::pull_artifact("out")
        .image(&image)
        .args(["--file", "x"])
        .assert()
        .code(2);
    assert!(!tmp.path().join("layout").exists());
    assert!(!Path::new("out").exists());
}

#[test]
fn file_layers_download_in_parallel_up_to_max_transfers() {
    use support::faults::{Fault, FaultProxy, Rule};
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..6 {
        let path = tmp.path().join(format!("part-{i}.bin"));
        std::fs::write(&path, format!("part {i}\n").repeat(1000 + i)).unwrap();
        files.push(path);
    }
    let mut args = vec!["--artifact-type", "application/vnd.example.parts"];
    let file_args: Vec<String> = files.iter().map(|f| arg(f, "")).collect();
    for f in &file_args {
        args.extend(["--file", f.as_str()]);
    }
    Run::push_artifact()
        .image(format!("{}/parts:v1", reg.host()))
        .args(&args)
        .digest();
    let in_flight = |extra: &[&str], name: &str| {
        let proxy = FaultProxy::slow_blobs(&reg.host());
        let dir = tmp.path().join(name);
        Run::pull_artifact(&dir)
            .image(format!("{}/parts:v1", proxy.host()))
            .args(extra)
            .assert()
            .success();
        for f in &files {
            assert_eq!(
                std::fs::read(dir.join(f.file_name().unwrap())).unwrap(),
                std::fs::read(f).unwrap()
            );
        }
        proxy.blobs_at_once(6)
    };
    assert_eq!(in_flight(&["--max-transfers", "1"], "one"), 1);
    assert_eq!(in_flight(&["--max-transfers", "3"], "three"), 3);
    let default = in_flight(&[], "default");
    assert!(
        (4..=6).contains(&default),
        "{default} file downloads at once with the default of 8"
    );

    // One part that never comes while the others are still downloading:
    // exit 8, and the target is left as it was.
    let failing = Digest::of(&std::fs::read(&files[2]).unwrap());
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![
            Rule::every(
                failing.hex(),
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
            ),
            Rule::every("/blobs/sha256:", Fault::Stall { millis: 300 }),
        ],
    );
    let jail = Jail::new();
    Run::pull_artifact(&jail.target)
        .image(format!("{}/parts:v1", proxy.host()))
        .args(["--retries", "2"])
        .assert()
        .code(8);
    jail.assert_untouched();
}
