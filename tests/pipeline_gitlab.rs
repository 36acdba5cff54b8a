//! The GitLab CI/CD component: it declares what it uses, and its template
//! jobs run against a real registry, their script lines run by bash with
//! `$[[ inputs.x ]]` substituted and the dotenv reports passed on; and the
//! example pipeline, with the component included, run by gitlab-ci-local.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use ocistep::oci::digest::Digest;
use support::ci::*;
use support::file_server::FileServer;
use support::images::{self};
use support::{run_ok, tree, Registry};

// ---------------------------------------------------------------------------
// GitLab CI/CD component
// ---------------------------------------------------------------------------

/// The component: its inputs' defaults and its jobs.
struct Component {
    inputs: BTreeMap<String, String>,
    jobs: serde_yaml_ng::Mapping,
}

fn component() -> Component {
    let docs = documents("templates/ocistep.yml");
    assert_eq!(docs.len(), 2, "a spec: header and the jobs");
    let inputs = at(&docs[0], "spec.inputs")
        .and_then(Value::as_mapping)
        .expect("spec: inputs:")
        .iter()
        .map(|(k, v)| {
            let default = v.get("default").map(|d| match d {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
            });
            (
                k.as_str().unwrap().to_string(),
                default.expect("every input has a default"),
            )
        })
        .collect();
    let jobs = docs[1].as_mapping().expect("jobs").clone();
    Component { inputs, jobs }
}

