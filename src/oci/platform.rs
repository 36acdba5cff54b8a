//! Platforms (`os/arch[/variant]`), normalised as containerd does.
//!
//! `linux/arm64/v8`, `linux-arm64`, `aarch64` and `arm64` all name the same
//! platform; `armhf` is `arm/v7`; `x86_64` is `amd64`. The normal form drops
//! arm64's default `v8` variant and gives plain `arm` its default `v7`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A platform as it appears in an image config or an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, `arm`, `ppc64le`, `s390x`, …).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, `darwin`, …).
    pub os: String,
    /// OS version (Windows builds), e.g. `10.0.17763.1234`.
    #[serde(
        rename = "os.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(rename = "os.features", skip_serializing_if = "Vec::is_empty", default)]
    pub os_features: Vec<String>,
    /// CPU variant (`v7`, `v8`, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, the dash form `os-arch[-variant]`, or a
    /// bare architecture or alias (`aarch64`, OS `linux` assumed).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let parts: Vec<&str> = if s.contains('/') {
            s.split('/').collect()
        } else {
            s.split('-').collect()
        };
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if !arch.is_empty() && !is_os(arch) => ("linux", *arch, None),
            [os, arch] if !os.is_empty() && !arch.is_empty() => (*os, *arch, None),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => {
                return Err(Error::Usage(format!(
                    "invalid platform {s:?}: expected os/arch[/variant] (linux/arm64, linux/arm/v7) or os-arch (linux-amd64)"
                )))
            }
        };
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture: arch.to_ascii_lowercase(),
            variant: variant.map(str::to_ascii_lowercase),
            ..Platform::default()
        }
        .normalized())
    }

    /// The platform this binary runs on, in Go/OCI naming.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "loongarch64" => "loong64",
            "arm" => "arm",
            other => other,
        };
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        Platform {
            os: os.into(),
            architecture: arch.into(),
            ..Platform::default()
        }
        .normalized()
    }

    /// The containerd normal form: aliases resolved, default variants applied.
    pub fn normalized(mut self) -> Self {
        self.os = match self.os.as_str() {
            "macos" => "darwin".into(),
            other => other.to_string(),
        };
        let (arch, variant) = match (self.architecture.as_str(), self.variant.as_deref()) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.filter(|v| *v != "v1")),
            ("i386" | "i686" | "386" | "x86", v) => ("386", v),
            ("aarch64" | "arm64", Some("v8" | "8")) | ("aarch64" | "arm64", None) => {
                ("arm64", None)
            }
            ("aarch64" | "arm64", v) => ("arm64", v),
            ("armhf" | "armv7l" | "armv7", None) => ("arm", Some("v7")),
            ("armel" | "armv6l" | "armv6", None) => ("arm", Some("v6")),
            ("armv5l" | "armv5", None) => ("arm", Some("v5")),
            ("arm", None) => ("arm", Some("v7")),
            ("arm", Some("7")) => ("arm", Some("v7")),
            ("arm", Some("6")) => ("arm", Some("v6")),
            ("arm", Some("5")) => ("arm", Some("v5")),
            (a, v) => (a, v),
        };
        self.architecture = arch.to_string();
        self.variant = variant.map(str::to_string);
        self
    }

    /// `os/arch[/variant]`.
    pub fn short(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// `os-arch[-variant]`, a URL- and tag-safe token.
    pub fn dashed(&self) -> String {
        self.short().replace('/', "-")
    }

    /// True when both name the same platform after normalisation
    /// (`os.version` and features compared only when both sides have them).
    pub fn same_as(&self, other: &Platform) -> bool {
        let (a, b) = (self.clone().normalized(), other.clone().normalized());
        a.os == b.os
            && a.architecture == b.architecture
            && a.variant == b.variant
            && (a.os_version.is_none() || b.os_version.is_none() || a.os_version == b.os_version)
    }

    /// `unknown/unknown`, the platform build tools give attestation manifests.
    pub fn unknown() -> Platform {
        Platform {
            os: "unknown".to_string(),
            architecture: "unknown".to_string(),
            ..Platform::default()
        }
    }

    /// True for `unknown/unknown`, the platform of an attestation manifest.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())?;
        if let Some(v) = &self.os_version {
            write!(f, " (os.version {v})")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platforms this one can run, best first (containerd's rules):
    /// itself, then older arm variants; arm64 also runs arm/v8..v5 and
    /// amd64 runs 386.
    pub fn compatible(&self) -> Vec<Platform> {
        let me = self.clone().normalized();
        let with = |arch: &str, variant: Option<&str>| Platform {
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
            os_version: None,
            os_features: Vec::new(),
            os: me.os.clone(),
        };
        let mut out = vec![me.clone()];
        let arm_below = |from: u32| {
            (5..=from)
                .rev()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
        };
        match (me.architecture.as_str(), me.variant.as_deref()) {
            ("arm64", _) => out.extend(arm_below(8).iter().map(|v| with("arm", Some(v)))),
            ("arm", Some(v)) => {
                // arm variants run v5 to v8 code; a larger number gains nothing.
                let n = v.trim_start_matches('v').parse::<u32>().unwrap_or(7).min(8);
                out.extend(arm_below(n).iter().skip(1).map(|v| with("arm", Some(v))));
            }
            ("amd64", _) => out.push(with("386", None)),
            _ => {}
        }
        out
    }

    /// Picks the best item for this platform from `items`, using
    /// [`Platform::compatible`] order; with equal rank an exact `os.version`
    /// match wins.
    pub fn select<'a, T>(
        &self,
        items: &'a [T],
        platform_of: impl Fn(&T) -> Option<Platform>,
    ) -> Option<&'a T> {
        let order = self.compatible();
        items
            .iter()
            .filter_map(|item| {
                let p = platform_of(item)?.normalized();
                let rank = order.iter().position(|c| {
                    c.os == p.os && c.architecture == p.architecture && c.variant == p.variant
                })?;
                let version_miss = self.os_version.is_some() && p.os_version != self.os_version;
                Some(((rank, version_miss), item))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, item)| item)
    }
}

