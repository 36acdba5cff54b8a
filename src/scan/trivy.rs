//! Running `trivy` with the arguments Shipwright's image-processing step
//! gives it. Registry credentials go to trivy in its environment
//! (`TRIVY_USERNAME`, `TRIVY_PASSWORD`), not on its command line where
//! other processes could read them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::registry::credentials::{self, Credentials};
use crate::scan::report::{self, Vulnerability};
use crate::scan::settings::ScanSettings;

/// Attempts while trivy cannot download its database (Shipwright's count).
const ATTEMPTS: u32 = 10;

/// What trivy scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An image a build wrote: an OCI layout directory or an archive.
    Input(PathBuf),
    /// An image in a registry: the reference and its registry host.
    Image {
        /// The reference as trivy takes it.
        reference: String,
        /// The registry host, for credentials.
        registry: String,
    },
}

/// Finds `trivy` on `PATH`; its absence is a usage error that says so.
pub fn find() -> Result<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join("trivy"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            Error::Usage(
                "--vuln-settings enables a vulnerability scan, which runs `trivy`, but trivy is not on PATH; install trivy (https://trivy.dev) in the step's image or leave the scan out".to_string(),
            )
        })
}

/// The arguments Shipwright passes (credentials aside).
pub fn arguments(subject: &Subject, settings: &ScanSettings) -> Vec<String> {
    let mut args: Vec<String> = [
        "image",
        "--quiet",
        "--disable-telemetry",
        "--skip-version-check",
        "--format",
        "json",
    ]
    .map(str::to_string)
    .to_vec();
    match subject {
        Subject::Input(path) => {
            args.push("--input".to_string());
            args.push(path.display().to_string());
        }
        Subject::Image { reference, .. } => {
            args.push(reference.clone());
            if settings.insecure {
                args.push("--insecure".to_string());
            }
        }
    }
    if let Some(severity) = &settings.ignore_severity {
        args.push("--severity".to_string());
        args.push(
            match severity.as_str() {
                "low" => "MEDIUM,HIGH,CRITICAL",
                "medium" => "HIGH,CRITICAL",
                "high" => "CRITICAL",
                _ => "LOW,MEDIUM,HIGH,CRITICAL",
            }
            .to_string(),
        );
    }
    if settings.ignore_unfixed {
        args.push("--ignore-unfixed".to_string());
    }
    args
}

/// Scans `subject` and returns what Shipwright's step would report.
/// Blocking: runs trivy, retried while it cannot download its database.
pub fn scan(subject: &Subject, settings: &ScanSettings) -> Result<Vec<Vulnerability>> {
    let trivy = find()?;
    let mut command = Command::new(&trivy);
    command
        .args(arguments(subject, settings))
        .stdin(Stdio::null());
    if let Subject::Image { registry, .. } = subject {
        if let Credentials::Basic { username, password } =
            credentials::lookup(registry, &settings.credential_files)?
        {
            // An identity token (no user name) is not something trivy takes.
            if username != "<token>" {
                command
                    .env("TRIVY_USERNAME", username)
                    .env("TRIVY_PASSWORD", password.expose());
            }
        }
    }
    let mut attempt = 0;
    let output = loop {
        attempt += 1;
        let output = command
            .output()
            .map_err(|e| Error::io("running", &trivy, e))?;
        if output.status.success() {
            break output;
        }
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if attempt < ATTEMPTS && printed.contains("failed to download vulnerability DB") {
            tracing::warn!("trivy could not download its database (attempt {attempt}), retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        return Err(Error::Internal(format!(
            "trivy failed ({}): {}",
            output.status,
            last_lines(&printed)
        )));
    };
    report::from_trivy(&output.stdout, &settings.ignore_ids, settings.count_limit)
}

/// The end of what trivy printed, enough to say why it failed.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ScanSettings {
        ScanSettings::parse(r#"{"enabled":true}"#, 50)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_directory_is_scanned_as_input() {
        let mut s = settings();
        s.ignore_severity = Some("medium".into());
        s.ignore_unfixed = true;
        s.insecure = true;
        assert_eq!(
            arguments(&Subject::Input("/out/image.tar".into()), &s).join(" "),
            "image --quiet --disable-telemetry --skip-version-check --format json --input /out/image.tar --severity HIGH,CRITICAL --ignore-unfixed"
        );
    }

    #[test]
    fn an_image_is_scanned_by_reference() {
        let mut s = settings();
        s.insecure = true;
        s.ignore_severity = Some("low".into());
        let subject = Subject::Image {
            reference: "reg.example/app:v1".into(),
            registry: "reg.example".into(),
        };
        assert_eq!(
            arguments(&subject, &s).join(" "),
            "image --quiet --disable-telemetry --skip-version-check --format json reg.example/app:v1 --insecure --severity MEDIUM,HIGH,CRITICAL"
        );
        s.ignore_severity = Some("whatever".into());
        assert!(arguments(&subject, &s)
            .join(" ")
            .ends_with("--severity LOW,MEDIUM,HIGH,CRITICAL"));
    }
}
