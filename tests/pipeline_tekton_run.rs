//! The Tekton tasks run against the binary and a real registry, with their
//! parameters substituted as Tekton would: the Pipeline in order
//! (push-source-bundle, the matrixed build task for each architecture, whose
//! ocistep step pulls the bundle and whose buildah step is stood in for by
//! an umoci-made image of that platform pushed with skopeo, then
//! assemble-index fed with the build results `IMAGE_REF[*]` in another
//! order than the matrix's; the index is checked with skopeo), and the pull
//! and push-image tasks on their own. Steps in the busybox image run their
//! scripts with busybox's sh; every run's results are read as Tekton Chains
//! reads them, and what it would sign must exist in the registry.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ocistep::oci::digest::Digest;
use support::chains::{self, ResultValue};
use support::ci::*;
use support::images::{self, PushFormat, TestPlatform};
use support::tekton::*;
use support::{run_ok, tree, Registry, Run};

// ---------------------------------------------------------------------------
// Tekton: running the steps
// ---------------------------------------------------------------------------

/// One TaskRun's files: results and volumes.
struct TaskRun {
    dir: PathBuf,
    params: BTreeMap<String, Param>,
    workspaces: BTreeMap<String, Option<PathBuf>>,
}

impl TaskRun {
    fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    fn result(&self, name: &str) -> String {
        std::fs::read_to_string(self.results_dir().join(name)).unwrap_or_default()
    }

