//! `--vuln-settings JSON` and `--vuln-count-limit N`: Shipwright's
//! `VulnerabilityScanOptions`, read as Go reads JSON into a struct (field
//! names in any case, unknown fields ignored).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How many vulnerabilities the result holds unless told otherwise
/// (Shipwright's default).
pub const DEFAULT_COUNT_LIMIT: usize = 50;

/// A scan that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSettings {
    /// Fail (exit 22, nothing pushed) when a pushed directory's image has
    /// findings.
    pub fail_on_finding: bool,
    /// Vulnerability IDs left out of the result.
    pub ignore_ids: Vec<String>,
    /// `low`, `medium` or `high`: that severity and those below are left out.
    pub ignore_severity: Option<String>,
    /// Leave out vulnerabilities without a fix.
    pub ignore_unfixed: bool,
    /// The most vulnerabilities the result holds, the most severe first.
    pub count_limit: usize,
    /// Docker config files holding the registry credentials trivy gets.
    pub credential_files: Vec<PathBuf>,
    /// Whether trivy may use plain HTTP and unverified TLS.
    pub insecure: bool,
}

impl ScanSettings {
    /// Reads `--vuln-settings`; `None` unless it enables a scan (an empty
    /// value means unset).
    pub fn parse(json: &str, count_limit: usize) -> Result<Option<ScanSettings>> {
        if json.trim().is_empty() {
            return Ok(None);
        }
        let invalid = |why: String| {
            Error::Usage(format!(
                "invalid --vuln-settings {json:?}: {why}; expected JSON like {{\"enabled\":true,\"failOnFinding\":true,\"ignore\":{{\"id\":[\"CVE-…\"],\"severity\":\"low\",\"unfixed\":true}}}}"
            ))
        };
        let doc: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let Value::Object(doc) = doc else {
            return Err(invalid("not a JSON object".to_string()));
        };
        if !flag(&doc, "enabled").map_err(&invalid)? {
            return Ok(None);
        }
        let ignore = match field(&doc, "ignore") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err(invalid("\"ignore\" is not an object".to_string())),
        };
        let ignore_ids = match field(&ignore, "id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("\"ignore.id\" holds a non-string".to_string()))?,
            Some(_) => return Err(invalid("\"ignore.id\" is not a list".to_string())),
        };
        let ignore_severity = match field(&ignore, "severity") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid("\"ignore.severity\" is not a string".to_string())),
        };
        Ok(Some(ScanSettings {
            fail_on_finding: flag(&doc, "failOnFinding").map_err(&invalid)?,
            ignore_ids,
            ignore_severity,
            ignore_unfixed: flag(&ignore, "unfixed").map_err(&invalid)?,
            count_limit,
            credential_files: Vec::new(),
            insecure: false,
        }))
    }
}

/// A field looked up as Go's JSON decoder does: the exact name first,
/// then any case.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn flag(object: &Map<String, Value>, name: &str) -> std::result::Result<bool, String> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("\"{name}\" is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_or_empty_means_no_scan() {
        assert_eq!(ScanSettings::parse("", 50).unwrap(), None);
        assert_eq!(ScanSettings::parse("{}", 50).unwrap(), None);
        assert_eq!(
            ScanSettings::parse(r#"{"enabled":false,"failOnFinding":true}"#, 50).unwrap(),
            None
        );
    }

    #[test]
    fn shipwright_settings_are_read_in_any_case() {
        let s = ScanSettings::parse(
            r#"{"Enabled":true,"failonfinding":true,"ignore":{"ID":["CVE-1"],"severity":"medium","unfixed":true},"extra":1}"#,
            7,
        )
        .unwrap()
        .unwrap();
        assert!(s.fail_on_finding && s.ignore_unfixed);
        assert_eq!(s.ignore_ids, ["CVE-1"]);
        assert_eq!(s.ignore_severity.as_deref(), Some("medium"));
        assert_eq!(s.count_limit, 7);
    }

    #[test]
    fn malformed_settings_are_usage_errors() {
        for bad in [
            "{",
            "[true]",
            r#"{"enabled":"yes"}"#,
            r#"{"enabled":true,"ignore":{"id":"CVE-1"}}"#,
        ] {
            let e = ScanSettings::parse(bad, 50).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{bad}");
            assert!(e.to_string().contains("--vuln-settings"), "{e}");
        }
    }
}