/// Replaces every `$[[ inputs.x ]]`.
fn interpolate(s: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("]]").expect("closed $[[ ]]") + start;
        let expr = rest[start + 3..end].trim();
        let name = expr
            .strip_prefix("inputs.")
            .unwrap_or_else(|| panic!("unexpected interpolation $[[ {expr} ]]"));
        out.push_str(
            inputs
                .get(name)
                .unwrap_or_else(|| panic!("$[[ {expr} ]]: no such input")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Deep merge as GitLab's `extends` does: maps merge, the rest is replaced.
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match out.get(k) {
                    Some(bv) => merge(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Mapping(out)
        }
        _ => over.clone(),
    }
}

/// A job with its `extends` resolved.
fn resolve_job(c: &Component, name: &str) -> Value {
    let job = c
        .jobs
        .get(name)
        .unwrap_or_else(|| panic!("no job {name} in the component"))
        .clone();
    let Some(parent) = job
        .get("extends")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return job;
    };
    let mut own = job;
    own.as_mapping_mut().unwrap().remove("extends");
    merge(&resolve_job(c, &parent), &own)
}

/// Runs a resolved job's before_script and script in one bash, as GitLab's
/// shell does, in `dir`, with the job's variables and `env`.
fn run_job(
    job: &Value,
    inputs: &BTreeMap<String, String>,
    dir: &Path,
    env: &BTreeMap<String, String>,
) {
    let lines: Vec<String> = strings(job, "before_script")
        .into_iter()
        .chain(strings(job, "script"))
        .map(|l| interpolate(&l, inputs))
        .collect();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ocistep")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = support::tool("bash");
    cmd.arg("-c")
        .arg(format!("set -eo pipefail\n{}", lines.join("\n")))
        .current_dir(dir)
        .env("PATH", path);
    if let Some(vars) = job.get("variables").and_then(Value::as_mapping) {
        for (k, v) in vars {
            let v = interpolate(v.as_str().expect("string variables"), inputs);
            cmd.env(k.as_str().unwrap(), v);
        }
    }
    cmd.envs(env);
    run_ok(&mut cmd);
}

/// `KEY=value` lines of a dotenv report.
fn dotenv(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| {
            panic!(
                "the job wrote no dotenv report {} ({e}): every mode must publish its results to --dotenv-file",
                path.display()
            )
        })
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn gitlab_component_declares_what_it_uses() {
    let c = component();
    let flags = known_flags();
    let text = read("templates/ocistep.yml");
    let body = text.split("\n---\n").nth(1).unwrap();
    // Every interpolation names an input; every input is used.
    let mut used = BTreeSet::new();
    let mut rest = body;
    while let Some(start) = rest.find("$[[") {
        let end = rest[start..].find("]]").unwrap() + start;
        let expr = rest[start + 3..end].trim();
        let name = expr.strip_prefix("inputs.").expect("$[[ inputs.x ]]");
        assert!(c.inputs.contains_key(name), "$[[ {expr} ]]: no such input");
        used.insert(name.to_string());
        rest = &rest[end + 2..];
    }
    for name in c.inputs.keys() {
        assert!(used.contains(name), "input {name} is never used");
    }
    for mode in [
        "push-source-bundle",
        "pull-source-bundle",
        "push-image",
        "assemble-index",
    ] {
        let job = resolve_job(&c, &format!(".ocistep-{mode}"));
        assert_eq!(
            string(&job, "artifacts.reports.dotenv").as_deref(),
            Some("ocistep.env"),
            "{mode}: dotenv report"
        );
        let script = strings(&job, "script").join("\n");
        assert!(
            script.contains(&format!("--{mode}")),
            "{mode}: runs its mode"
        );
        assert!(
            script.contains("--dotenv-file=ocistep.env"),
            "{mode}: writes the report"
        );
        let words: Vec<&str> = script.split_whitespace().collect();
        for flag in flags_of(words.iter().copied()) {
            let flag = flag.trim_matches('"').to_string();
            assert!(flags.contains(&flag), "{mode}: ocistep has no flag {flag}");
        }
        assert!(
            string(&job, "image.name").is_some_and(|i| i.contains("$[[ inputs.image ]]")),
            "{mode}: image from the input"
        );
    }
}

#[test]
fn gitlab_component_jobs_run_against_a_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let c = component();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let inputs = c.inputs.clone();
    let base_env = |job_id: u32| {
        BTreeMap::from([
            ("CI_JOB_ID".to_string(), job_id.to_string()),
            (
                "CI_COMMIT_TIMESTAMP".to_string(),
                SOURCE_RFC3339.to_string(),
            ),
        ])
    };

    // push-source-bundle: the checkout is the job's directory.
    let checkout = root.join("job-source");
    tree::sample_tree(&checkout);
    let before = tree::snapshot(&checkout);
    let mut env = base_env(1);
    env.insert("OCISTEP_REF".into(), format!("{host}/gl:v1-source"));
    run_job(
        &resolve_job(&c, ".ocistep-push-source-bundle"),
        &inputs,
        &checkout,
        &env,
    );
    let source_report = dotenv(&checkout.join("ocistep.env"));
    let bundle = source_report["OCISTEP_IMAGE_URL"].clone();
    assert!(
        bundle.starts_with(&format!("{host}/gl@sha256:")),
        "{bundle}"
    );
    assert_eq!(source_report["OCISTEP_DIGEST"], digest_of(&bundle));

    // pull-source-bundle: the bundle from the needed job's report.
    let pull_dir = root.join("job-pull");
    std::fs::create_dir_all(&pull_dir).unwrap();
    let mut env = base_env(2);
    env.extend(source_report.clone());
    run_job(
        &resolve_job(&c, ".ocistep-pull-source-bundle"),
        &inputs,
        &pull_dir,
        &env,
    );
    let pull_report = dotenv(&pull_dir.join("ocistep.env"));
    assert_eq!(
        pull_report["OCISTEP_DIGEST"],
        source_report["OCISTEP_DIGEST"]
    );
    assert_eq!(pull_report["OCISTEP_SOURCE_TIMESTAMP"], SOURCE_EPOCH);
    let mut pulled = tree::snapshot(&pull_dir.join("source"));
    let mut expected = before.clone();
    expected.remove("ocistep.env");
    pulled.remove("ocistep.env");
    assert_eq!(pulled, expected, "the pulled source");

    // push-image, one job per platform; their references go to the index job
    // as artifacts, in whatever order the jobs finished.
    let index_dir = root.join("job-index");
    std::fs::create_dir_all(index_dir.join("ocistep-refs")).unwrap();
    let mut built = BTreeMap::new();
    for (n, arch) in ["amd64", "arm64"].iter().enumerate() {
        let dir = root.join(format!("job-push-{arch}"));
        let platform = platform_of(arch);
        let layout = images::platform_layout(&dir.join("image"), "latest", &platform);
        let mut env = base_env(10 + n as u32);
        env.insert("OCISTEP_REF".into(), format!("{host}/gl:v1-linux-{arch}"));
        run_job(&resolve_job(&c, ".ocistep-push-image"), &inputs, &dir, &env);
        let report = dotenv(&dir.join("ocistep.env"));
        assert_eq!(report["OCISTEP_DIGEST"], layout.digest.to_string());
        let ref_file = dir.join(format!("ocistep-refs/{}.ref", 10 + n));
        assert_eq!(
            std::fs::read_to_string(&ref_file).unwrap(),
            report["OCISTEP_IMAGE_URL"]
        );
        std::fs::copy(
            &ref_file,
            index_dir.join(format!("ocistep-refs/{}.ref", 10 + n)),
        )
        .unwrap();
        built.insert(platform.label(), layout.digest.to_string());
    }

    // assemble-index.
    let mut env = base_env(20);
    env.insert("OCISTEP_REF".into(), format!("{host}/gl:v1"));
    env.insert(
        "OCISTEP_REQUIRE_PLATFORMS".into(),
        "linux/amd64,linux/arm64".into(),
    );
    run_job(
        &resolve_job(&c, ".ocistep-assemble-index"),
        &inputs,
        &index_dir,
        &env,
    );
    let report = dotenv(&index_dir.join("ocistep.env"));
    check_index(&format!("{host}/gl:v1"), &report["OCISTEP_DIGEST"], &built);
    assert_eq!(
        report["OCISTEP_IMAGE_URL"],
        format!("{host}/gl@{}", report["OCISTEP_DIGEST"])
    );
    let platforms: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(index_dir.join("ocistep-platforms.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(platforms.as_array().map(Vec::len), Some(2));
    assert!(report.contains_key("OCISTEP_PLATFORM_RESULTS"));
}

// ---------------------------------------------------------------------------
// The example pipeline, run by gitlab-ci-local
// ---------------------------------------------------------------------------

/// gitlab-ci-local as scripts/install-gitlab-ci-local.sh installs it.
fn gitlab_ci_local() -> PathBuf {
    let path = repo().join(".tools/gitlab-ci-local/node_modules/.bin/gitlab-ci-local");
    assert!(
        path.is_file(),
        "missing test dependency gitlab-ci-local: run scripts/install-gitlab-ci-local.sh \
         (needs npm; .ci/run does it), and install git and rsync"
    );
    path
}

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        support::tool("git")
            .args([
                "-c",
                "user.name=ocistep",
                "-c",
                "user.email=ocistep@example.com",
            ])
            .args(args)
            .current_dir(dir),
    )
    .trim()
    .to_string()
}

