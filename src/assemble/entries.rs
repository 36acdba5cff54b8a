//! `--platform-image` values: `os/arch=REF` or `REF`, separated by commas
//! or newlines, or given as a JSON array.

use crate::error::{Error, Result};
use crate::oci::platform::Platform;

/// One `--platform-image` entry: an optional declared platform and a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The platform given with `os/arch=REF`.
    pub declared: Option<Platform>,
    /// The reference.
    pub reference: String,
}

/// Splits `--platform-image` values (commas, newlines, or a JSON array)
/// into entries.
pub fn parse_entries(values: &[String]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for value in values {
        let items: Vec<String> = match serde_json::from_str::<Vec<String>>(value.trim()) {
            Ok(list) if value.trim_start().starts_with('[') => list,
            _ => value.split([',', '\n']).map(str::to_string).collect(),
        };
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            out.push(match item.split_once('=') {
                Some((platform, reference)) => Entry {
                    declared: Some(Platform::parse(platform)?),
                    reference: reference.trim().to_string(),
                },
                None => Entry {
                    declared: None,
                    reference: item.to_string(),
                },
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Usage(
            "--assemble-index needs at least one --platform-image (os/arch=REF or REF)".to_string(),
        ));
    }
    Ok(out)
}

impl Entry {
    /// The entry as the user wrote it, for messages.
    pub fn label(&self) -> String {
        match &self.declared {
            Some(p) => format!("{}={}", p.short(), self.reference),
            None => self.reference.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_commas_newlines_and_json_arrays() {
        let e = parse_entries(&[
            "linux/amd64=reg/app:a, linux/arm64/v8=reg/app:b\nreg/app:c".into(),
            r#"["reg/app:d","linux-arm-v7=reg/app:e"]"#.into(),
        ])
        .unwrap();
        let refs: Vec<&str> = e.iter().map(|e| e.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "reg/app:a",
                "reg/app:b",
                "reg/app:c",
                "reg/app:d",
                "reg/app:e"
            ]
        );
        assert_eq!(e[1].declared.as_ref().unwrap().short(), "linux/arm64");
        assert_eq!(e[4].declared.as_ref().unwrap().short(), "linux/arm/v7");
        assert!(e[2].declared.is_none());
        assert!(parse_entries(&[" , ".into()]).is_err());
        assert!(parse_entries(&["nonsense/a/b/c=reg/app".into()]).is_err());
    }
}
