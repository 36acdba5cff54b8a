//! Malformed references, platforms, manifests and indexes: every one ends
//! with an error exit code that says what is wrong, never with a panic
//! (101) and never with success; pulls leave the target untouched.
//!
//! Manifests and indexes are served from OCI layouts (written directly,
//! bypassing ocistep), and an enormous manifest from a real registry
//! (written straight into its storage, as no client pushes such a thing).

mod support;

use support::jail::Jail;

use std::path::PathBuf;
use std::time::Duration;

use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::{Descriptor, OCI_INDEX, OCI_MANIFEST};
use ocistep::oci::platform::Platform;
use ocistep::oci::reference::Target;
use ocistep::store::layout::Layout;
use serde_json::{json, Value};
use support::tree::{gzip, layout_with_layer, raw_tar};
use support::Run;

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Exit codes of the failures expected here.
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 4;
const PLATFORM_NOT_FOUND: i32 = 7;
const BAD_CONTENT: i32 = 11;
const MISSING_INPUTS: i32 = 12;

/// An OCI layout holding a genuine bundle (tag `good`), for variations of
/// its manifest to point at its config and layer.
struct Fixture {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    /// The bundle's manifest, as JSON.
    manifest: Value,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let layer = gzip(&raw_tar(&[("hello.txt", b'0', "", b"hello\n")]));
        let digest = layout_with_layer(&layout, "good", &layer, GZ);
        let bytes = std::fs::read(Layout::open(&layout).unwrap().blob_path(&digest)).unwrap();
        Fixture {
            _dir: dir,
            manifest: serde_json::from_slice(&bytes).unwrap(),
            layout,
        }
    }

    fn layout(&self) -> Layout {
        Layout::open(&self.layout).unwrap()
    }

    /// Stores `bytes` as a blob; returns its digest.
    fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.layout().put_blob_bytes(&digest, bytes).unwrap();
        digest
    }

    /// Stores `bytes` and tags them, described with `media_type` in
    /// index.json. Returns `oci:LAYOUT:tag`.
    fn tag_raw(&self, tag: &str, bytes: &[u8], media_type: &str) -> String {
        let digest = self.blob(bytes);
        self.layout()
            .set_tag(
                tag,
                Descriptor::new(media_type, &digest, bytes.len() as u64),
            )
            .unwrap();
        format!("oci:{}:{tag}", self.layout.display())
    }

    /// Tags a JSON document, described with its own `mediaType` (or the
    /// OCI manifest type when it has none).
    fn tag_json(&self, tag: &str, doc: &Value) -> String {
        let media_type = doc["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        self.tag_raw(tag, &serde_json::to_vec(doc).unwrap(), &media_type)
    }

    /// The bundle's manifest with `edit` applied.
    fn manifest_with(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
        let mut doc = self.manifest.clone();
        edit(doc.as_object_mut().unwrap());
        doc
    }
}

/// A descriptor of a stored JSON document for an index, with a platform.
fn child(fx: &Fixture, doc: &Value, platform: &str) -> Value {
    let bytes = serde_json::to_vec(doc).unwrap();
    let digest = fx.blob(&bytes);
    let p = Platform::parse(platform).unwrap();
    json!({
        "mediaType": doc["mediaType"].as_str().unwrap_or(OCI_MANIFEST),
        "digest": digest.to_string(),
        "size": bytes.len(),
        "platform": { "os": p.os, "architecture": p.architecture },
    })
}

fn index_of(children: Vec<Value>) -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children })
}

/// The bundle wrapped in `depth` indexes, each with one linux/amd64 child.
fn nested(fx: &Fixture, depth: usize) -> Value {
    let mut doc = fx.manifest.clone();
    for _ in 0..depth {
        doc = index_of(vec![child(fx, &doc, "linux/amd64")]);
    }
    doc
}

/// What one run must end with.
struct Expect {
    name: String,
    args: Vec<String>,
    code: i32,
    needle: String,
}

fn case(name: &str, args: &[&str], code: i32, needle: &str) -> Expect {
    Expect {
        name: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        needle: needle.to_string(),
    }
}

/// A pull of `image` into a fresh jail (checked to stay untouched).
fn pull_case(name: &str, image: &str, code: i32, needle: &str) -> Expect {
    case(
        name,
        &[
            "--pull-source-bundle",
            "@JAIL",
            "--image",
            image,
            "--platform",
            "linux/amd64",
        ],
        code,
        needle,
    )
}

