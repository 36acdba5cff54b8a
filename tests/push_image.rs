//! `--push-image DIR`: OCI layouts, OCI archives and docker archives pushed
//! to a real registry (or a layout), with and without mutations, checked
//! with skopeo.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::ANNOTATION_REF_NAME;
use ocistep::store::layout::Layout;
use serde_json::Value;
use support::images::{inspect_raw, platform_layout, TestPlatform};
use support::{require_tool, run_ok, tool, Registry, Run};

const TIME: &str = "2024-01-02T03:04:05Z";
const TIME_SECS: &str = "1704164645";

/// An OCI layout made by umoci: one inserted file, one label. Returns the
/// layout and its manifest digest.
fn umoci_layout(dir: &Path) -> (PathBuf, Digest) {
    require_tool("umoci");
    let layout = dir.join("layout");
    let image = format!("{}:v1", layout.display());
    run_ok(tool("umoci").arg("init").arg("--layout").arg(&layout));
    run_ok(tool("umoci").args(["new", "--image", &image]));
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello from umoci\n").unwrap();
    run_ok(
        tool("umoci")
            .args(["insert", "--rootless", "--image", &image])
            .arg(&file)
            .arg("/hello.txt"),
    );
    run_ok(tool("umoci").args([
        "config",
        "--image",
        &image,
        "--config.label",
        "built.by=umoci",
    ]));
    let digest = tag_digest(&layout, "v1");
    (layout, digest)
}

/// The digest of the manifest `tag` names in a layout.
fn tag_digest(layout: &Path, tag: &str) -> Digest {
    let desc = Layout::open(layout)
        .unwrap()
        .resolve(Some(tag), None)
        .unwrap();
    desc.parsed_digest().unwrap()
}

/// `skopeo inspect --config --raw` of a `docker://` or `oci:` image.
fn inspect_config(image: &str) -> Value {
    let mut cmd = tool("skopeo");
    cmd.args(["inspect", "--config", "--raw"]);
    if image.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    serde_json::from_str(&run_ok(cmd.arg(image))).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn blob_uploads(reg: &Registry) -> usize {
    reg.request_count("POST", "/blobs/uploads/")
}

#[test]
fn umoci_layout_round_trips_with_its_own_digest() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, layout_digest) = umoci_layout(tmp.path());
    let image = format!("{}/app:v1", reg.host());

    let results = Run::push_image(&layout).image(&image).results();
    let raw = inspect_raw(&format!("docker://{image}"));
    assert_eq!(Digest::of(&raw), layout_digest, "bytes pushed untouched");
    assert_eq!(results.digest, layout_digest.as_str());
    assert_eq!(results.size, raw.len().to_string());
    assert_eq!(
        results.reference,
        format!("{}/app@{layout_digest}", reg.host())
    );
    assert_eq!(
        inspect_config(&format!("docker://{image}"))["config"]["Labels"]["built.by"],
        "umoci"
    );

    let out = tmp.path().join("out");
    run_ok(tool("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:x", out.display()),
    ]));
    assert_eq!(tag_digest(&out, "x"), layout_digest, "pulled back");

    let uploads = blob_uploads(&reg);
    assert!(uploads >= 2, "config and layer uploaded: {uploads}");
    let again = Run::push_image(&layout)
        .image(format!("{}/app:v2", reg.host()))
        .results();
    assert_eq!(again.digest, results.digest);
    assert_eq!(blob_uploads(&reg), uploads, "second push uploads nothing");
}

#[test]
fn mutations_reach_config_and_manifest() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, layout_digest) = umoci_layout(tmp.path());
    let image = format!("{}/app:mutated", reg.host());

    let results = Run::push_image(&layout)
        .image(&image)
        .args([
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
            "--label",
            "team=build",
            "--image-timestamp",
            TIME,
        ])
        .results();
    let raw = inspect_raw(&format!("docker://{image}"));
    assert_ne!(results.digest, layout_digest.as_str(), "mutated image");
    assert_eq!(results.digest, Digest::of(&raw).as_str());
    let manifest = json(&raw);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.com/app"
    );

    let config = inspect_config(&format!("docker://{image}"));
    assert_eq!(config["config"]["Labels"]["team"], "build");
    assert_eq!(config["config"]["Labels"]["built.by"], "umoci", "kept");
    assert_eq!(config["created"], TIME);
    let history = config["history"].as_array().unwrap();
    assert!(!history.is_empty());
    assert!(history.iter().all(|h| h["created"] == TIME), "{history:?}");
    assert_eq!(config["os"], "linux", "other fields kept");

    let original =
        json(&std::fs::read(layout.join("blobs/sha256").join(layout_digest.hex())).unwrap());
    assert_ne!(manifest["config"]["digest"], original["config"]["digest"]);
    // The layer is rewritten with every file at the image time (as
    // go-containerregistry's mutate.Time does), its media type kept, and
    // the config's diff_ids follow: umoci checks them as it unpacks.
    assert_ne!(
        manifest["layers"][0]["digest"],
        original["layers"][0]["digest"]
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        original["layers"][0]["mediaType"]
    );
    assert_ne!(config["rootfs"]["diff_ids"][0], Value::Null);
    let pulled = tmp.path().join("pulled");
    run_ok(support::tool("skopeo").args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:x", pulled.display()),
    ]));
    let bundle = tmp.path().join("bundle");
    run_ok(
        tool("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:x", pulled.display()))
            .arg(&bundle),
    );
    let hello = bundle.join("rootfs/hello.txt");
    assert_eq!(
        std::fs::read_to_string(&hello).unwrap(),
        "hello from umoci\n"
    );
    let mtime = std::fs::metadata(&hello).unwrap().modified().unwrap();
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        secs.to_string(),
        TIME_SECS,
        "the file carries the image time"
    );
}