    /// Every declared result as Tekton reports it: an object result's file
    /// is JSON holding exactly the declared properties, as strings.
    fn results(&self, t: &Task) -> BTreeMap<String, ResultValue> {
        list(&t.doc, "spec.results")
            .into_iter()
            .map(|r| {
                let name = string(r, "name").unwrap();
                let text = self.result(&name);
                let value = if string(r, "type").as_deref() == Some("object") {
                    let object: BTreeMap<String, String> = serde_json::from_str(&text)
                        .unwrap_or_else(|e| {
                            panic!("{name}: {text:?} is no object of strings: {e}")
                        });
                    let declared: BTreeSet<String> = at(r, "properties")
                        .and_then(serde_yaml_ng::Value::as_mapping)
                        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default();
                    let keys: BTreeSet<String> = object.keys().cloned().collect();
                    assert_eq!(keys, declared, "{name}: keys as declared");
                    ResultValue::Object(object)
                } else {
                    ResultValue::Str(text)
                };
                (name, value)
            })
            .collect()
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    fn param(&self, name: &str) -> &str {
        self.params[name].str()
    }

    /// Substitutes a string field the way the TaskRun controller does.
    fn substitute(&self, t: &Task, s: &str) -> String {
        let mut out = s.to_string();
        for r in tekton_refs(s) {
            let parts: Vec<&str> = r.split('.').collect();
            let value = match parts.as_slice() {
                ["params", name] => self.params[*name].str().to_string(),
                ["results", name, "path"] => {
                    assert!(t.results.contains(*name));
                    self.results_dir().join(name).to_string_lossy().into_owned()
                }
                ["workspaces", name, "path"] => self.workspaces[*name]
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                ["workspaces", name, "bound"] => self.workspaces[*name].is_some().to_string(),
                _ => panic!("unexpected $({r})"),
            };
            out = out.replace(&format!("$({r})"), &value);
        }
        out
    }
}

/// Runs a Task: its ocistep steps with the real binary, any other step with
/// `stand_in`. Returns the TaskRun with its results.
fn run_task(
    t: &Task,
    given: &BTreeMap<String, Param>,
    workspaces: &BTreeMap<String, Option<PathBuf>>,
    dir: &Path,
    stand_in: &mut dyn FnMut(&str, &TaskRun),
) -> TaskRun {
    let mut params = BTreeMap::new();
    for (name, spec) in &t.params {
        let value = given
            .get(name)
            .cloned()
            .or_else(|| spec.default.clone())
            .unwrap_or_else(|| panic!("{}: required param {name} not given", t.name));
        assert_eq!(
            matches!(value, Param::Arr(_)),
            spec.array,
            "{}: param {name} has the wrong type",
            t.name
        );
        params.insert(name.clone(), value);
    }
    for name in given.keys() {
        assert!(t.params.contains_key(name), "{}: no param {name}", t.name);
    }
    let mut ws = BTreeMap::new();
    for (name, optional) in &t.workspaces {
        let bound = workspaces.get(name).cloned().flatten();
        assert!(
            bound.is_some() || *optional,
            "{}: workspace {name} must be bound",
            t.name
        );
        ws.insert(name.clone(), bound);
    }
    std::fs::create_dir_all(dir.join("results")).unwrap();
    let run = TaskRun {
        dir: dir.to_path_buf(),
        params,
        workspaces: ws,
    };
    for volume in list(&t.doc, "spec.volumes") {
        std::fs::create_dir_all(run.volume(&string(volume, "name").unwrap())).unwrap();
    }

    for step in t.steps() {
        let step_name = string(step, "name").unwrap();
        if is_busybox(step) {
            run_script(t, step, &run);
            continue;
        }
        if !Task::is_ocistep(step) {
            stand_in(&step_name, &run);
            continue;
        }
        let mounts: Vec<(String, PathBuf)> = list(step, "volumeMounts")
            .iter()
            .map(|m| {
                (
                    string(m, "mountPath").unwrap(),
                    run.volume(&string(m, "name").unwrap()),
                )
            })
            .collect();
        let remap = |s: String| {
            mounts.iter().fold(s, |s, (mount, local)| {
                s.replace(mount.as_str(), &local.to_string_lossy())
            })
        };
        let mut argv = Vec::new();
        for arg in strings(step, "args") {
            let refs = tekton_refs(&arg);
            match refs.as_slice() {
                // An array param as a whole argument: one argument per element.
                [r] if arg == format!("$({r})") && r.ends_with("[*]") => {
                    let name = r.trim_start_matches("params.").trim_end_matches("[*]");
                    match &run.params[name] {
                        Param::Arr(items) => argv.extend(items.iter().cloned()),
                        Param::Str(_) => panic!("$({r}) on a string param"),
                    }
                }
                _ => argv.push(remap(run.substitute(t, &arg))),
            }
        }
        let mut cmd = Run::new();
        cmd.args(&argv).current_dir(dir);
        for env in list(step, "env") {
            cmd.env(
                string(env, "name").unwrap(),
                remap(run.substitute(t, &string(env, "value").unwrap_or_default())),
            );
        }
        let output = cmd.output();
        assert!(
            output.status.success(),
            "{} step {step_name}: ocistep {argv:?} failed ({}):\n{}",
            t.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    run
}
/// A step in the busybox image (the Tasks' results steps).
fn is_busybox(step: &serde_yaml_ng::Value) -> bool {
    string(step, "image").is_some_and(|i| i.contains("/busybox:"))
}

/// Runs a script step with busybox's sh, its env substituted as Tekton does.
fn run_script(t: &Task, step: &serde_yaml_ng::Value, run: &TaskRun) {
    let script = string(step, "script").expect("a busybox step has a script");
    assert!(script.starts_with("#!/bin/sh\n"), "a POSIX sh script");
    let file = run
        .dir
        .join(format!("{}.sh", string(step, "name").unwrap()));
    std::fs::write(&file, run.substitute(t, &script)).unwrap();
    let mut cmd = support::tool("busybox");
    cmd.arg("sh").arg(&file).current_dir(&run.dir);
    for env in list(step, "env") {
        cmd.env(
            string(env, "name").unwrap(),
            run.substitute(t, &string(env, "value").unwrap_or_default()),
        );
    }
    run_ok(&mut cmd);
}

/// What Tekton Chains reads from a push's results: `IMAGE_URL` the tag
/// pushed, joined with `IMAGE_DIGEST` into one valid pinned reference,
/// and `ARTIFACT_OUTPUTS` the same repository and digest; the tag and the
/// reference Chains signs both resolve to that manifest in the registry.
fn check_chains_outputs(results: &BTreeMap<String, ResultValue>, tag: &str) {
    let reading = chains::read(results);
    assert!(reading.errors.is_empty(), "Chains: {:?}", reading.errors);
    let ResultValue::Str(digest) = &results["IMAGE_DIGEST"] else {
        panic!("IMAGE_DIGEST is a string")
    };
    assert_eq!(results["IMAGE_URL"], ResultValue::Str(tag.to_string()));
    let repository = tag.rsplit_once(':').unwrap().0;
    let pinned = format!("{repository}@{digest}");
    assert_eq!(results["IMAGE_REF"], ResultValue::Str(pinned.clone()));
    assert_eq!(reading.images, BTreeSet::from([pinned.clone()]), "signed");
    assert_eq!(
        reading.outputs,
        BTreeSet::from([(repository.to_string(), digest.clone())]),
        "ARTIFACT_OUTPUTS"
    );
    for reference in [tag, pinned.as_str()] {
        let raw = images::inspect_raw(&format!("docker://{reference}"));
        assert_eq!(&Digest::of(&raw).to_string(), digest, "{reference}");
    }
}

#[test]
fn pipeline_runs_in_order_against_a_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let tasks = all_tasks();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();

    // Workspaces: the source tree, and credentials (none needed here, but a
    // bound dockerconfig must work as well as an unbound one).
    let source = root.join("source-ws");
    tree::sample_tree(&source);
    tree::write(&source, "Containerfile", b"FROM scratch\nCOPY . /\n");
    let before = tree::snapshot(&source);
    let dockerconfig = root.join("dockerconfig-ws");
    tree::write(&dockerconfig, "config.json", br#"{"auths":{}}"#);

    let docs = documents("pipelines/multiarch-build.yaml");
    let pipeline = docs
        .iter()
        .find(|d| string(d, "kind").as_deref() == Some("Pipeline"))
        .unwrap();
    let mut state = PipelineState {
        params: BTreeMap::new(),
        results: BTreeMap::new(),
        matrixed: BTreeSet::new(),
    };
    let mut given = BTreeMap::from([
        ("IMAGE".to_string(), Param::Str(format!("{host}/app"))),
        ("TAG".to_string(), Param::Str("v1".into())),
        (
            "SOURCE_TIMESTAMP".to_string(),
            Param::Str(SOURCE_EPOCH.into()),
        ),
    ]);
    for p in list(pipeline, "spec.params") {
        let name = string(p, "name").unwrap();
        let value = given
            .remove(&name)
            .or_else(|| p.get("default").map(Param::from_yaml))
            .unwrap_or_else(|| panic!("pipeline param {name} needs a value"));
        state.params.insert(name, value);
    }
    assert!(given.is_empty(), "unknown pipeline params {given:?}");
    let pipeline_ws: BTreeMap<String, Option<PathBuf>> = BTreeMap::from([
        ("source".to_string(), Some(source.clone())),
        ("dockerconfig".to_string(), Some(dockerconfig.clone())),
    ]);

    // pipeline task name -> platform -> pushed image digest (the stand-in's).
    let mut built: BTreeMap<String, String> = BTreeMap::new();
    for (i, pt) in list(pipeline, "spec.tasks").into_iter().enumerate() {
        let pt_name = string(pt, "name").unwrap();
        let t = task(&tasks, &string(pt, "taskRef.name").unwrap());
        let params: BTreeMap<String, Param> = list(pt, "params")
            .iter()
            .map(|p| (string(p, "name").unwrap(), state.value(&p["value"])))
            .collect();
        let workspaces: BTreeMap<String, Option<PathBuf>> = list(pt, "workspaces")
            .iter()
            .map(|w| {
                (
                    string(w, "name").unwrap(),
                    pipeline_ws[&string(w, "workspace").unwrap()].clone(),
                )
            })
            .collect();
        // The matrix: one TaskRun per combination.
        let mut combinations: Vec<BTreeMap<String, Param>> = vec![BTreeMap::new()];
        for mp in list(pt, "matrix.params") {
            let name = string(mp, "name").unwrap();
            let Param::Arr(values) = state.value(&mp["value"]) else {
                panic!("matrix param {name} is not an array");
            };
            combinations = combinations
                .into_iter()
                .flat_map(|c| {
                    values
                        .iter()
                        .map(|v| {
                            let mut c = c.clone();
                            c.insert(name.clone(), Param::Str(v.clone()));
                            c
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        if pt.get("matrix").is_some() {
            state.matrixed.insert(pt_name.clone());
            assert!(combinations.len() >= 2, "the matrix fans out");
        }
        let mut results: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (j, combination) in combinations.iter().enumerate() {
            let mut all = params.clone();
            all.extend(combination.clone());
            let dir = root.join(format!("run-{i}-{pt_name}-{j}"));
            let mut stand_in = |step: &str, run: &TaskRun| {
                assert_eq!(
                    step, "build-and-push",
                    "only the buildah step is stood in for"
                );
                // The pulled source is the source workspace, byte for byte.
                let pulled = run.volume("source").join("tree");
                assert_eq!(tree::snapshot(&pulled), before, "the pulled source");
                assert_eq!(run.result("SOURCE_TIMESTAMP"), SOURCE_EPOCH);
                // What buildah would push: IMAGE:TAG-linux-ARCH.
                let arch = run.param("ARCH");
                let image = run.param("IMAGE");
                let repo = image.strip_prefix(&format!("{host}/")).unwrap();
                let tag = format!("{}-linux-{arch}", run.param("TAG"));
                let pushed = images::push_platform_image(
                    &host,
                    repo,
                    &tag,
                    &platform_of(arch),
                    PushFormat::Oci,
                );
                let results = run.results_dir();
                std::fs::write(results.join("IMAGE_DIGEST"), &pushed.digest).unwrap();
                std::fs::write(results.join("IMAGE_URL"), format!("{image}:{tag}")).unwrap();
                let pinned = format!("{image}@{}", pushed.digest);
                std::fs::write(results.join("IMAGE_REF"), pinned).unwrap();
                let outputs = serde_json::json!({
                    "uri": image, "digest": pushed.digest, "isBuildArtifact": "true"
                });
                std::fs::write(results.join("ARTIFACT_OUTPUTS"), outputs.to_string()).unwrap();
                built.insert(format!("linux/{arch}"), pushed.digest.clone());
            };
            let run = run_task(t, &all, &workspaces, &dir, &mut stand_in);
            let tag = match &all["IMAGE"] {
                // The build task pushes IMAGE:TAG-linux-ARCH.
                Param::Str(image) if all.contains_key("ARCH") => {
                    format!("{image}:{}-linux-{}", all["TAG"].str(), all["ARCH"].str())
                }
                image => image.str().to_string(),
            };
            check_chains_outputs(&run.results(t), &tag);
            for r in &t.results {
                results.entry(r.clone()).or_default().push(run.result(r));
            }
        }
        state.results.insert(pt_name, results);
    }

    // The bundle.
    let bundle = &state.results["push-source-bundle"];
    let bundle_ref = &bundle["IMAGE_REF"][0];
    assert_eq!(digest_of(bundle_ref), bundle["IMAGE_DIGEST"][0]);
    assert!(bundle_ref.starts_with(&format!("{host}/app@sha256:")));
    assert_eq!(bundle["IMAGE_URL"][0], format!("{host}/app:v1-source"));
    assert_eq!(
        tree::snapshot(&source),
        before,
        "the source workspace is untouched"
    );

    // The builds, each pinned by digest.
    let build = &state.results["build"];
    assert_eq!(build["IMAGE_REF"].len(), 2);
    for pinned in &build["IMAGE_REF"] {
        assert!(
            pinned.starts_with(&format!("{host}/app@sha256:")),
            "{pinned}"
        );
    }

    // The index.
    let index = &state.results["assemble-index"];
    let index_digest = &index["IMAGE_DIGEST"][0];
    assert_eq!(index["IMAGE_REF"][0], format!("{host}/app@{index_digest}"));
    assert_eq!(index["IMAGE_URL"][0], format!("{host}/app:v1"));
    check_index(&format!("{host}/app:v1"), index_digest, &built);
    let platforms: serde_json::Value =
        serde_json::from_str(&index["PLATFORM_RESULTS"][0]).expect("PLATFORM_RESULTS is JSON");
    assert_eq!(platforms.as_array().map(Vec::len), Some(2), "{platforms}");
    for (platform, digest) in &built {
        assert!(
            platforms.to_string().contains(digest.as_str()),
            "PLATFORM_RESULTS has no {platform} {digest}: {platforms}"
        );
    }

    // The pipeline's results are the index task's.
    for r in list(pipeline, "spec.results") {
        let name = string(r, "name").unwrap();
        let value = state.substitute(&string(r, "value").unwrap());
        assert_eq!(value, index[&name][0], "pipeline result {name}");
    }

    // The index does not depend on the order of the matrix results: the
    // same images in matrix order give the same index.
    let mut in_order = build["IMAGE_REF"].clone();
    in_order.sort();
    let again = run_task(
        task(&tasks, "ocistep-assemble-index"),
        &BTreeMap::from([
            (
                "IMAGE".to_string(),
                Param::Str(format!("{host}/app:v1-again")),
            ),
            ("PLATFORM_IMAGES".to_string(), Param::Arr(in_order)),
            (
                "REQUIRE_PLATFORMS".to_string(),
                Param::Str("linux/amd64,linux/arm64".into()),
            ),
        ]),
        &ws(&[]),
        &root.join("assemble-again"),
        &mut |s, _| panic!("unexpected step {s}"),
    );
    assert_eq!(&again.result("IMAGE_DIGEST"), index_digest);
}

#[test]
fn pull_and_push_image_tasks_run_standalone() {
    let registry = Registry::start();
    let host = registry.host();
    let tasks = all_tasks();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let never = &mut |s: &str, _: &TaskRun| panic!("unexpected step {s}");

    // push-image: a layout in a sub-directory of the workspace, no credentials.
    let workspace = root.join("ws");
    let layout = images::platform_layout(
        &workspace.join("out/layout"),
        "latest",
        &TestPlatform::parse("linux/arm64"),
    );
    let run = run_task(
        task(&tasks, "ocistep-push-image"),
        &BTreeMap::from([
            ("IMAGE".to_string(), Param::Str(format!("{host}/img:v1"))),
            ("CONTEXT".to_string(), Param::Str("out/layout".into())),
        ]),
        &ws(&[("source", Some(&workspace)), ("dockerconfig", None)]),
        &root.join("push-image"),
        never,
    );
    let digest = run.result("IMAGE_DIGEST");
    assert_eq!(digest, layout.digest.to_string(), "pushed as it was");
    check_chains_outputs(
        &run.results(task(&tasks, "ocistep-push-image")),
        &format!("{host}/img:v1"),
    );

    // push then pull a source bundle, both with unbound credentials, into a
    // sub-directory of the output workspace.
    let source = root.join("src");
    tree::sample_tree(&source);
    let pushed = run_task(
        task(&tasks, "ocistep-push-source-bundle"),
        &BTreeMap::from([
            ("IMAGE".to_string(), Param::Str(format!("{host}/src:v1"))),
            (
                "SOURCE_TIMESTAMP".to_string(),
                Param::Str(SOURCE_RFC3339.into()),
            ),
        ]),
        &ws(&[("source", Some(&source))]),
        &root.join("push-bundle"),
        never,
    );
    let output = root.join("out");
    std::fs::create_dir_all(&output).unwrap();
    let pulled = run_task(
        task(&tasks, "ocistep-pull-source-bundle"),
        &BTreeMap::from([
            ("IMAGE".to_string(), Param::Str(pushed.result("IMAGE_REF"))),
            ("SUBDIRECTORY".to_string(), Param::Str("tree".into())),
        ]),
        &ws(&[("output", Some(&output))]),
        &root.join("pull-bundle"),
        never,
    );
    assert_eq!(
        pulled.result("BUNDLE_DIGEST"),
        pushed.result("IMAGE_DIGEST")
    );
    assert_eq!(pulled.result("BUNDLE_REF"), pushed.result("IMAGE_REF"));
    // A pull produces nothing to sign: Chains finds nothing in its results.
    let pull_task = task(&tasks, "ocistep-pull-source-bundle");
    let reading = chains::read(&pulled.results(pull_task));
    assert!(
        reading.hinted.is_empty() && reading.images.is_empty(),
        "{reading:?}"
    );
    assert_eq!(pulled.result("SOURCE_TIMESTAMP"), SOURCE_EPOCH);
    assert_eq!(
        tree::snapshot(&output.join("tree")),
        tree::snapshot(&source)
    );
}