fn is_os(s: &str) -> bool {
    matches!(
        s,
        "linux"
            | "windows"
            | "darwin"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "solaris"
            | "illumos"
            | "wasip1"
            | "js"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Platform::parse(s).unwrap().short()
    }

    #[test]
    fn aliases_and_forms_normalise() {
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm64"), "linux/arm64");
        assert_eq!(p("linux-arm64"), "linux/arm64");
        assert_eq!(p("aarch64"), "linux/arm64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("x86_64"), "linux/amd64");
        assert_eq!(p("armhf"), "linux/arm/v7");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux-arm-v6"), "linux/arm/v6");
        assert_eq!(p("windows/amd64"), "windows/amd64");
        assert_eq!(p("darwin-arm64"), "darwin/arm64");
    }

    #[test]
    fn invalid_platforms_are_usage_errors() {
        for bad in ["", "linux/", "a/b/c/d", "linux"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serialises_with_oci_field_names() {
        let mut w = Platform::parse("windows/amd64").unwrap();
        w.os_version = Some("10.0.17763.1".into());
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"}"#
        );
        let back: Platform = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn selection_follows_containerd_fallbacks() {
        let items: Vec<Platform> = [
            "linux/amd64",
            "linux/arm/v6",
            "linux/arm/v7",
            "windows/amd64",
        ]
        .iter()
        .map(|s| Platform::parse(s).unwrap())
        .collect();
        let pick = |want: &str| {
            Platform::parse(want)
                .unwrap()
                .select(&items, |p| Some(p.clone()))
                .map(Platform::short)
        };
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("linux/arm/v7"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("linux/arm/v6"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("linux/arm/v7"));
        assert_eq!(pick("linux/arm/v5"), None);
        assert_eq!(pick("linux/amd64").as_deref(), Some("linux/amd64"));
        assert_eq!(pick("windows-amd64").as_deref(), Some("windows/amd64"));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(
            Platform::parse("linux/arm/v66666666")
                .unwrap()
                .compatible()
                .len(),
            4
        );
    }

    #[test]
    fn same_as_ignores_spelling() {
        let a = Platform::parse("linux/arm64/v8").unwrap();
        let b = Platform {
            os: "linux".into(),
            architecture: "aarch64".into(),
            ..Default::default()
        };
        assert!(a.same_as(&b));
        assert!(!a.same_as(&Platform::parse("linux/amd64").unwrap()));
        assert_eq!(
            Platform::host().os,
            std::env::consts::OS.replace("macos", "darwin")
        );
    }
}