/// The example pipeline with the component included from its own project,
/// run by gitlab-ci-local's shell executor against a loopback registry:
/// the component's jobs run this build's ocistep (as its image would), the
/// per-architecture build jobs install it with .ocistep-install from a
/// "release" served on loopback, pull the bundle, build it with buildah and
/// push; the index they make up has both platforms.
#[test]
fn example_pipeline_runs_with_gitlab_ci_local() {
    let gitlab_ci_local = gitlab_ci_local();
    support::require_tool("rsync");
    support::require_tool("buildah");
    let registry = Registry::start();
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();

    // The release .ocistep-install downloads: this build's binary.
    let version = component().inputs["version"].clone();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        _ => "arm64",
    };
    let release = scratch.path().join(format!("release/v{version}"));
    std::fs::create_dir_all(&release).unwrap();
    let asset = format!("ocistep-{version}-linux-{arch}");
    std::fs::copy(env!("CARGO_BIN_EXE_ocistep"), release.join(&asset)).unwrap();
    run_ok(
        support::tool("bash")
            .arg("-c")
            .arg(format!("sha256sum {asset} > SHA256SUMS"))
            .current_dir(&release),
    );
    let server = FileServer::start(&scratch.path().join("release"));

    // The project: the component, a source tree with a Containerfile, and
    // a remote that makes it the component's project, ocistep/ocistep.
    let project = scratch.path().join("project");
    tree::sample_tree(&project.join("app"));
    tree::write(&project, "Containerfile", b"FROM scratch\nCOPY . /\n");
    tree::write(
        &project,
        "templates/ocistep.yml",
        read("templates/ocistep.yml").as_bytes(),
    );
    git(&project, &["init", "-q", "-b", "main"]);
    git(
        &project,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.com:ocistep/ocistep.git",
        ],
    );
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-qm", "source"]);
    git(
        &project,
        &["update-ref", "refs/remotes/origin/main", "HEAD"],
    );
    git(
        &project,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );
    // GitLab includes a component of the pipeline's own project at the
    // pipeline's commit; the example names a release.
    let sha = git(&project, &["rev-parse", "HEAD"]);
    let example = read("examples/gitlab/.gitlab-ci.yml");
    let release_ref = format!("ocistep/ocistep/ocistep@{version}");
    assert!(
        example.contains(&release_ref),
        "the example includes {release_ref}"
    );
    // Each per-architecture job runs on a runner of its architecture and
    // keeps the tree there: no source in its artifacts.
    let jobs = serde_yaml_ng::from_str::<Value>(&example).unwrap();
    for (name, job) in jobs.as_mapping().unwrap() {
        if at(job, "parallel.matrix").is_none() {
            continue;
        }
        let name = name.as_str().unwrap();
        assert!(
            strings(job, "tags").iter().any(|t| t.contains("$ARCH")),
            "{name}: tags from the matrix"
        );
        for path in strings(job, "artifacts.paths") {
            assert!(
                !path.starts_with("source"),
                "{name}: the tree moves as {path}"
            );
        }
    }
    let pipeline = example.replace(&release_ref, &format!("ocistep/ocistep/ocistep@{sha}"));
    tree::write(&project, ".gitlab-ci.yml", pipeline.as_bytes());

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ocistep")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = support::tool("node")
        .arg(&gitlab_ci_local)
        .args(["--force-shell-executor", "--shell-isolation"])
        .args(["--input", &format!("download-url={}", server.url())])
        .args(["--variable", &format!("CI_REGISTRY_IMAGE={host}/gl")])
        .args(["--ignore-predefined-vars", "CI_REGISTRY_IMAGE"])
        .current_dir(&project)
        .env("PATH", path)
        .output()
        .expect("run gitlab-ci-local");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "gitlab-ci-local failed:\n{log}");
    for job in ["source-bundle", "build: [amd64]", "build: [arm64]", "index"] {
        assert!(
            log.contains(&format!("PASS  {job}")),
            "{job} did not pass:\n{log}"
        );
    }
    assert!(
        log.contains(&format!("{asset}: OK")),
        "the release was verified:\n{log}"
    );

    // The index at IMAGE:TAG, of the images each build job pushed.
    let tag = &sha[..8];
    let mut children = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let raw = images::inspect_raw(&format!("docker://{host}/gl/app:{tag}-linux-{arch}"));
        children.insert(format!("linux/{arch}"), Digest::of(&raw).to_string());
    }
    let index = format!("{host}/gl/app:{tag}");
    let digest = Digest::of(&images::inspect_raw(&format!("docker://{index}"))).to_string();
    check_index(&index, &digest, &children);
}
