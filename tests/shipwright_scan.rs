//! Vulnerability scanning as Shipwright's image-processing step does it.
//!
//! trivy cannot be installed where these tests run, so they use a stand-in
//! executable (`tests/fixtures/trivy`) that records the arguments and
//! credentials ocistep gives it and prints a report in trivy's JSON format.
//! What is tested is ocistep's side of the contract: the arguments
//! Shipwright passes, the `ID:S,…` result, exit 22 on findings, and a
//! missing trivy failing loudly; trivy's own scanning is not.

mod support;

use std::path::Path;

use serde_json::Value;
use support::assembly::{amd64_and_arm64, EXIT_USAGE};
use support::images::{platform_layout, try_inspect_raw, TestPlatform};
use support::shipwright::{path_with_standin, path_without_trivy, EXIT_VULNERABLE};
use support::{Registry, RegistryOptions, Run};

const REPORT: &str = r#"{"SchemaVersion":2,"ArtifactName":"out","Results":[
  {"Target":"out (alpine 3.19)","Class":"os-pkgs","Vulnerabilities":[
    {"VulnerabilityID":"CVE-2024-0001","PkgName":"libc","Severity":"LOW"},
    {"VulnerabilityID":"CVE-2024-0002","PkgName":"ssl","Severity":"CRITICAL"},
    {"VulnerabilityID":"CVE-2024-0003","PkgName":"zlib","Severity":"HIGH"}]},
  {"Target":"app","Class":"lang-pkgs"}]}"#;

/// A scan set-up: the report the stand-in prints and the log it writes.
struct Scan {
    dir: tempfile::TempDir,
}

