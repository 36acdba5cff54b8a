//! Changes made to an image before it is pushed, with the semantics of
//! Shipwright's image-processing step: annotations on manifests (and on an
//! index), labels in the image config, and one time for the config, its
//! history and (see [`crate::image::layer_time`]) every file in its layers.
//!
//! Documents are edited as `serde_json::Value`, so fields ocistep does not
//! know survive; the result is serialised compactly with sorted keys, which
//! is deterministic.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::oci::attestation::REFERENCE_DIGEST;
use crate::oci::digest::Digest;
use crate::timestamp;

/// What to change; empty means the image is pushed byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Added to every manifest's (and index's) `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Added to the config's `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch for the config's `created`, every
    /// `history[].created` and every time in the layers' tar headers.
    pub created: Option<u64>,
}

impl Mutations {
    /// The changes asked for: `labels` (`key=value`), a creation time
    /// given as `timestamp` or read from `timestamp_file`, and the already
    /// parsed annotations. Empty values mean "not given", as Tekton passes
    /// unset parameters.
    pub fn new(
        labels: &[String],
        timestamp: Option<&str>,
        timestamp_file: Option<&Path>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let value = timestamp.filter(|v| !v.is_empty());
        let file = timestamp_file.filter(|f| !f.as_os_str().is_empty());
        let created = match (value, file) {
            (Some(_), Some(_)) => {
                return Err(Error::Usage(
                    "--image-timestamp and --image-timestamp-file are mutually exclusive; give only one".to_string(),
                ))
            }
            (Some(value), None) => Some(parse_time("--image-timestamp", value)?),
            (None, Some(file)) => Some(read_time_file(file)?),
            (None, None) => None,
        };
        Ok(Mutations {
            annotations: annotations.clone(),
            labels: parse_labels(labels)?,
            created,
        })
    }

