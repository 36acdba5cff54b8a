//! What a scan found: read from trivy's JSON report, ordered and cut as
//! Shipwright does, and written as the `ID:S,…` result its controller
//! parses (`S` the first letter of the severity).

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vulnerability {
    /// The vulnerability ID (`CVE-2024-1234`).
    pub id: String,
    /// `critical`, `high`, `medium`, `low` or `unknown`.
    pub severity: String,
}

/// Reads trivy's JSON report (`Results[].Vulnerabilities[]` with
/// `VulnerabilityID` and `Severity`, names in any case, as Go reads them),
/// leaves out `ignore_ids`, orders the rest by severity and keeps the first
/// `limit`.
pub fn from_trivy(json: &[u8], ignore_ids: &[String], limit: usize) -> Result<Vec<Vulnerability>> {
    let doc: Value = serde_json::from_slice(json).map_err(|e| {
        Error::BadContent(format!(
            "trivy's report is not JSON ({e}); check that the trivy on PATH is trivy"
        ))
    })?;
    let mut found = Vec::new();
    for result in array(&doc, "Results") {
        for v in array(result, "Vulnerabilities") {
            let id = text(v, "VulnerabilityID");
            if ignore_ids.contains(&id) {
                continue;
            }
            found.push(Vulnerability {
                id,
                severity: text(v, "Severity").to_lowercase(),
            });
        }
    }
    found.sort_by_key(|v| rank(&v.severity));
    found.truncate(limit);
    Ok(found)
}

/// The result file's value: `ID:S` joined with commas.
pub fn to_result(found: &[Vulnerability]) -> String {
    found
        .iter()
        .map(|v| format!("{}:{}", v.id, v.severity.chars().next().unwrap_or('u')))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a result written by [`to_result`] (or Shipwright's step) back, as
/// Shipwright's controller does: `C`, `H`, `M`, `L` in any case, anything
/// else unknown.
pub fn from_result(value: &str) -> Result<Vec<Vulnerability>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (id, severity) = item.rsplit_once(':').ok_or_else(|| {
                Error::Usage(format!(
                    "vulnerability {item:?} is not ID:SEVERITY (e.g. CVE-2024-1234:h)"
                ))
            })?;
            let severity = match severity.to_ascii_uppercase().as_str() {
                "C" => "critical",
                "H" => "high",
                "M" => "medium",
                "L" => "low",
                _ => "unknown",
            };
            Ok(Vulnerability {
                id: id.to_string(),
                severity: severity.to_string(),
            })
        })
        .collect()
}

/// Shipwright's order: critical, high, medium, low, unknown; a severity it
/// does not know sorts with critical, as in its code.
fn rank(severity: &str) -> u8 {
    match severity {
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        "unknown" => 4,
        _ => 0,
    }
}

fn lookup<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let object = v.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn array<'a>(v: &'a Value, name: &str) -> &'a [Value] {
    lookup(v, name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn text(v: &Value, name: &str) -> String {
    lookup(v, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"SchemaVersion":2,"Results":[
        {"Target":"a","Vulnerabilities":[{"VulnerabilityID":"CVE-L","Severity":"LOW"},{"VulnerabilityID":"CVE-C","Severity":"CRITICAL"}]},
        {"Target":"b"},
        {"Target":"c","Vulnerabilities":[{"vulnerabilityID":"CVE-H","severity":"HIGH"},{"VulnerabilityID":"CVE-X","Severity":"MEDIUM"}]}]}"#;

    #[test]
    fn ordered_ignored_and_cut() {
        let all = from_trivy(REPORT.as_bytes(), &[], 50).unwrap();
        assert_eq!(to_result(&all), "CVE-C:c,CVE-H:h,CVE-X:m,CVE-L:l");
        let some = from_trivy(REPORT.as_bytes(), &["CVE-H".to_string()], 2).unwrap();
        assert_eq!(to_result(&some), "CVE-C:c,CVE-X:m");
        assert_eq!(to_result(&[]), "");
    }

    #[test]
    fn results_read_back_as_the_controller_reads_them() {
        let back = from_result("CVE-C:c,CVE-H:H,GHSA-x:y:u").unwrap();
        assert_eq!(back[0].severity, "critical");
        assert_eq!(back[1].severity, "high");
        assert_eq!(back[2].id, "GHSA-x:y");
        assert_eq!(back[2].severity, "unknown");
        assert!(from_result("").unwrap().is_empty());
        assert!(from_result("nocolon").is_err());
    }

    #[test]
    fn not_json_is_refused() {
        let e = from_trivy(b"FATAL error", &[], 50).unwrap_err();
        assert!(e.to_string().contains("trivy"), "{e}");
    }
}
