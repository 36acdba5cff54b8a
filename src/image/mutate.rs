//! Changes made to an image before it is pushed, with the semantics of
//! Shipwright's image-processing step: annotations on manifests (and on an
//! index), labels in the image config, and one creation time for the config
//! and its history.
//!
//! Documents are edited as `serde_json::Value`, so fields ocistep does not
//! know survive; the result is serialised compactly with sorted keys, which
//! is deterministic.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::timestamp;

/// What to change; empty means the image is pushed byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Added to every manifest's (and index's) `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Added to the config's `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 time for the config's `created` and every `history[].created`.
    pub created: Option<String>,
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

    /// Returns the config with the labels and creation time applied.
    pub fn apply_to_config(&self, config: &[u8]) -> Result<Vec<u8>> {
        let mut doc = parse_object(config, "image config")?;
        let object = doc.as_object_mut().expect("checked to be an object");
        if !self.labels.is_empty() {
            let labels = child_object(child_object(object, "config")?, "Labels")?;
            for (key, value) in &self.labels {
                labels.insert(key.clone(), Value::String(value.clone()));
            }
        }
        if let Some(created) = &self.created {
            object.insert("created".into(), Value::String(created.clone()));
            if let Some(Value::Array(history)) = object.get_mut("history") {
                for entry in history.iter_mut().filter_map(Value::as_object_mut) {
                    entry.insert("created".into(), Value::String(created.clone()));
                }
            }
        }
        to_bytes(&doc)
    }

    /// Returns the image manifest with its config descriptor pointing at
    /// `config` (`digest`, `size`) and the annotations added.
    pub fn apply_to_manifest(
        &self,
        manifest: &[u8],
        config: Option<(&Digest, u64)>,
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
        self.annotate(object)?;
        to_bytes(&doc)
    }

    /// Returns the index with each child's digest and size replaced as
    /// `children` says (old digest to new digest and size) and the
    /// annotations added.
    pub fn apply_to_index(
        &self,
        index: &[u8],
        children: &BTreeMap<String, (Digest, u64)>,
    ) -> Result<Vec<u8>> {
        let mut doc = parse_object(index, "image index")?;
        let object = doc.as_object_mut().expect("checked to be an object");
        if let Some(Value::Array(manifests)) = object.get_mut("manifests") {
            for entry in manifests.iter_mut().filter_map(Value::as_object_mut) {
                let old = entry.get("digest").and_then(Value::as_str).unwrap_or("");
                if let Some((digest, size)) = children.get(old) {
                    entry.insert("digest".into(), Value::String(digest.to_string()));
                    entry.insert("size".into(), Value::from(*size));
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

/// Parses a time flag (seconds since the epoch or RFC 3339) into RFC 3339 UTC.
fn parse_time(flag: &str, value: &str) -> Result<String> {
    let secs = timestamp::parse_flag(value).map_err(|_| {
        Error::Usage(format!(
            "invalid {flag} {value:?}: give seconds since the epoch or RFC 3339 like 2024-01-02T03:04:05Z"
        ))
    })?;
    Ok(timestamp::to_rfc3339(secs))
}

/// Reads the creation time from a file (surrounding whitespace ignored).
fn read_time_file(file: &Path) -> Result<String> {
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
            created: Some("2024-01-02T03:04:05Z".to_string()),
        }
    }

    #[test]
    fn config_gets_labels_and_times_and_keeps_unknown_fields() {
        let config = br#"{"architecture":"amd64","os":"linux","config":null,"x-custom":{"k":[1,2]},
            "history":[{"created":"2020-01-01T00:00:00Z","created_by":"a"},{"empty_layer":true}]}"#;
        let out: Value =
            serde_json::from_slice(&mutations().apply_to_config(config).unwrap()).unwrap();
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
            serde_json::from_slice(&mutations().apply_to_config(config).unwrap()).unwrap();
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
                .apply_to_manifest(manifest, Some((&d, 3)))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["config"]["digest"], d.as_str());
        assert_eq!(out["config"]["size"], 3);
        assert_eq!(out["config"]["mediaType"], "c");
        assert_eq!(out["annotations"]["a"], "1");
    }

    #[test]
    fn index_children_are_replaced() {
        let old = Digest::of(b"old");
        let new = Digest::of(b"new");
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{old}","size":9,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let children = [(old.to_string(), (new.clone(), 4))].into();
        let out: Value = serde_json::from_slice(
            &mutations()
                .apply_to_index(index.as_bytes(), &children)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["manifests"][0]["digest"], new.as_str());
        assert_eq!(out["manifests"][0]["size"], 4);
        assert_eq!(out["manifests"][0]["platform"]["architecture"], "arm64");
        assert_eq!(out["annotations"]["a"], "1");
    }

    #[test]
    fn labels_and_times_are_validated() {
        assert!(parse_labels(&["k=v=w".into()]).unwrap()["k"] == "v=w");
        assert!(parse_labels(&["=v".into()]).is_err());
        assert_eq!(
            parse_time("--image-timestamp", "1704164645").unwrap(),
            "2024-01-02T03:04:05Z"
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
        assert!(mutations().apply_to_config(b"[1]").is_err());
        assert!(mutations()
            .apply_to_config(br#"{"config":"text"}"#)
            .is_err());
    }
}