#[test]
fn image_timestamp_file_matches_the_flag() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = umoci_layout(tmp.path());
    let ts_file = tmp.path().join("timestamp");
    std::fs::write(&ts_file, format!("{TIME_SECS}\n")).unwrap();

    let from_file = Run::push_image(&layout)
        .image(format!("{}/app:file", reg.host()))
        .args(["--image-timestamp-file", ts_file.to_str().unwrap()])
        .results();
    let from_flag = Run::push_image(&layout)
        .image(format!("{}/app:flag", reg.host()))
        .args(["--image-timestamp", TIME])
        .results();
    assert_eq!(from_file.digest, from_flag.digest, "same time, same image");
    let config = inspect_config(&format!("docker://{}/app:file", reg.host()));
    assert_eq!(config["created"], TIME);

    std::fs::write(&ts_file, "  \n").unwrap();
    let out = Run::push_image(&layout)
        .image(format!("{}/app:empty", reg.host()))
        .arg("--image-timestamp-file")
        .arg(&ts_file)
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
}

#[test]
fn oci_archives_push_plain_and_gzipped() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, layout_digest) = umoci_layout(tmp.path());
    for (name, flag) in [("img.tar", "-cf"), ("img.tar.gz", "-czf")] {
        let dir = tmp.path().join(format!("dir-{name}"));
        std::fs::create_dir(&dir).unwrap();
        run_ok(
            std::process::Command::new(require_tool("tar"))
                .arg(flag)
                .arg(dir.join(name))
                .arg("-C")
                .arg(&layout)
                .arg("."),
        );
        let image = format!("{}/archive:{}", reg.host(), name.replace('.', "-"));
        let results = Run::push_image(&dir).image(&image).results();
        assert_eq!(results.digest, layout_digest.as_str(), "{name}");
        let inspect: Value = serde_json::from_str(&run_ok(tool("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])))
        .unwrap();
        assert_eq!(inspect["Digest"], layout_digest.as_str(), "{name}");
        assert_eq!(inspect["Labels"]["built.by"], "umoci", "{name}");
    }
}

/// A layer tar holding one file.
fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A `docker save`-style archive: one uncompressed layer and one gzip
/// layer, a config with a label and the layers' diff ids. Returns the
/// tarball's bytes, the config bytes and the gzip layer.
fn docker_archive(manifest_json: Option<&str>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let plain = layer_tar("etc/first", b"first layer\n");
    let second = layer_tar("etc/second", b"second layer\n");
    let gzipped = gzip(&second);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"maintainer": "docker-archive-test"}, "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&plain).to_string(), Digest::of(&second).to_string()]},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "test"}]
    }))
    .unwrap();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = manifest_json.map(str::to_string).unwrap_or_else(|| {
        serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["example/app:v1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar.gz"]
        }])
        .to_string()
    });
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", manifest.as_bytes());
    add(&config_name, &config);
    add("aaa/layer.tar", &plain);
    add("bbb/layer.tar.gz", &gzipped);
    (b.into_inner().unwrap(), config, gzipped)
}

#[test]
fn docker_archive_becomes_a_docker_schema2_image() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (tarball, config, gzipped) = docker_archive(None);
    std::fs::write(tmp.path().join("image.tar"), &tarball).unwrap();
    let image = format!("{}/docker:v1", reg.host());

    let results = Run::push_image(tmp.path()).image(&image).results();
    let raw = inspect_raw(&format!("docker://{image}"));
    assert_eq!(results.digest, Digest::of(&raw).as_str());
    let manifest = json(&raw);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        manifest["config"]["digest"],
        Digest::of(&config).as_str(),
        "config kept byte for byte"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    assert_eq!(
        layers[1]["digest"],
        Digest::of(&gzipped).as_str(),
        "gzip layer kept as it is"
    );

    let pulled = inspect_config(&format!("docker://{image}"));
    assert_eq!(
        pulled["config"]["Labels"]["maintainer"],
        "docker-archive-test"
    );
    let inspect: Value = serde_json::from_str(&run_ok(tool("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ])))
    .unwrap();
    assert_eq!(inspect["Labels"]["maintainer"], "docker-archive-test");

    // The conversion is deterministic: the same archive gives the same digest.
    let again = Run::push_image(tmp.path())
        .image(format!("{}/docker:v2", reg.host()))
        .results();
    assert_eq!(again.digest, results.digest);
}

#[test]
fn docker_archive_naming_paths_outside_it_is_unsafe() {
    let tmp = tempfile::tempdir().unwrap();
    let (tarball, _, _) = docker_archive(Some(
        r#"[{"Config":"../../etc/passwd","RepoTags":null,"Layers":[]}]"#,
    ));
    std::fs::write(tmp.path().join("image.tar"), &tarball).unwrap();
    let layout = tmp.path().join("out");
    let (code, stderr) = Run::push_image(tmp.path())
        .image(format!("oci:{}:v1", layout.display()))
        .code_and_stderr();
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("../../etc/passwd"), "{stderr}");
}

#[test]
fn several_images_without_platforms_are_refused() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    platform_layout(&layout, "amd", &TestPlatform::parse("linux/amd64"));
    platform_layout(&layout, "arm", &TestPlatform::parse("linux/arm64"));

    let (code, stderr) = Run::push_image(&layout)
        .image(format!("{}/app:v1", reg.host()))
        .code_and_stderr();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("amd") && stderr.contains("arm"), "{stderr}");
    assert_eq!(reg.request_count("PUT", "/manifests/"), 0, "nothing pushed");
}