    /// True when nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty() && !self.changes_config()
    }

    /// True when the image config changes (labels or creation time).
    pub fn changes_config(&self) -> bool {
        !self.labels.is_empty() || self.created.is_some()
    }

    /// What an attestation manifest in an index gets: the annotations only.
    /// Its config and layers are not an image's (in-toto statements, not
    /// tar), so labels and times do not apply.
    pub fn for_attestation(&self) -> Mutations {
        Mutations {
            annotations: self.annotations.clone(),
            ..Mutations::default()
        }
    }

    /// Returns the config with the labels and creation time applied, and
    /// `rootfs.diff_ids[i]` replaced by `diff_ids[i]` where that is given
    /// (a layer re-timed); a config whose diff_ids do not match its layers
    /// one for one cannot be so changed.
    pub fn apply_to_config(&self, config: &[u8], diff_ids: &[Option<Digest>]) -> Result<Vec<u8>> {
        let mut doc = parse_object(config, "image config")?;
        let object = doc.as_object_mut().expect("checked to be an object");
        if !self.labels.is_empty() {
            let labels = child_object(child_object(object, "config")?, "Labels")?;
            for (key, value) in &self.labels {
                labels.insert(key.clone(), Value::String(value.clone()));
            }
        }
        if let Some(created) = self.created.map(timestamp::to_rfc3339) {
            object.insert("created".into(), Value::String(created.clone()));
            if let Some(Value::Array(history)) = object.get_mut("history") {
                for entry in history.iter_mut().filter_map(Value::as_object_mut) {
                    entry.insert("created".into(), Value::String(created.clone()));
                }
            }
        }
        if diff_ids.iter().any(Option::is_some) {
            replace_diff_ids(object, diff_ids)?;
        }
        to_bytes(&doc)
    }

    /// Returns the image manifest with its config descriptor pointing at
    /// `config` (`digest`, `size`), each layer in `layers` (old digest to
    /// new digest and size) replaced, and the annotations added.
    pub fn apply_to_manifest(
        &self,
        manifest: &[u8],
        config: Option<(&Digest, u64)>,
        layers: &BTreeMap<String, (Digest, u64)>,
    ) -> Result<Vec<u8>> {
        let mut doc = parse_object(manifest, "image manifest")?;
        let object = doc.as_object_mut().expect("checked to be an object");
        if let Some((digest, size)) = config {
            let descriptor = object
                .get_mut("config")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Error::BadContent("image manifest has no config".to_string()))?;
            descriptor.insert("digest".into(), Value::String(digest.to_string()));
            descriptor.insert("size".into(), Value::from(size));
        }
        if let Some(Value::Array(entries)) = object.get_mut("layers") {
            replace_descriptors(entries, layers);
        }
        self.annotate(object)?;
        to_bytes(&doc)
    }

    /// Returns the index with each child's digest and size replaced as
    /// `children` says (old digest to new digest and size), attestation
    /// entries pointing at the new digest of the image they attest, and the
    /// annotations added.
    pub fn apply_to_index(
        &self,
        index: &[u8],
        children: &BTreeMap<String, (Digest, u64)>,
    ) -> Result<Vec<u8>> {
        let mut doc = parse_object(index, "image index")?;
        let object = doc.as_object_mut().expect("checked to be an object");
        if let Some(Value::Array(manifests)) = object.get_mut("manifests") {
            replace_descriptors(manifests, children);
            for entry in manifests.iter_mut().filter_map(Value::as_object_mut) {
                let attested = entry
                    .get_mut("annotations")
                    .and_then(Value::as_object_mut)
                    .and_then(|a| a.get_mut(REFERENCE_DIGEST));
                if let Some(attested) = attested {
                    if let Some((digest, _)) = attested.as_str().and_then(|d| children.get(d)) {
                        *attested = Value::String(digest.to_string());
                    }
                }
            }
        }
        self.annotate(object)?;
        to_bytes(&doc)
    }

    fn annotate(&self, object: &mut Map<String, Value>) -> Result<()> {
        if self.annotations.is_empty() {
            return Ok(());
        }
        let annotations = child_object(object, "annotations")?;
        for (key, value) in &self.annotations {
            annotations.insert(key.clone(), Value::String(value.clone()));
        }
        Ok(())
    }
}

/// Replaces the digest and size of each descriptor in `entries` that
/// `replaced` names (old digest to new digest and size).
fn replace_descriptors(entries: &mut [Value], replaced: &BTreeMap<String, (Digest, u64)>) {
    for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
        let old = entry.get("digest").and_then(Value::as_str).unwrap_or("");
        if let Some((digest, size)) = replaced.get(old) {
            entry.insert("digest".into(), Value::String(digest.to_string()));
            entry.insert("size".into(), Value::from(*size));
        }
    }
}

/// Sets `rootfs.diff_ids[i]` to `diff_ids[i]` where given.
fn replace_diff_ids(config: &mut Map<String, Value>, diff_ids: &[Option<Digest>]) -> Result<()> {
    let listed = config
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut);
    let listed = match listed {
        Some(listed) if listed.len() == diff_ids.len() => listed,
        other => {
            return Err(Error::BadContent(format!(
                "the image config lists {} diff_ids for {} layers, so the re-timed layers cannot be recorded in it",
                other.map_or(0, |l| l.len()),
                diff_ids.len()
            )))
        }
    };
    for (slot, new) in listed.iter_mut().zip(diff_ids) {
        if let Some(new) = new {
            *slot = Value::String(new.to_string());
        }
    }
    Ok(())
}

