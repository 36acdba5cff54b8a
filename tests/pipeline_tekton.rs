//! The Tekton tasks and pipeline, statically: every `$(params.X)`,
//! `$(results.X.path)` and `$(workspaces.X.path|bound)` of a Task refers to
//! something the Task declares, every flag an ocistep step passes is one
//! `ocistep --help` lists, the catalog conventions hold, and the Pipeline
//! and PipelineRun sample refer only to what exists.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use support::chains::{self, ResultValue};
use support::ci::*;
use support::tekton::*;

// ---------------------------------------------------------------------------
// Tekton: static checks
// ---------------------------------------------------------------------------

/// Problems with one Task's references, flags and conventions.
fn check_task(t: &Task, flags: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut p = |msg: String| problems.push(format!("{} ({}): {msg}", t.name, t.file));

    for key in ["apiVersion", "kind"] {
        if t.doc.get(key).is_none() {
            p(format!("no {key}"));
        }
    }
    if at(&t.doc, "metadata.labels")
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .is_none()
    {
        p("no app.kubernetes.io/version label".into());
    }
    let annotations = at(&t.doc, "metadata.annotations");
    for a in [
        "tekton.dev/pipelines.minVersion",
        "tekton.dev/categories",
        "tekton.dev/tags",
        "tekton.dev/displayName",
        "tekton.dev/platforms",
    ] {
        if annotations
            .and_then(|m| m.get(a))
            .and_then(Value::as_str)
            .is_none()
        {
            p(format!("no {a} annotation"));
        }
    }
    if string(&t.doc, "spec.description").is_none() {
        p("no spec.description".into());
    }
    for param in list(&t.doc, "spec.params") {
        let name = string(param, "name").unwrap_or_default();
        if string(param, "type").is_none() {
            p(format!("param {name} has no type"));
        }
        if string(param, "description").is_none() {
            p(format!("param {name} has no description"));
        }
    }
    for result in list(&t.doc, "spec.results") {
        if string(result, "description").is_none() {
            p(format!(
                "result {:?} has no description",
                string(result, "name")
            ));
        }
    }
    let sc = at(&t.doc, "spec.stepTemplate.securityContext");
    let sc_is = |key: &str, want: Value| sc.and_then(|s| s.get(key)) == Some(&want);
    if !sc_is("runAsNonRoot", Value::Bool(true))
        || !sc_is("runAsUser", Value::Number(65532.into()))
        || !sc_is("allowPrivilegeEscalation", Value::Bool(false))
    {
        p("stepTemplate.securityContext must be runAsNonRoot, runAsUser 65532, no privilege escalation".into());
    }

    // References.
    let mut texts = Vec::new();
    all_strings(
        at(&t.doc, "spec.steps").unwrap_or(&Value::Null),
        "steps".into(),
        &mut texts,
    );
    all_strings(
        at(&t.doc, "spec.stepTemplate").unwrap_or(&Value::Null),
        "stepTemplate".into(),
        &mut texts,
    );
    let mut used_params = BTreeSet::new();
    for (path, text) in &texts {
        for r in tekton_refs(text) {
            let parts: Vec<&str> = r.split('.').collect();
            match parts.as_slice() {
                ["params", name] => {
                    let (name, whole) = match name.strip_suffix("[*]") {
                        Some(n) => (n, true),
                        None => (*name, false),
                    };
                    used_params.insert(name.to_string());
                    match t.params.get(name) {
                        None => p(format!("{path}: $({r}) names no declared param")),
                        Some(spec) if spec.array != whole => p(format!(
                            "{path}: $({r}): array params are used whole, as a whole argument, string params without [*]"
                        )),
                        Some(_) if whole && text != &format!("$({r})") => {
                            p(format!("{path}: $({r}) must be a whole argument"))
                        }
                        _ => {}
                    }
                    if whole && !path.contains(".args[") {
                        p(format!("{path}: $({r}) is only expanded in args"));
                    }
                }
                ["results", name, "path"] => {
                    if !t.results.contains(*name) {
                        p(format!("{path}: $({r}) names no declared result"));
                    }
                }
                ["workspaces", name, "path" | "bound"] => {
                    if !t.workspaces.contains_key(*name) {
                        p(format!("{path}: $({r}) names no declared workspace"));
                    }
                }
                _ => p(format!("{path}: unexpected reference $({r})")),
            }
        }
    }
    for name in t.params.keys() {
        if !used_params.contains(name) {
            p(format!("param {name} is never used"));
        }
    }

    // Steps.
    for step in t.steps() {
        let step_name = string(step, "name").unwrap_or_default();
        if !Task::is_ocistep(step) {
            continue;
        }
        if step.get("script").is_some() {
            p(format!(
                "step {step_name}: an ocistep step has no script (the image has no shell)"
            ));
        }
        if string(step, "image").as_deref() != Some("$(params.OCISTEP_IMAGE)") {
            p(format!(
                "step {step_name}: image must be $(params.OCISTEP_IMAGE)"
            ));
        }
        let args = strings(step, "args");
        for flag in flags_of(args.iter().map(String::as_str)) {
            if !flags.contains(&flag) {
                p(format!("step {step_name}: ocistep has no flag {flag}"));
            }
        }
        // An optional workspace's path is "" when unbound: ocistep must get it
        // as the value of a flag that takes "" as none.
        for arg in &args {
            if arg.contains(".path)") && arg.contains("$(workspaces.") {
                let optional = tekton_refs(arg).iter().any(|r| {
                    let name = r.split('.').nth(1).unwrap_or_default();
                    t.workspaces.get(name) == Some(&true)
                });
                if optional && !arg.starts_with("--secret-path=") {
                    p(format!(
                        "step {step_name}: {arg}: an optional workspace may be empty"
                    ));
                }
            }
        }
    }
    if t.steps().iter().any(|s| Task::is_ocistep(s)) {
        match t
            .params
            .get("OCISTEP_IMAGE")
            .and_then(|s| s.default.clone())
        {
            // The release, pinned by digest once scripts/pin_release.py ran.
            Some(Param::Str(d))
                if d == OCISTEP_IMAGE
                    || d.strip_prefix(OCISTEP_REPOSITORY)
                        .and_then(|rest| rest.split_once('@'))
                        .is_some_and(|(tag, _)| tag.starts_with(':') && is_pinned(&d)) => {}
            other => p(format!(
                "OCISTEP_IMAGE must default to {OCISTEP_IMAGE} or a release pinned by digest, found {other:?}"
            )),
        }
    }
    for step in t.steps() {
        let image = string(step, "image").unwrap_or_default();
        if !image.starts_with("$(params.") && !is_pinned(&image) {
            p(format!(
                "step {}: image {image} is not pinned by digest",
                string(step, "name").unwrap_or_default()
            ));
        }
    }
    if t.name.starts_with("ocistep-") && t.workspaces.get("dockerconfig") != Some(&true) {
        p("no optional dockerconfig workspace".into());
    }
    // What Tekton Chains reads: a push names what it pushed; a pull has
    // nothing to sign and none of the names Chains reads.
    let hinted = chains_hinted(t);
    if t.name == "ocistep-pull-source-bundle" {
        for r in ["BUNDLE_DIGEST", "BUNDLE_REF", "SOURCE_TIMESTAMP"] {
            if !t.results.contains(r) {
                p(format!("no result {r}"));
            }
        }
        if !hinted.is_empty() {
            p(format!("results Tekton Chains would sign: {hinted:?}"));
        }
    } else if t.name.starts_with("ocistep-") || t.name == "ocistep-multiarch-build-platform" {
        let want = ["ARTIFACT_OUTPUTS", "IMAGE_DIGEST", "IMAGE_URL"];
        if hinted.iter().map(String::as_str).ne(want) {
            p(format!(
                "Tekton Chains results {hinted:?}, expected {want:?}"
            ));
        }
        if !t.results.contains("IMAGE_REF") {
            p("no result IMAGE_REF".into());
        }
        let outputs = list(&t.doc, "spec.results")
            .into_iter()
            .find(|r| string(r, "name").as_deref() == Some("ARTIFACT_OUTPUTS"));
        let properties: BTreeSet<String> = outputs
            .and_then(|r| at(r, "properties"))
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let expected = BTreeSet::from(["digest", "isBuildArtifact", "uri"].map(String::from));
        if outputs.and_then(|r| string(r, "type")).as_deref() != Some("object")
            || properties != expected
        {
            p(format!(
                "ARTIFACT_OUTPUTS must be an object result with properties {expected:?}"
            ));
        }
    }
    problems
}

