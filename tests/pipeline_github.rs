//! The GitHub composite action, run as a Linux runner runs it: its
//! install step downloads the "release" (this build's binary and its
//! SHA256SUMS, served on a loopback port), verifies and caches it, and its
//! run step runs every mode against a real registry with the runner's
//! `~/.docker/config.json` as the credentials; a binary that does not match
//! SHA256SUMS is refused. The example workflow uses the action as declared.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use support::ci::*;
use support::file_server::FileServer;
use support::github::{action, script_flags, Runner};
use support::images::{self};
use support::{run_ok, tree, Registry, RegistryOptions};

/// The version the test release is published as.
const VERSION: &str = "0.1.0";

/// The release asset for this machine, as the release workflow names it.
fn asset() -> String {
    let arch = match Runner::arch() {
        "X64" => "amd64",
        _ => "arm64",
    };
    format!("ocistep-{VERSION}-linux-{arch}")
}

/// A release directory `dir/v<VERSION>/` with `binary` as this machine's
/// asset and a SHA256SUMS listing `listed` (the binary's own bytes unless
/// told otherwise). Returns the sha256 of SHA256SUMS.
fn publish(dir: &Path, binary: &[u8], listed: &[u8]) -> String {
    let release = dir.join(format!("v{VERSION}"));
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join(asset()), binary).unwrap();
    let sums = format!("{}  {}\n", sha256_hex(listed), asset());
    std::fs::write(release.join("SHA256SUMS"), &sums).unwrap();
    sha256_hex(sums.as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ocistep::oci::digest::Digest::of(bytes).to_string();
    digest.strip_prefix("sha256:").unwrap().to_string()
}

fn binary() -> Vec<u8> {
    std::fs::read(env!("CARGO_BIN_EXE_ocistep")).unwrap()
}

/// The tool cache entry the action keeps: `ocistep/VERSION/ARCH`.
fn cached(runner: &Runner) -> PathBuf {
    let arch = if Runner::arch() == "X64" {
        "amd64"
    } else {
        "arm64"
    };
    runner.tool_cache.join(format!("ocistep/{VERSION}/{arch}"))
}