/// Parses `key=value` labels into a sorted map.
pub fn parse_labels(values: &[String]) -> Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
            _ => Err(Error::Usage(format!(
                "invalid --label {v:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// Parses a time flag (seconds since the epoch or RFC 3339).
fn parse_time(flag: &str, value: &str) -> Result<u64> {
    timestamp::parse_flag(value).map_err(|_| {
        Error::Usage(format!(
            "invalid {flag} {value:?}: give seconds since the epoch or RFC 3339 like 2024-01-02T03:04:05Z"
        ))
    })
}

/// Reads the creation time from a file (surrounding whitespace ignored).
fn read_time_file(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::Usage(format!(
            "cannot read --image-timestamp-file {}: {e}",
            file.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Error::Usage(format!(
            "--image-timestamp-file {} is empty; it must hold seconds since the epoch or an RFC 3339 time",
            file.display()
        )));
    }
    parse_time(
        &format!("--image-timestamp-file {} content", file.display()),
        text.trim(),
    )
}

fn parse_object(bytes: &[u8], what: &str) -> Result<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(doc) if doc.is_object() => Ok(doc),
        Ok(_) => Err(Error::BadContent(format!(
            "the {what} is not a JSON object"
        ))),
        Err(e) => Err(Error::BadContent(format!(
            "the {what} is not valid JSON: {e}"
        ))),
    }
}

/// The object under `key`, created when missing or null.
fn child_object<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>> {
    let slot = object
        .entry(key)
        .and_modify(|v| {
            if v.is_null() {
                *v = Value::Object(Map::new());
            }
        })
        .or_insert_with(|| Value::Object(Map::new()));
    slot.as_object_mut()
        .ok_or_else(|| Error::BadContent(format!("{key:?} is not a JSON object")))
}

fn to_bytes(doc: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(doc).map_err(|e| Error::Internal(format!("serialising JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutations() -> Mutations {
        Mutations {
            annotations: [("a".to_string(), "1".to_string())].into(),
            labels: [("l".to_string(), "v".to_string())].into(),
            created: Some(1_704_164_645),
        }
    }

    #[test]
    fn config_gets_labels_and_times_and_keeps_unknown_fields() {
        let config = br#"{"architecture":"amd64","os":"linux","config":null,"x-custom":{"k":[1,2]},
            "history":[{"created":"2020-01-01T00:00:00Z","created_by":"a"},{"empty_layer":true}]}"#;
        let out: Value =
            serde_json::from_slice(&mutations().apply_to_config(config, &[]).unwrap()).unwrap();
        assert_eq!(out["config"]["Labels"]["l"], "v");
        assert_eq!(out["created"], "2024-01-02T03:04:05Z");
        assert_eq!(out["history"][0]["created"], "2024-01-02T03:04:05Z");
        assert_eq!(out["history"][0]["created_by"], "a");
        assert_eq!(out["history"][1]["created"], "2024-01-02T03:04:05Z");
        assert_eq!(out["x-custom"]["k"][1], 2);
    }

    #[test]
    fn existing_labels_are_kept() {
        let config = br#"{"config":{"Labels":{"old":"x"},"Env":["A=1"]}}"#;
        let out: Value =
            serde_json::from_slice(&mutations().apply_to_config(config, &[]).unwrap()).unwrap();
        assert_eq!(out["config"]["Labels"]["old"], "x");
        assert_eq!(out["config"]["Labels"]["l"], "v");
        assert_eq!(out["config"]["Env"][0], "A=1");
    }

    #[test]
    fn manifest_points_at_the_new_config() {
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:00","size":1},"layers":[]}"#;
        let d = Digest::of(b"new");
        let out: Value = serde_json::from_slice(
            &mutations()
                .apply_to_manifest(manifest, Some((&d, 3)), &BTreeMap::new())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["config"]["digest"], d.as_str());
        assert_eq!(out["config"]["size"], 3);
        assert_eq!(out["config"]["mediaType"], "c");
        assert_eq!(out["annotations"]["a"], "1");
    }

    /// `index` with the sample mutations and `children` replaced.
    fn mutated_index(index: &str, children: BTreeMap<String, (Digest, u64)>) -> Value {
        let bytes = mutations()
            .apply_to_index(index.as_bytes(), &children)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn index_children_are_replaced() {
        let old = Digest::of(b"old");
        let new = Digest::of(b"new");
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{old}","size":9,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let out = mutated_index(&index, [(old.to_string(), (new.clone(), 4))].into());
        assert_eq!(out["manifests"][0]["digest"], new.as_str());
        assert_eq!(out["manifests"][0]["size"], 4);
        assert_eq!(out["manifests"][0]["platform"]["architecture"], "arm64");
        assert_eq!(out["annotations"]["a"], "1");
    }

    #[test]
    fn retimed_layers_replace_their_descriptors_and_diff_ids() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{a}","{b}"]}}}}"#);
        let out: Value = serde_json::from_slice(
            &mutations()
                .apply_to_config(config.as_bytes(), &[None, Some(c.clone())])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["rootfs"]["diff_ids"][0], a.as_str());
        assert_eq!(out["rootfs"]["diff_ids"][1], c.as_str());
        let mismatched = mutations()
            .apply_to_config(config.as_bytes(), &[Some(c.clone())])
            .unwrap_err();
        assert!(
            mismatched.to_string().contains("2 diff_ids for 1 layers"),
            "{mismatched}"
        );

        let manifest = format!(
            r#"{{"config":{{"digest":"sha256:00","size":1}},"layers":[{{"mediaType":"t","digest":"{a}","size":1}},{{"digest":"{b}","size":1}}]}}"#
        );
        let layers = [(a.to_string(), (c.clone(), 7))].into();
        let out: Value = serde_json::from_slice(
            &mutations()
                .apply_to_manifest(manifest.as_bytes(), None, &layers)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["layers"][0]["digest"], c.as_str());
        assert_eq!(out["layers"][0]["size"], 7);
        assert_eq!(out["layers"][0]["mediaType"], "t");
        assert_eq!(out["layers"][1]["digest"], b.as_str());
    }

    #[test]
    fn attestation_entries_follow_their_image() {
        let (image, new_image) = (Digest::of(b"image"), Digest::of(b"new image"));
        let (att, new_att) = (Digest::of(b"att"), Digest::of(b"new att"));
        let index = format!(
            r#"{{"manifests":[{{"digest":"{image}","size":1}},{{"digest":"{att}","size":2,"annotations":{{"{REFERENCE_DIGEST}":"{image}","vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#
        );
        let children = [
            (image.to_string(), (new_image.clone(), 3)),
            (att.to_string(), (new_att.clone(), 4)),
        ];
        let out = mutated_index(&index, children.into());
        assert_eq!(out["manifests"][1]["digest"], new_att.as_str());
        assert_eq!(
            out["manifests"][1]["annotations"][REFERENCE_DIGEST],
            new_image.as_str()
        );
        let only_annotations = mutations().for_attestation();
        assert!(!only_annotations.changes_config());
        assert_eq!(only_annotations.annotations, mutations().annotations);
    }

    #[test]
    fn labels_and_times_are_validated() {
        assert!(parse_labels(&["k=v=w".into()]).unwrap()["k"] == "v=w");
        assert!(parse_labels(&["=v".into()]).is_err());
        assert_eq!(
            parse_time("--image-timestamp", "2024-01-02T03:04:05Z").unwrap(),
            1_704_164_645
        );
        assert!(parse_time("--image-timestamp", "soon").is_err());
        assert!(Mutations::default().is_empty());
        assert!(!mutations().is_empty());
        let none = BTreeMap::new();
        let both = Mutations::new(&[], Some("1"), Some(Path::new("f")), &none).unwrap_err();
        assert_eq!(both.exit_code(), crate::ExitCode::Usage);
        assert!(both.to_string().contains("mutually exclusive"), "{both}");
        let empty = Mutations::new(&[], Some(""), Some(Path::new("")), &none).unwrap();
        assert!(empty.is_empty(), "empty values mean unset");
    }

    #[test]
    fn non_object_documents_are_refused() {
        assert!(mutations().apply_to_config(b"[1]", &[]).is_err());
        assert!(mutations()
            .apply_to_config(br#"{"config":"text"}"#, &[])
            .is_err());
    }
}