impl Scan {
    fn new() -> Scan {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.json"), REPORT).unwrap();
        Scan { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `run` with the stand-in on PATH.
    fn with_standin(&self, run: &mut Run) {
        run.env("PATH", path_with_standin())
            .env("TRIVY_STANDIN_REPORT", self.path("report.json"))
            .env("TRIVY_STANDIN_LOG", self.path("log"));
    }

    /// What the stand-in was given: the arguments, and what followed `--env--`.
    fn calls(&self) -> (Vec<String>, Vec<String>) {
        let log = std::fs::read_to_string(self.path("log")).unwrap_or_default();
        let lines: Vec<String> = log.lines().map(str::to_string).collect();
        let split = lines
            .iter()
            .position(|l| l == "--env--")
            .expect("trivy ran");
        (lines[..split].to_vec(), lines[split + 1..].to_vec())
    }
}

fn layout(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("output-image");
    platform_layout(&out, "latest", &TestPlatform::parse("linux/amd64"));
    out
}

#[test]
fn findings_with_fail_on_finding_stop_the_push_with_exit_22() {
    let registry = Registry::start();
    let scan = Scan::new();
    let out = layout(scan.dir.path());
    let image = format!("{}/app/scanned:v1", registry.host());
    let settings = r#"{"enabled":true,"failOnFinding":true,"ignore":{"id":["CVE-2024-0003"],"severity":"low","unfixed":true}}"#;
    let mut run = Run::with(["--push"]);
    run.arg(&out)
        .args(["--vuln-settings", settings, "--vuln-count-limit", "5"])
        .args(["--image", &image, "--insecure=false"])
        .arg("--result-file-image-vulnerabilities")
        .arg(scan.path("shp-image-vulnerabilities"));
    scan.with_standin(&mut run);
    let (code, stderr) = run.code_and_stderr();
    assert_eq!(code, EXIT_VULNERABLE, "{stderr}");
    assert!(stderr.contains("failOnFinding"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scan.path("shp-image-vulnerabilities")).unwrap(),
        "CVE-2024-0002:c,CVE-2024-0001:l",
        "ordered by severity, the ignored ID left out, written before failing"
    );
    let (args, env) = scan.calls();
    let expected = [
        "image",
        "--quiet",
        "--disable-telemetry",
        "--skip-version-check",
        "--format",
        "json",
        "--input",
        out.to_str().unwrap(),
        "--severity",
        "MEDIUM,HIGH,CRITICAL",
        "--ignore-unfixed",
    ];
    assert_eq!(args, expected);
    assert_eq!(env, [""], "a directory is scanned without credentials");
    assert!(
        try_inspect_raw(&format!("docker://{image}")).is_err(),
        "nothing was pushed"
    );
}

#[test]
fn findings_without_fail_on_finding_are_reported_and_pushed() {
    let registry = Registry::start();
    let scan = Scan::new();
    let out = layout(scan.dir.path());
    let image = format!("{}/app/scanned:v2", registry.host());
    let mut run = Run::with(["--push"]);
    run.arg(&out)
        .args([
            "--vuln-settings",
            r#"{"enabled":true}"#,
            "--vuln-count-limit",
            "2",
        ])
        .args(["--image", &image])
        .arg("--result-file-image-vulnerabilities")
        .arg(scan.path("vulns"))
        .env("TRIVY_STANDIN_FLAKY", scan.path("flaked"));
    scan.with_standin(&mut run);
    let (_, stderr) = run.printed_ok();
    assert!(stderr.contains("CVE-2024-0002"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scan.path("vulns")).unwrap(),
        "CVE-2024-0002:c,CVE-2024-0003:h",
        "cut to --vuln-count-limit"
    );
    assert!(
        scan.path("flaked").exists(),
        "the first run failed to get its database"
    );
    let log = std::fs::read_to_string(scan.path("log")).unwrap();
    assert_eq!(log.matches("--env--").count(), 2, "retried once: {log}");
    assert!(try_inspect_raw(&format!("docker://{image}")).is_ok());
}

#[test]
fn an_image_in_a_registry_is_scanned_by_reference_with_credentials_out_of_argv() {
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("shp", "scan-pass-3"));
    let scan = Scan::new();
    let out = layout(scan.dir.path());
    let config = registry.docker_config_dir().unwrap();
    let image = format!("{}/app/reg:v1", registry.host());
    Run::push_image(&out)
        .image(&image)
        .secret_path(&config)
        .assert()
        .success();
    let mut run = Run::with([
        "--vuln-settings",
        r#"{"enabled":true,"failOnFinding":true}"#,
    ]);
    run.args([
        "--label",
        "scanned=yes",
        "--image",
        &image,
        "--insecure=true",
    ])
    .arg("--result-file-image-vulnerabilities")
    .arg(scan.path("vulns"))
    .secret_path(&config);
    scan.with_standin(&mut run);
    let (_, stderr) = run.printed_ok();
    assert_eq!(
        std::fs::read_to_string(scan.path("vulns")).unwrap(),
        "CVE-2024-0002:c,CVE-2024-0003:h,CVE-2024-0001:l",
        "a registry image is not failed on findings, as in Shipwright"
    );
    let (args, env) = scan.calls();
    assert_eq!(&args[6..], [image.as_str(), "--insecure"]);
    assert_eq!(env, ["shp", "password set"]);
    assert!(!args.iter().any(|a| a.contains("scan-pass-3")));
    assert!(!stderr.contains("scan-pass-3"));
}

#[test]
fn a_scan_without_trivy_fails_naming_it() {
    let registry = Registry::start();
    let scan = Scan::new();
    let out = layout(scan.dir.path());
    let image = format!("{}/app/notrivy:v1", registry.host());
    let (code, stderr) = Run::with(["--push"])
        .arg(&out)
        .args(["--vuln-settings", r#"{"enabled":true}"#, "--image", &image])
        .env("PATH", path_without_trivy())
        .code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("trivy is not on PATH"), "{stderr}");
    assert!(try_inspect_raw(&format!("docker://{image}")).is_err());
    let (code, stderr) = Run::with(["--push"])
        .arg(&out)
        .args(["--vuln-settings", "{enabled", "--image", &image])
        .code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("invalid --vuln-settings"), "{stderr}");
}

#[test]
fn platform_results_carry_each_platforms_findings() {
    let registry = Registry::start();
    let host = registry.host();
    let (amd64, arm64) = amd64_and_arm64(&host);
    let tmp = tempfile::tempdir().unwrap();
    let platforms = tmp.path().join("platforms.json");
    Run::assemble_index()
        .image(format!("{host}/app/index:v1"))
        .platform_images([
            format!("linux/amd64={}", amd64.pinned()),
            format!("linux/arm64={}", arm64.pinned()),
        ])
        .args([
            "--platform-vulnerabilities",
            "linux/amd64=CVE-2024-0002:c,CVE-2024-0001:l",
        ])
        .arg("--result-file-platform-results")
        .arg(&platforms)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&std::fs::read(&platforms).unwrap()).unwrap();
    let by_platform = |p: &str| {
        doc.as_array()
            .unwrap()
            .iter()
            .find(|e| e["platform"] == p)
            .unwrap_or_else(|| panic!("{p} in {doc}"))
            .clone()
    };
    assert_eq!(
        by_platform("linux/amd64")["vulnerabilities"],
        serde_json::json!([{"id":"CVE-2024-0002","severity":"critical"},{"id":"CVE-2024-0001","severity":"low"}])
    );
    assert!(by_platform("linux/arm64").get("vulnerabilities").is_none());
    let (code, stderr) = Run::assemble_index()
        .image(format!("{host}/app/index:v2"))
        .platform_images([amd64.pinned()])
        .args(["--platform-vulnerabilities", "CVE-1:c"])
        .code_and_stderr();
    assert_eq!(code, EXIT_USAGE, "{stderr}");
}