fn stderr_of(run: &support::github::ActionRun) -> String {
    run.failed
        .as_ref()
        .map(|(_, o)| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default()
}

/// A runner and a release of this build's binary served on loopback, both
/// under `scratch`.
fn runner_and_release(scratch: &Path) -> (Runner, FileServer, PathBuf) {
    let release = scratch.join("release");
    publish(&release, &binary(), &binary());
    let server = FileServer::start(&release);
    (Runner::new(&scratch.join("runner")), server, release)
}

#[test]
fn action_installs_the_release_and_runs_every_mode() {
    let registry = Registry::start();
    let host = registry.host();
    let a = action();
    let scratch = tempfile::tempdir().unwrap();
    let (runner, server, release) = runner_and_release(scratch.path());
    let ws = &runner.workspace;
    let url = server.url();
    let use_action = |with: &[(&str, &str)]| {
        let mut with = with.to_vec();
        with.push(("download-url", url.as_str()));
        with.push(("version", VERSION));
        let run = runner.use_action(&a, &with);
        if let Some((step, output)) = &run.failed {
            panic!(
                "step {step} failed with {with:?}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        run
    };

    tree::sample_tree(&ws.join("src"));
    let pushed = use_action(&[
        ("mode", "push-source-bundle"),
        ("path", "src"),
        ("image", &format!("{host}/gh:v1-source")),
        ("source-timestamp", SOURCE_EPOCH),
        (
            "annotations",
            "org.example.team=build\n\n  org.example.run=1  \n",
        ),
    ]);
    // Installed, verified and cached in the tool cache.
    let entry = cached(&runner);
    assert_eq!(std::fs::read(entry.join("ocistep")).unwrap(), binary());
    assert!(
        entry.with_extension("complete").is_file(),
        "the entry is complete"
    );
    assert_eq!(
        pushed.written["install"]["path"],
        entry.join("ocistep").to_string_lossy()
    );
    let o = &pushed.outputs;
    assert_eq!(digest_of(&o["image-url"]), o["digest"]);
    let manifest: serde_json::Value = serde_json::from_slice(&images::inspect_raw(&format!(
        "docker://{}",
        o["image-url"]
    )))
    .unwrap();
    assert_eq!(manifest["annotations"]["org.example.team"], "build");
    assert_eq!(manifest["annotations"]["org.example.run"], "1");

    // From the tool cache from now on: the release no longer has the binary.
    std::fs::remove_file(release.join(format!("v{VERSION}/{}", asset()))).unwrap();
    let pulled = use_action(&[
        ("mode", "pull-source-bundle"),
        ("path", "pulled"),
        ("image", &o["image-url"]),
        ("prune", "true"),
    ]);
    assert_eq!(pulled.outputs["digest"], o["digest"]);
    assert_eq!(pulled.outputs["source-timestamp"], SOURCE_EPOCH);
    assert_eq!(
        tree::snapshot(&ws.join("pulled")),
        tree::snapshot(&ws.join("src"))
    );
    let gone = support::tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", o["image-url"]))
        .output()
        .unwrap();
    assert!(!gone.status.success(), "prune: true deleted the bundle");

    let mut urls = Vec::new();
    let mut built = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let platform = platform_of(arch);
        let layout =
            images::platform_layout(&ws.join(format!("image-{arch}")), "latest", &platform);
        let out = use_action(&[
            ("mode", "push-image"),
            ("path", &format!("image-{arch}")),
            ("image", &format!("{host}/gh:v1-linux-{arch}")),
            ("labels", "org.example.arch=native"),
        ]);
        let config = run_ok(
            support::tool("skopeo")
                .args(["inspect", "--config", "--tls-verify=false"])
                .arg(format!("docker://{}", out.outputs["image-url"])),
        );
        assert!(config.contains("org.example.arch"), "the label: {config}");
        assert_ne!(
            out.outputs["digest"],
            layout.digest.to_string(),
            "relabelled"
        );
        urls.push(out.outputs["image-url"].clone());
        built.insert(platform.label(), out.outputs["digest"].clone());
    }
    urls.reverse();
    let index = use_action(&[
        ("mode", "assemble-index"),
        ("image", &format!("{host}/gh:v1")),
        ("platform-images", &urls.join("\n")),
        ("require-platforms", "linux/amd64,linux/arm64"),
    ]);
    check_index(&format!("{host}/gh:v1"), &index.outputs["digest"], &built);
    assert_eq!(
        index.outputs["image-url"],
        format!("{host}/gh@{}", index.outputs["digest"])
    );
    let platforms: serde_json::Value =
        serde_json::from_str(&index.outputs["platform-results"]).unwrap();
    assert_eq!(platforms.as_array().map(Vec::len), Some(2));
    // Every declared output is one ocistep wrote.
    let mut written: BTreeSet<String> = BTreeSet::new();
    for run in [&pushed, &pulled, &index] {
        written.extend(run.written["run"].keys().cloned());
    }
    let declared: BTreeSet<String> = a.outputs.keys().cloned().collect();
    assert_eq!(written, declared, "outputs written vs declared");
}

/// Credentials where docker/login-action leaves them, the runner's
/// `~/.docker/config.json`, are used with no input at all.
#[test]
fn action_uses_the_runners_docker_config() {
    let registry = Registry::start_with(RegistryOptions::with_basic_auth("ci", "s3cret"));
    let host = registry.host();
    let a = action();
    let scratch = tempfile::tempdir().unwrap();
    let (runner, server, _) = runner_and_release(scratch.path());
    tree::sample_tree(&runner.workspace.join("src"));
    let image = format!("{host}/private:v1");
    let with = [
        ("mode", "push-source-bundle"),
        ("path", "src"),
        ("image", image.as_str()),
        ("download-url", &server.url()),
        ("version", VERSION),
    ];
    let refused = runner.use_action(&a, &with);
    assert_eq!(
        refused
            .failed
            .as_ref()
            .map(|(step, o)| (step.as_str(), o.status.code())),
        Some(("run", Some(3))),
        "no credentials: exit 3 ({})",
        stderr_of(&refused)
    );
    let config = registry.docker_config_dir().unwrap().join("config.json");
    std::fs::create_dir_all(runner.home.join(".docker")).unwrap();
    std::fs::copy(config, runner.home.join(".docker/config.json")).unwrap();
    let pushed = runner.use_action(&a, &with);
    assert!(pushed.failed.is_none(), "{}", stderr_of(&pushed));
    assert!(pushed.outputs["image-url"].starts_with(&format!("{host}/private@sha256:")));
}

#[test]
fn action_refuses_a_binary_that_does_not_match_sha256sums() {
    let a = action();
    let scratch = tempfile::tempdir().unwrap();
    let release = scratch.path().join("release");
    let mut tampered = binary();
    tampered.extend_from_slice(b"tampered");
    publish(&release, &tampered, &binary());
    let server = FileServer::start(&release);
    let runner = Runner::new(&scratch.path().join("runner"));
    let run = runner.use_action(
        &a,
        &[
            ("mode", "push-source-bundle"),
            ("image", "oci:layout:v1"),
            ("download-url", &server.url()),
            ("version", VERSION),
        ],
    );
    let stderr = stderr_of(&run);
    assert_eq!(
        run.failed.as_ref().map(|(s, _)| s.as_str()),
        Some("install")
    );
    assert!(stderr.contains("refusing it"), "{stderr}");
    assert!(!cached(&runner).exists(), "nothing cached");
    assert!(
        !runner.workspace.join("layout").exists(),
        "ocistep never ran"
    );

    // A SHA256SUMS other than the one the action pins is refused too, and
    // the pinned one is taken.
    let pinned_sums = publish(&release, &binary(), &binary());
    let other_sums = sha256_hex(b"another release's SHA256SUMS");
    let install = |pin: &str| {
        support::tool("bash")
            .arg(repo().join("action/install.sh"))
            .env("OCISTEP_PINNED_VERSION", VERSION)
            .env("OCISTEP_PINNED_SUMS", pin)
            .env("OCISTEP_DOWNLOAD_URL", server.url())
            .env("RUNNER_TOOL_CACHE", &runner.tool_cache)
            .env("RUNNER_TEMP", &runner.root)
            .env("RUNNER_ARCH", Runner::arch())
            .output()
            .unwrap()
    };
    let wrong = install(&other_sums);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("as this action pins"));
    assert!(!cached(&runner).exists(), "nothing cached");
    let right = install(&pinned_sums);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(cached(&runner).join("ocistep").is_file());
}

/// Every input reaches a step, and every flag the run script passes is one
/// ocistep knows.
#[test]
fn action_passes_every_input_and_only_known_flags() {
    let a = action();
    let envs: String = a
        .steps
        .iter()
        .flat_map(|s| s.env.values().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    for name in a.inputs.keys() {
        assert!(
            envs.contains(&format!("inputs.{name} ")),
            "input {name} is never used"
        );
    }
    let flags = known_flags();
    let script = read("action/run.sh");
    let passed = script_flags(&script);
    assert!(passed.contains("--insecure") && passed.contains("--annotation"));
    for flag in &passed {
        assert!(
            flags.contains(flag),
            "action/run.sh passes unknown flag {flag}"
        );
    }
}

#[test]
fn example_workflow_uses_the_action_as_declared() {
    let a = action();
    let wf = documents(".github/workflows/multiarch-example.yml").remove(0);
    let mut uses_action = 0;
    for (job_name, job) in at(&wf, "jobs").and_then(Value::as_mapping).unwrap() {
        let job_name = job_name.as_str().unwrap();
        assert!(
            job.get("permissions").is_some(),
            "job {job_name}: explicit permissions"
        );
        for step in list(job, "steps") {
            let Some(uses) = string(step, "uses") else {
                continue;
            };
            if uses.starts_with("./") {
                uses_action += 1;
                let with: BTreeSet<String> = step
                    .get("with")
                    .and_then(Value::as_mapping)
                    .map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                for w in &with {
                    assert!(
                        a.inputs.contains_key(w),
                        "{job_name}: the action has no input {w}"
                    );
                }
                for (k, (_, required)) in &a.inputs {
                    assert!(
                        !required || with.contains(k),
                        "{job_name}: input {k} is required"
                    );
                }
            } else {
                let (_, git_ref) = uses.split_once('@').expect("uses: owner/repo@ref");
                assert!(
                    git_ref.len() == 40 && git_ref.chars().all(|c| c.is_ascii_hexdigit()),
                    "{job_name}: {uses} is not pinned by a full commit SHA"
                );
            }
        }
    }
    assert!(
        uses_action >= 4,
        "the example uses the action for every mode"
    );
}