/// Runs every case; fails listing all that did not end as expected.
fn assert_all(cases: Vec<Expect>) {
    let mut wrong = Vec::new();
    for c in &cases {
        let jail = Jail::new();
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.replace("@JAIL", jail.target.to_str().unwrap()))
            .collect();
        let out = Run::with(&args).timeout(Duration::from_secs(120)).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let mut problems = Vec::new();
        if code != Some(c.code) {
            problems.push(format!("exit {code:?}, want {}", c.code));
        }
        if !stderr.contains(&c.needle) {
            problems.push(format!("the message lacks {:?}", c.needle));
        }
        if stderr.contains("panicked") {
            problems.push("it panicked".to_string());
        }
        if !jail.untouched() {
            problems.push("the pull target changed".to_string());
        }
        if !problems.is_empty() {
            wrong.push(format!("{}: {}\n{stderr}", c.name, problems.join("; ")));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} malformed inputs did not fail as expected:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn malformed_references_and_platforms_are_usage_errors() {
    let fx = Fixture::new();
    let good = format!("oci:{}:good", fx.layout.display());
    let mut cases = Vec::new();
    for image in [
        "",
        "oci:",
        "oci::v1",
        "reg.example:5000/app:v1:v2",
        "reg.example/app@sha256:0123",
        "reg.example/app@md5:d41d8cd98f00b204e9800998ecf8427e",
        "reg.example//app",
        "reg.example/app:bad tag",
        "UPPER/Case:tag",
        "reg.example/App:v1",
        ":v1",
    ] {
        cases.push(pull_case(
            &format!("--image {image:?}"),
            image,
            USAGE,
            "reference",
        ));
    }
    for platform in ["", "linux/", "a/b/c/d", "linux", "/amd64", "linux//v7"] {
        let mut c = pull_case(
            &format!("--platform {platform:?}"),
            &good,
            USAGE,
            "platform",
        );
        let at = c.args.iter().position(|a| a == "linux/amd64").unwrap();
        c.args[at] = platform.to_string();
        if platform.is_empty() {
            // An empty --platform means "this machine's", as documented.
            continue;
        }
        cases.push(c);
    }
    assert_all(cases);
}

#[test]
fn malformed_manifests_in_a_layout_are_refused() {
    let fx = Fixture::new();
    let config = fx.manifest["config"].clone();
    let layer = fx.manifest["layers"][0].clone();
    let cases = vec![
        pull_case(
            "a manifest whose mediaType is a layer's",
            &fx.tag_json(
                "layer-type",
                &fx.manifest_with(|m| {
                    m.insert("mediaType".into(), json!(GZ));
                }),
            ),
            BAD_CONTENT,
            GZ,
        ),
        pull_case(
            "a Docker schema 1 manifest",
            &fx.tag_json(
                "schema1",
                &json!({
                    "schemaVersion": 1,
                    "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
                    "name": "app", "tag": "v1", "fsLayers": [], "history": [],
                }),
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "a tag naming the config blob",
            &fx.tag_raw(
                "config",
                &std::fs::read(
                    fx.layout()
                        .blob_path(&Digest::parse(config["digest"].as_str().unwrap()).unwrap()),
                )
                .unwrap(),
                "application/vnd.oci.image.config.v1+json",
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "a tag naming the gzip layer",
            &fx.tag_raw(
                "layer",
                &std::fs::read(
                    fx.layout()
                        .blob_path(&Digest::parse(layer["digest"].as_str().unwrap()).unwrap()),
                )
                .unwrap(),
                OCI_MANIFEST,
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "no layers field",
            &fx.tag_json(
                "no-layers",
                &fx.manifest_with(|m| {
                    m.remove("layers");
                }),
            ),
            BAD_CONTENT,
            "0 layers",
        ),
        pull_case(
            "no config field",
            &fx.tag_json(
                "no-config",
                &fx.manifest_with(|m| {
                    m.remove("config");
                }),
            ),
            BAD_CONTENT,
            "config",
        ),
        pull_case(
            "layers is an object",
            &fx.tag_json(
                "layers-object",
                &fx.manifest_with(|m| {
                    m.insert("layers".into(), json!({ "0": layer.clone() }));
                }),
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "layers is a string",
            &fx.tag_json(
                "layers-string",
                &fx.manifest_with(|m| {
                    m.insert("layers".into(), json!("source.tar.gz"));
                }),
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "two layers",
            &fx.tag_json(
                "two-layers",
                &fx.manifest_with(|m| {
                    m.insert("layers".into(), json!([layer.clone(), layer.clone()]));
                }),
            ),
            BAD_CONTENT,
            "2 layers",
        ),
        pull_case(
            "a layer of an unknown media type",
            &fx.tag_json(
                "zstd",
                &fx.manifest_with(|m| {
                    let mut l = layer.clone();
                    l["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+zstd");
                    m.insert("layers".into(), json!([l]));
                }),
            ),
            BAD_CONTENT,
            "tar+zstd",
        ),
        pull_case(
            "a layer with a malformed digest",
            &fx.tag_json(
                "bad-digest",
                &fx.manifest_with(|m| {
                    let mut l = layer.clone();
                    l["digest"] = json!("sha256:not-hex");
                    m.insert("layers".into(), json!([l]));
                }),
            ),
            BAD_CONTENT,
            "sha256:not-hex",
        ),
        pull_case(
            "a negative layer size",
            &fx.tag_json(
                "negative-size",
                &fx.manifest_with(|m| {
                    let mut l = layer.clone();
                    l["size"] = json!(-1);
                    m.insert("layers".into(), json!([l]));
                }),
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "no schemaVersion",
            &fx.tag_json(
                "no-schema",
                &fx.manifest_with(|m| {
                    m.remove("schemaVersion");
                }),
            ),
            BAD_CONTENT,
            "schemaVersion",
        ),
        pull_case(
            "not JSON",
            &fx.tag_raw("not-json", b"<html>502 Bad Gateway</html>", OCI_MANIFEST),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "an empty document",
            &fx.tag_raw("empty", b"", OCI_MANIFEST),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "a JSON array",
            &fx.tag_raw("array", b"[1,2,3]", OCI_MANIFEST),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
    ];
    assert_all(cases);
}

/// A manifest is a JSON object. serde also reads a struct from an array of
/// its fields in order, so `[2, mediaType, artifactType, config, layers,
/// annotations]` would pass as the bundle's manifest, though no registry or
/// other tool takes it for one.
#[test]
fn manifests_that_are_not_json_objects_are_refused() {
    let fx = Fixture::new();
    let m = &fx.manifest;
    let as_array = json!([
        m["schemaVersion"],
        m["mediaType"],
        m["artifactType"],
        m["config"],
        m["layers"],
        m["annotations"]
    ]);
    let index_as_array = json!([[child(&fx, m, "linux/amd64")]]);
    assert_all(vec![
        pull_case(
            "the bundle manifest as an array of its fields",
            &fx.tag_raw(
                "array",
                &serde_json::to_vec(&as_array).unwrap(),
                OCI_MANIFEST,
            ),
            BAD_CONTENT,
            "not a valid image manifest",
        ),
        pull_case(
            "an index as an array of its fields",
            &fx.tag_raw(
                "index-array",
                &serde_json::to_vec(&index_as_array).unwrap(),
                OCI_INDEX,
            ),
            BAD_CONTENT,
            "not valid",
        ),
    ]);
}

/// A document `mediaType` of `""` is no media type: like an empty
/// `Content-Type`, it must not become the manifest's media type (an index
/// with `"mediaType": ""` would then be read as an image manifest).
#[test]
fn an_empty_document_media_type_is_no_media_type() {
    let fx = Fixture::new();
    let empty = ocistep::oci::manifest::FetchedManifest::new(
        serde_json::to_vec(&fx.manifest_with(|m| {
            m.insert("mediaType".into(), json!(""));
        }))
        .unwrap(),
        Some("application/json".into()),
    );
    assert_eq!(empty.media_type, OCI_MANIFEST);
    let index = ocistep::oci::manifest::FetchedManifest::new(
        serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": "", "manifests": [] }))
            .unwrap(),
        None,
    );
    assert!(
        index.is_index(),
        "an index with an empty mediaType was taken for a {:?}",
        index.media_type
    );
    let probe = ocistep::oci::manifest::FetchedManifest::new(br#"["", 5]"#.to_vec(), None);
    assert!(
        !probe.media_type.is_empty(),
        "an array gave the media type \"\""
    );
}

#[test]
fn malformed_indexes_in_a_layout_are_refused() {
    let fx = Fixture::new();
    let missing = Digest::of(b"a manifest nobody stored");
    let index_with = |children: Value| json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children });
    let cases = vec![
        pull_case("an index whose child is missing", &fx.tag_json(
                "missing-child",
                &index_with(json!([{
                    "mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 100,
                    "platform": { "os": "linux", "architecture": "amd64" },
                }])),
            ), NOT_FOUND, missing.as_str()),
        pull_case("an index whose child has a malformed digest", &fx.tag_json(
                "bad-child-digest",
                &index_with(json!([{
                    "mediaType": OCI_MANIFEST, "digest": "sha256:xyz", "size": 100,
                    "platform": { "os": "linux", "architecture": "amd64" },
                }])),
            ), BAD_CONTENT, "sha256:xyz"),
        pull_case("manifests is an object", &fx.tag_json("manifests-object", &index_with(json!({ "a": 1 }))), BAD_CONTENT, "not valid"),
        pull_case("manifests is null", &fx.tag_json("manifests-null", &index_with(Value::Null)), BAD_CONTENT, "not valid"),
        pull_case("an index with no children", &fx.tag_json("no-children", &index_with(json!([]))), PLATFORM_NOT_FOUND, "linux/amd64"),
        pull_case("children with platforms that are not objects", &fx.tag_json(
                "bad-platforms",
                &index_with(json!([
                    { "mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 1, "platform": "linux/amd64" },
                    { "mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 1, "platform": { "os": 1 } },
                ])),
            ), PLATFORM_NOT_FOUND, "linux/amd64"),
        pull_case("an index nested 20 levels deep", &fx.tag_json("nested", &nested(&fx, 20)), BAD_CONTENT, "index"),
        pull_case("an index nested 2 levels deep", &fx.tag_json("nested2", &nested(&fx, 2)), BAD_CONTENT, "index"),
    ];
    assert_all(cases);
}

/// An index entry whose size disagrees with the manifest it names is a
/// lying index, like a blob of the wrong size.
#[test]
fn an_index_child_of_the_wrong_size_is_refused() {
    let fx = Fixture::new();
    let index_with = |children: Value| json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children });
    let mut bigger = child(&fx, &fx.manifest, "linux/amd64");
    bigger["size"] = json!(bigger["size"].as_u64().unwrap() + 1);
    let mut smaller = child(&fx, &fx.manifest, "linux/amd64");
    smaller["size"] = json!(10);
    assert_all(vec![
        pull_case(
            "an index entry one byte larger than its manifest",
            &fx.tag_json("bigger", &index_with(json!([bigger]))),
            5,
            "size",
        ),
        pull_case(
            "an index entry of 10 bytes naming a larger manifest",
            &fx.tag_json("smaller", &index_with(json!([smaller]))),
            5,
            "size",
        ),
    ]);
}

/// `--assemble-index` and `--copy` refuse the same broken inputs, pushing
/// nothing.
#[test]
fn assemble_index_and_copy_refuse_broken_inputs() {
    let fx = Fixture::new();
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("dst");
    let dst_ref = |tag: &str| format!("oci:{}:{tag}", dst.display());
    let missing = Digest::of(b"a manifest nobody stored");
    let missing_child = fx.tag_json(
        "missing-child",
        &index_of(vec![json!({
            "mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 100,
            "platform": { "os": "linux", "architecture": "amd64" },
        })]),
    );
    let nested20 = fx.tag_json("nested", &nested(&fx, 20));
    let no_config = fx.tag_json(
        "no-config",
        &fx.manifest_with(|m| {
            m.remove("config");
        }),
    );
    let assemble = |name: &str, input: &str, code: i32, needle: &str| {
        case(
            name,
            &[
                "--assemble-index",
                "--image",
                &dst_ref("idx"),
                "--platform-image",
                input,
            ],
            code,
            needle,
        )
    };
    let copy = |name: &str, input: &str, code: i32, needle: &str| {
        case(name, &["--copy", input, &dst_ref("copy")], code, needle)
    };
    assert_all(vec![
        assemble(
            "assemble-index: an index whose child is missing",
            &missing_child,
            MISSING_INPUTS,
            missing.as_str(),
        ),
        assemble(
            "assemble-index: a manifest without config",
            &format!("linux/amd64={no_config}"),
            MISSING_INPUTS,
            "config",
        ),
        assemble(
            "assemble-index: an index nested 20 levels deep",
            &nested20,
            BAD_CONTENT,
            "nest",
        ),
        copy(
            "copy: an index whose child is missing",
            &missing_child,
            NOT_FOUND,
            missing.as_str(),
        ),
        copy(
            "copy: a manifest without config",
            &no_config,
            BAD_CONTENT,
            "config",
        ),
    ]);
    let written = Layout::open(&dst).ok().map(|l| l.manifests().unwrap());
    assert!(
        written.as_ref().is_none_or(|m| m.is_empty()),
        "a failed run tagged something: {written:?}"
    );
}

/// A stand-in registry on a loopback port that answers `/v2/` and serves
/// `manifest` (with its real digest) for every manifest request, whatever
/// its size: distribution itself will not store or serve a manifest over
/// 4 MiB, a compromised mirror might.
fn lying_registry(manifest: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let digest = Digest::of(&manifest);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body): (&str, &[u8]) = if path.contains("/manifests/") {
                ("200 OK", &manifest)
            } else if path == "/v2/" {
                ("200 OK", b"{}")
            } else {
                ("404 Not Found", b"{\"errors\":[{\"code\":\"NOT_FOUND\"}]}")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {OCI_MANIFEST}\r\n\
                 Docker-Content-Digest: {digest}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(body);
            }
        }
    });
    host
}

#[test]
fn an_enormous_manifest_from_a_registry_is_refused() {
    let fx = Fixture::new();
    // A valid bundle manifest made enormous by one 9 MiB annotation.
    let big = fx.manifest_with(|m| {
        m.insert(
            "annotations".into(),
            json!({ "org.example.padding": "x".repeat(9 << 20) }),
        );
    });
    let bytes = serde_json::to_vec(&big).unwrap();
    assert!(bytes.len() > 8 << 20);
    let digest = Digest::of(&bytes);
    let host = lying_registry(bytes);
    let by_tag = format!("{host}/big:v1");
    let by_digest = format!("{host}/big@{digest}");
    let out = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:copy", out.path().join("dst").display());
    assert_all(vec![
        pull_case("pull by tag", &by_tag, BAD_CONTENT, "larger than"),
        pull_case("pull by digest", &by_digest, BAD_CONTENT, "larger than"),
        case(
            "copy",
            &["--copy", &by_tag, &dst],
            BAD_CONTENT,
            "larger than",
        ),
        case(
            "assemble-index",
            &[
                "--assemble-index",
                "--image",
                &format!("oci:{}:idx", out.path().join("idx").display()),
                "--platform-image",
                &format!("linux/amd64={by_tag}"),
            ],
            MISSING_INPUTS,
            "larger than",
        ),
    ]);
    assert!(
        !out.path().join("dst").exists(),
        "a failed copy made a layout"
    );
}

/// Like a failed push or copy, a failed `--assemble-index` into a layout
/// leaves no layout behind.
#[test]
fn a_failed_assemble_index_into_a_layout_leaves_nothing() {
    let fx = Fixture::new();
    let out = tempfile::tempdir().unwrap();
    let idx = out.path().join("idx");
    let no_config = fx.tag_json(
        "no-config",
        &fx.manifest_with(|m| {
            m.remove("config");
        }),
    );
    assert_all(vec![case(
        "assemble-index from a broken manifest",
        &[
            "--assemble-index",
            "--image",
            &format!("oci:{}:idx", idx.display()),
            "--platform-image",
            &format!("linux/amd64={no_config}"),
        ],
        MISSING_INPUTS,
        "config",
    )]);
    assert!(!idx.exists(), "a failed --assemble-index made a layout");
}

/// Library-level checks of what the fuzz targets found.
#[test]
fn a_platform_with_an_absurd_arm_variant_stays_cheap() {
    // `compatible` listed every arm variant from the one asked for down to
    // v5: for v4000000000 that is four billion platforms (out of memory).
    for variant in ["v100000", "v4000000000", "v18446744073709551615"] {
        let want = Platform::parse(&format!("linux/arm/{variant}"));
        let Ok(want) = want else {
            continue; // refusing such a variant is fine too
        };
        let started = std::time::Instant::now();
        let compatible = want.compatible();
        assert!(
            compatible.len() <= 64,
            "linux/arm/{variant}: {} compatible platforms",
            compatible.len()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn a_reference_ocistep_accepts_prints_as_one_it_accepts() {
    // The repository part of a reference is lowercase; oci-client lets an
    // uppercase first component through when it is not a host name, and
    // the printed form (docker.io/V/t:latest) is then refused.
    for s in ["V/t", "Org/app:v1", "Team/App"] {
        match Target::parse(s) {
            Err(e) => assert_eq!(e.exit_code(), ocistep::ExitCode::Usage, "{s}: {e}"),
            Ok(t) => {
                let shown = t.to_string();
                let again = Target::parse(&shown);
                assert!(
                    again.as_ref().is_ok_and(|a| *a == t),
                    "{s:?} is accepted but prints as {shown:?}: {again:?}"
                );
            }
        }
    }
}