/// The results of `t` whose names Tekton Chains reads.
fn chains_hinted(t: &Task) -> BTreeSet<String> {
    let results = t
        .results
        .iter()
        .map(|r| (r.clone(), ResultValue::Str(String::new())))
        .collect();
    chains::read(&results).hinted
}

/// `name[:tag]@sha256:<64 hex>`.
fn is_pinned(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(name, hex)| {
        !name.is_empty() && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// The reader the run tests use is as strict as Chains: it refuses what
/// go-containerregistry refuses, such as a pinned reference with a digest
/// appended again.
#[test]
fn chains_reader_joins_and_parses_as_chains_does() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let reading = |url: &str| {
        chains::read(&BTreeMap::from([
            ("IMAGE_URL".to_string(), ResultValue::Str(url.to_string())),
            ("IMAGE_DIGEST".to_string(), ResultValue::Str(digest.clone())),
        ]))
    };
    let tagged = reading("127.0.0.1:5000/app:v1");
    assert!(tagged.errors.is_empty(), "{:?}", tagged.errors);
    assert_eq!(
        tagged.images,
        BTreeSet::from([format!("127.0.0.1:5000/app@{digest}")])
    );
    let hub = reading("app");
    assert_eq!(
        hub.images,
        BTreeSet::from([format!("index.docker.io/library/app@{digest}")])
    );
    for refused in [
        format!("127.0.0.1:5000/app@{digest}"),
        "127.0.0.1:5000/App:v1".to_string(),
        "127.0.0.1:5000/app:v/1".to_string(),
    ] {
        let r = reading(&refused);
        assert!(
            r.images.is_empty() && !r.errors.is_empty(),
            "{refused}: {r:?}"
        );
    }
    let outputs = chains::read(&BTreeMap::from([(
        "ARTIFACT_OUTPUTS".to_string(),
        ResultValue::Object(BTreeMap::from([
            ("uri".to_string(), "127.0.0.1:5000/app".to_string()),
            ("digest".to_string(), "sha256:12".to_string()),
        ])),
    )]));
    assert!(outputs.outputs.is_empty() && !outputs.errors.is_empty());
}

/// The Containerfile puts the binary where the tasks run it.
#[test]
fn containerfile_entrypoint_is_the_tasks_command() {
    let containerfile = read("Containerfile");
    assert!(
        containerfile.contains(&format!("ENTRYPOINT [\"{OCISTEP_PATH}\"]")),
        "the Containerfile's ENTRYPOINT is not [\"{OCISTEP_PATH}\"]"
    );
    assert!(containerfile.contains(&format!(" {OCISTEP_PATH}\n")));
    assert!(containerfile.contains("USER 65532:65532"));
    for target in ["AS root", "AS shell"] {
        assert!(containerfile.contains(target), "no {target} stage");
    }
}

#[test]
fn tasks_refer_only_to_what_they_declare_and_pass_only_known_flags() {
    let flags = known_flags();
    let problems: Vec<String> = all_tasks()
        .iter()
        .flat_map(|t| check_task(t, &flags))
        .collect();
    assert!(
        problems.is_empty(),
        "Task problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn pipeline_and_sample_refer_only_to_what_exists() {
    let tasks = all_tasks();
    let docs = documents("pipelines/multiarch-build.yaml");
    let pipeline = docs
        .iter()
        .find(|d| string(d, "kind").as_deref() == Some("Pipeline"))
        .expect("a Pipeline");
    let pipeline_name = string(pipeline, "metadata.name").unwrap();
    let params: BTreeSet<String> = list(pipeline, "spec.params")
        .iter()
        .map(|p| string(p, "name").unwrap())
        .collect();
    let workspaces: BTreeSet<String> = list(pipeline, "spec.workspaces")
        .iter()
        .map(|w| string(w, "name").unwrap())
        .collect();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, (&Task, bool)> = BTreeMap::new();
    for pt in list(pipeline, "spec.tasks") {
        let name = string(pt, "name").unwrap();
        let t = task(&tasks, &string(pt, "taskRef.name").expect("taskRef.name"));
        let matrix: BTreeSet<String> = list(pt, "matrix.params")
            .iter()
            .map(|p| string(p, "name").unwrap())
            .collect();
        let given: BTreeSet<String> = list(pt, "params")
            .iter()
            .map(|p| string(p, "name").unwrap())
            .collect();
        for g in given.iter().chain(&matrix) {
            if !t.params.contains_key(g) {
                problems.push(format!("{name}: {} has no param {g}", t.name));
            }
        }
        for (pname, spec) in &t.params {
            if spec.default.is_none() && !given.contains(pname) && !matrix.contains(pname) {
                problems.push(format!(
                    "{name}: required param {pname} of {} not given",
                    t.name
                ));
            }
        }
        for ws in list(pt, "workspaces") {
            let tw = string(ws, "name").unwrap();
            let pw = string(ws, "workspace").unwrap();
            if !t.workspaces.contains_key(&tw) {
                problems.push(format!("{name}: {} has no workspace {tw}", t.name));
            }
            if !workspaces.contains(&pw) {
                problems.push(format!("{name}: the pipeline has no workspace {pw}"));
            }
        }
        for (tw, optional) in &t.workspaces {
            let bound = list(pt, "workspaces")
                .iter()
                .any(|w| string(w, "name").as_deref() == Some(tw));
            if !optional && !bound {
                problems.push(format!("{name}: required workspace {tw} not bound"));
            }
        }
        let mut texts = Vec::new();
        all_strings(pt, name.clone(), &mut texts);
        for (path, text) in texts {
            for r in tekton_refs(&text) {
                let parts: Vec<&str> = r.split('.').collect();
                match parts.as_slice() {
                    ["params", p] => {
                        if !params.contains(p.trim_end_matches("[*]")) {
                            problems.push(format!("{path}: $({r}): no pipeline param"));
                        }
                    }
                    ["tasks", other, "results", result] => {
                        let whole = result.ends_with("[*]");
                        let result = result.trim_end_matches("[*]");
                        match seen.get(*other) {
                            None => problems
                                .push(format!("{path}: $({r}): no earlier pipeline task {other}")),
                            Some((ot, matrixed)) => {
                                if !ot.results.contains(result) {
                                    problems.push(format!(
                                        "{path}: $({r}): {} has no result {result}",
                                        ot.name
                                    ));
                                }
                                if whole != *matrixed {
                                    problems.push(format!(
                                        "{path}: $({r}): [*] exactly for a matrixed task's results"
                                    ));
                                }
                            }
                        }
                    }
                    _ => problems.push(format!("{path}: unexpected reference $({r})")),
                }
            }
        }
        seen.insert(name, (t, !matrix.is_empty()));
    }
    for result in list(pipeline, "spec.results") {
        let value = string(result, "value").unwrap();
        for r in tekton_refs(&value) {
            let parts: Vec<&str> = r.split('.').collect();
            match parts.as_slice() {
                ["tasks", t, "results", res] => match seen.get(*t) {
                    Some((ot, _)) if ot.results.contains(*res) => {}
                    _ => problems.push(format!("pipeline result {value}: no such task result")),
                },
                _ => problems.push(format!("pipeline result {value}: unexpected reference")),
            }
        }
    }

    // The PipelineRun sample.
    let run = documents("pipelines/samples/multiarch-build-run.yaml")
        .into_iter()
        .find(|d| string(d, "kind").as_deref() == Some("PipelineRun"))
        .expect("a PipelineRun sample");
    assert_eq!(string(&run, "spec.pipelineRef.name"), Some(pipeline_name));
    for p in list(&run, "spec.params") {
        let n = string(p, "name").unwrap();
        if !params.contains(&n) {
            problems.push(format!("sample: the pipeline has no param {n}"));
        }
    }
    for w in list(&run, "spec.workspaces") {
        let n = string(w, "name").unwrap();
        if !workspaces.contains(&n) {
            problems.push(format!("sample: the pipeline has no workspace {n}"));
        }
    }
    let specs = list(&run, "spec.taskRunSpecs");
    assert!(
        !specs.is_empty(),
        "the sample pins the matrix with taskRunSpecs"
    );
    for spec in specs {
        let pt_name = string(spec, "pipelineTaskName").unwrap();
        let pt = list(pipeline, "spec.tasks")
            .into_iter()
            .find(|t| string(t, "name").as_deref() == Some(pt_name.as_str()))
            .unwrap_or_else(|| panic!("sample: no pipeline task {pt_name}"));
        let arch = at(spec, "podTemplate.nodeSelector")
            .and_then(|n| n.get("kubernetes.io/arch"))
            .and_then(Value::as_str)
            .expect("sample: nodeSelector kubernetes.io/arch")
            .to_string();
        let refs = tekton_refs(&arch);
        let matrix: Vec<String> = list(pt, "matrix.params")
            .iter()
            .map(|p| string(p, "name").unwrap())
            .collect();
        assert_eq!(refs.len(), 1, "sample: nodeSelector is one $(params.X)");
        let param = refs[0].strip_prefix("params.").unwrap();
        assert!(
            matrix.iter().any(|m| m == param),
            "sample: $(params.{param}) is not a matrix param of {pt_name}"
        );
    }
    assert!(
        problems.is_empty(),
        "Pipeline problems:\n{}",
        problems.join("\n")
    );
}
