//! The CI wiring's files as the pipeline contract tests read them: the
//! YAML of the Tekton tasks, the GitLab component and the GitHub Action,
//! the flags `ocistep --help` lists, and the checks of an assembled index.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::images::{self, TestPlatform};
use super::Run;
use ocistep::oci::digest::Digest;

/// The image the tasks default to before a release pins them.
pub const OCISTEP_IMAGE: &str = "ghcr.io/ocistep/ocistep:0.1.0";
/// Where releases of that image are.
pub const OCISTEP_REPOSITORY: &str = "ghcr.io/ocistep/ocistep";
/// The binary's path inside that image (the Containerfile's ENTRYPOINT).
pub const OCISTEP_PATH: &str = "/ocistep";
/// A source timestamp, and the same instant in RFC 3339.
pub const SOURCE_EPOCH: &str = "1700000000";
pub const SOURCE_RFC3339: &str = "2023-11-14T22:13:20Z";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every YAML document of a file.
pub fn documents(rel: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(rel))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `v[a][b]…` for a dotted path of map keys.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

pub fn string(v: &Value, path: &str) -> Option<String> {
    at(v, path).and_then(Value::as_str).map(str::to_string)
}

pub fn list<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

pub fn strings(v: &Value, path: &str) -> Vec<String> {
    list(v, path)
        .into_iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{path}: expected strings, found {s:?}"))
                .to_string()
        })
        .collect()
}

/// Every string below `v`, with its path.
pub fn all_strings(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path, s.clone())),
        Value::Sequence(seq) => {
            for (i, item) in seq.iter().enumerate() {
                all_strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map {
                let key = k.as_str().unwrap_or("?");
                all_strings(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// The expressions of every Tekton variable `$(…)` in `s` (a shell's
/// `$(command)` in a script is left alone, as Tekton leaves it).
pub fn tekton_refs(s: &str) -> Vec<String> {
    const ROOTS: [&str; 6] = [
        "params",
        "results",
        "workspaces",
        "context",
        "tasks",
        "steps",
    ];
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let expr = &after[..end];
        let root = expr.split(['.', '[']).next().unwrap_or_default();
        if ROOTS.contains(&root) && !expr.contains(char::is_whitespace) {
            out.push(expr.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

/// The long flags `ocistep --help` lists.
pub fn known_flags() -> BTreeSet<String> {
    let output = Run::new().arg("--help").output();
    assert!(output.status.success(), "ocistep --help failed");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let flags: BTreeSet<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    assert!(flags.contains("--image") && flags.contains("--push-source-bundle"));
    flags
}

/// The flag names (`--name`, without `=value`) of arguments that are flags.
pub fn flags_of<'a>(args: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    args.into_iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap().to_string())
        .collect()
}

pub fn ws(entries: &[(&str, Option<&Path>)]) -> BTreeMap<String, Option<PathBuf>> {
    entries
        .iter()
        .map(|(n, p)| (n.to_string(), p.map(Path::to_path_buf)))
        .collect()
}

/// The platforms the pipeline builds, from its ARCHITECTURES default.
pub fn platform_of(arch: &str) -> TestPlatform {
    TestPlatform::parse(&format!("linux/{arch}"))
}

/// Checks an index in the registry against the images it should hold.
pub fn check_index(reference: &str, digest: &str, children: &BTreeMap<String, String>) {
    let raw = images::inspect_raw(&format!("docker://{reference}"));
    assert_eq!(Digest::of(&raw).to_string(), digest, "{reference}: digest");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX, "{reference}: an OCI index");
    let got: BTreeMap<String, String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(&got, children, "{reference}: children by platform");
}

/// `name@sha256:…` -> `sha256:…`.
pub fn digest_of(pinned: &str) -> String {
    pinned
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{pinned:?} is not pinned by digest"))
        .1
        .to_string()
}