/// Gives every index.json entry of a layout the platform its tag names.
fn add_platforms(layout: &Path, platforms: &[(&str, &str, &str)]) {
    let path = layout.join("index.json");
    let mut index = json(&std::fs::read(&path).unwrap());
    for entry in index["manifests"].as_array_mut().unwrap() {
        let tag = entry["annotations"][ANNOTATION_REF_NAME]
            .as_str()
            .unwrap()
            .to_string();
        let (_, os, arch) = platforms.iter().find(|(t, _, _)| *t == tag).unwrap();
        entry["platform"] = serde_json::json!({"os": os, "architecture": arch});
    }
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn images_with_platforms_become_an_index() {
    require_tool("skopeo");
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let amd = platform_layout(&layout, "amd", &TestPlatform::parse("linux/amd64"));
    let arm = platform_layout(&layout, "arm", &TestPlatform::parse("linux/arm64"));
    add_platforms(
        &layout,
        &[("amd", "linux", "amd64"), ("arm", "linux", "arm64")],
    );

    let image = format!("{}/multi:v1", reg.host());
    let results = Run::push_image(&layout).image(&image).results();
    let raw = inspect_raw(&format!("docker://{image}"));
    assert_eq!(results.digest, Digest::of(&raw).as_str());
    let index = json(&raw);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let children: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        children,
        vec![
            ("amd64".to_string(), amd.digest.to_string()),
            ("arm64".to_string(), arm.digest.to_string())
        ],
        "children pushed untouched"
    );
    let arm_config: Value = serde_json::from_str(&run_ok(tool("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{image}"),
    ])))
    .unwrap();
    assert_eq!(arm_config["architecture"], "arm64");

    let annotated = format!("{}/multi:annotated", reg.host());
    Run::push_image(&layout)
        .image(&annotated)
        .args(["--annotation", "stage=release"])
        .results();
    let index = json(&inspect_raw(&format!("docker://{annotated}")));
    assert_eq!(index["annotations"]["stage"], "release");
    for child in index["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        assert_ne!(digest, amd.digest.as_str());
        assert_ne!(digest, arm.digest.as_str());
        let manifest = json(&inspect_raw(&format!(
            "docker://{}/multi@{digest}",
            reg.host()
        )));
        assert_eq!(manifest["annotations"]["stage"], "release", "{digest}");
    }
}

#[test]
fn directory_without_an_image_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("README.txt"), "not an image").unwrap();
    let target = format!("oci:{}:v1", tmp.path().join("out").display());

    let (code, stderr) = Run::push_image(tmp.path()).image(&target).code_and_stderr();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("neither an OCI image layout") && stderr.contains("tarball"),
        "{stderr}"
    );
    let (code, stderr) = Run::push_image(tmp.path().join("missing"))
        .image(&target)
        .code_and_stderr();
    assert_eq!(code, 2, "{stderr}");
    assert!(!tmp.path().join("out").exists(), "no target layout created");
}

#[test]
fn layout_to_layout() {
    require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (layout, layout_digest) = umoci_layout(tmp.path());
    let out = tmp.path().join("out");

    let results = Run::push_image(&layout)
        .image(format!("oci:{}:v1", out.display()))
        .results();
    assert_eq!(results.digest, layout_digest.as_str());
    assert_eq!(
        results.reference,
        format!("oci:{}@{layout_digest}", out.display())
    );
    let raw = inspect_raw(&format!("oci:{}:v1", out.display()));
    assert_eq!(Digest::of(&raw), layout_digest);

    let labelled = Run::push_image(&layout)
        .image(format!("oci:{}:labelled", out.display()))
        .args(["--label", "k=v"])
        .results();
    assert_eq!(tag_digest(&out, "labelled").as_str(), labelled.digest);
    assert_ne!(labelled.digest, results.digest);
    let config = inspect_config(&format!("oci:{}:labelled", out.display()));
    assert_eq!(config["config"]["Labels"]["k"], "v");
    assert_eq!(tag_digest(&out, "v1"), layout_digest, "first tag kept");
}
