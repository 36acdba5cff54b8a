//! The CI wiring against the binary: the Tekton tasks and pipeline, the
//! GitLab CI/CD component and the GitHub Action.
//!
//! First, statically: every `$(params.X)`, `$(results.X.path)` and
//! `$(workspaces.X.path|bound)` of a Task refers to something the Task
//! declares, every flag an ocistep step passes is one `ocistep --help`
//! lists, the catalog conventions hold, and the Pipeline, PipelineRun
//! sample, component and workflow refer only to what exists.
//!
//! Then each of them runs, with its parameters substituted exactly as its
//! orchestrator would, against a real registry:
//!
//! * the Pipeline in order: push-source-bundle, the matrixed build task for
//!   each architecture (its ocistep step pulls the bundle; its buildah step
//!   is stood in for by an umoci-made image of that platform, pushed with
//!   skopeo), then assemble-index fed with the build results `IMAGE_URL[*]`
//!   in another order than the matrix's; the index is checked with skopeo;
//! * the GitLab component's template jobs, their script lines run by bash
//!   with `$[[ inputs.x ]]` substituted and the dotenv reports passed on;
//! * the action's `args`, their `${{ }}` expressions evaluated, with
//!   `$GITHUB_OUTPUT` read back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use ocistep::oci::digest::Digest;
use support::images::{self, PushFormat, TestPlatform};
use support::{run_ok, tree, Registry, Run};

/// The image the tasks default to.
const OCISTEP_IMAGE: &str = "ghcr.io/ocistep/ocistep:0.1.0";
/// The binary's path inside that image (the Containerfile's ENTRYPOINT).
const OCISTEP_PATH: &str = "/ocistep";
/// A source timestamp, and the same instant in RFC 3339.
const SOURCE_EPOCH: &str = "1700000000";
const SOURCE_RFC3339: &str = "2023-11-14T22:13:20Z";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every YAML document of a file.
fn documents(rel: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(rel))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `v[a][b]…` for a dotted path of map keys.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn string(v: &Value, path: &str) -> Option<String> {
    at(v, path).and_then(Value::as_str).map(str::to_string)
}

fn list<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn strings(v: &Value, path: &str) -> Vec<String> {
    list(v, path)
        .into_iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{path}: expected strings, found {s:?}"))
                .to_string()
        })
        .collect()
}

/// Every string below `v`, with its path.
fn all_strings(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path, s.clone())),
        Value::Sequence(seq) => {
            for (i, item) in seq.iter().enumerate() {
                all_strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map {
                let key = k.as_str().unwrap_or("?");
                all_strings(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// The expressions of every Tekton variable `$(…)` in `s` (a shell's
/// `$(command)` in a script is left alone, as Tekton leaves it).
fn tekton_refs(s: &str) -> Vec<String> {
    const ROOTS: [&str; 6] = [
        "params",
        "results",
        "workspaces",
        "context",
        "tasks",
        "steps",
    ];
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let expr = &after[..end];
        let root = expr.split(['.', '[']).next().unwrap_or_default();
        if ROOTS.contains(&root) && !expr.contains(char::is_whitespace) {
            out.push(expr.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

/// The long flags `ocistep --help` lists.
fn known_flags() -> BTreeSet<String> {
    let output = Run::new().arg("--help").output();
    assert!(output.status.success(), "ocistep --help failed");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let flags: BTreeSet<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    assert!(flags.contains("--image") && flags.contains("--push-source-bundle"));
    flags
}

/// The flag names (`--name`, without `=value`) of arguments that are flags.
fn flags_of<'a>(args: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    args.into_iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Tekton: the model
// ---------------------------------------------------------------------------

/// A parameter value: Tekton's string or array.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Str(String),
    Arr(Vec<String>),
}

impl Param {
    fn from_yaml(v: &Value) -> Param {
        match v {
            Value::Sequence(seq) => Param::Arr(
                seq.iter()
                    .map(|s| s.as_str().expect("array params hold strings").to_string())
                    .collect(),
            ),
            Value::String(s) => Param::Str(s.clone()),
            other => Param::Str(serde_yaml_ng::to_string(other).unwrap().trim().to_string()),
        }
    }

    fn str(&self) -> &str {
        match self {
            Param::Str(s) => s,
            Param::Arr(a) => panic!("expected a string param, found array {a:?}"),
        }
    }
}

#[derive(Debug)]
struct ParamSpec {
    array: bool,
    default: Option<Param>,
}

#[derive(Debug)]
struct Task {
    file: String,
    name: String,
    doc: Value,
    params: BTreeMap<String, ParamSpec>,
    results: BTreeSet<String>,
    /// Workspace name -> optional.
    workspaces: BTreeMap<String, bool>,
}

impl Task {
    fn from_doc(file: &str, doc: Value) -> Task {
        let name = string(&doc, "metadata.name").expect("a Task has metadata.name");
        let params = list(&doc, "spec.params")
            .into_iter()
            .map(|p| {
                let name = string(p, "name").expect("param name");
                let array = string(p, "type").as_deref() == Some("array");
                let default = p.get("default").map(Param::from_yaml);
                (name, ParamSpec { array, default })
            })
            .collect();
        let results = list(&doc, "spec.results")
            .into_iter()
            .map(|r| string(r, "name").expect("result name"))
            .collect();
        let workspaces = list(&doc, "spec.workspaces")
            .into_iter()
            .map(|w| {
                let optional = w.get("optional").and_then(Value::as_bool).unwrap_or(false);
                (string(w, "name").expect("workspace name"), optional)
            })
            .collect();
        Task {
            file: file.to_string(),
            name,
            doc,
            params,
            results,
            workspaces,
        }
    }

    fn steps(&self) -> Vec<&Value> {
        list(&self.doc, "spec.steps")
    }

    fn is_ocistep(step: &Value) -> bool {
        strings(step, "command") == [OCISTEP_PATH]
    }
}

/// The catalog tasks and the tasks of the pipeline file.
fn all_tasks() -> Vec<Task> {
    let mut files: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(repo().join("tasks")).expect("tasks/") {
        let task_dir = entry.unwrap().path();
        for version in std::fs::read_dir(&task_dir).unwrap() {
            let version = version.unwrap().path();
            let name = task_dir.file_name().unwrap().to_string_lossy().into_owned();
            let file = version.join(format!("{name}.yaml"));
            assert!(file.is_file(), "{} has no {name}.yaml", version.display());
            assert!(
                version.join("README.md").is_file(),
                "{} has no README.md",
                version.display()
            );
            files.push(
                file.strip_prefix(repo())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    files.sort();
    files.push("pipelines/multiarch-build.yaml".to_string());
    let tasks: Vec<Task> = files
        .iter()
        .flat_map(|f| {
            documents(f)
                .into_iter()
                .filter(|d| string(d, "kind").as_deref() == Some("Task"))
                .map(move |d| Task::from_doc(f, d))
        })
        .collect();
    for mode in [
        "ocistep-push-source-bundle",
        "ocistep-pull-source-bundle",
        "ocistep-assemble-index",
        "ocistep-push-image",
    ] {
        assert!(
            tasks.iter().any(|t| t.name == mode),
            "no Task {mode} in tasks/"
        );
    }
    tasks
}

fn task<'a>(tasks: &'a [Task], name: &str) -> &'a Task {
    tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no Task {name}"))
}

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
            Some(Param::Str(d)) if d == OCISTEP_IMAGE => {}
            other => p(format!(
                "OCISTEP_IMAGE must default to {OCISTEP_IMAGE}, found {other:?}"
            )),
        }
    }
    if t.name.starts_with("ocistep-") {
        for r in ["IMAGE_DIGEST", "IMAGE_URL"] {
            if !t.results.contains(r) {
                p(format!("no result {r}"));
            }
        }
        if t.workspaces.get("dockerconfig") != Some(&true) {
            p("no optional dockerconfig workspace".into());
        }
    }
    problems
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

/// A pipeline reference resolved against the pipeline's params and earlier
/// results, as the PipelineRun controller does.
struct PipelineState {
    params: BTreeMap<String, Param>,
    /// pipeline task -> result -> value, one value per TaskRun (several for a matrix).
    results: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    matrixed: BTreeSet<String>,
}

impl PipelineState {
    /// Substitutes a string that is not a whole-array reference.
    fn substitute(&self, s: &str) -> String {
        let mut out = s.to_string();
        for r in tekton_refs(s) {
            let parts: Vec<&str> = r.split('.').collect();
            let value = match parts.as_slice() {
                ["params", name] => self
                    .params
                    .get(*name)
                    .unwrap_or_else(|| panic!("$({r}): no pipeline param {name}"))
                    .str()
                    .to_string(),
                ["tasks", task, "results", result] => {
                    assert!(
                        !self.matrixed.contains(*task),
                        "$({r}): a matrixed task's result is an array, use [*]"
                    );
                    let values = &self.results[*task][*result];
                    assert_eq!(values.len(), 1);
                    values[0].clone()
                }
                _ => panic!("unexpected reference $({r}) in {s:?}"),
            };
            out = out.replace(&format!("$({r})"), &value);
        }
        out
    }

    /// A param value as given in the pipeline (string or array).
    fn value(&self, v: &Value) -> Param {
        match v {
            Value::Sequence(items) => Param::Arr(
                items
                    .iter()
                    .flat_map(|i| match self.value(i) {
                        Param::Str(s) => vec![s],
                        Param::Arr(a) => a,
                    })
                    .collect(),
            ),
            Value::String(s) => {
                let refs = tekton_refs(s);
                match refs.as_slice() {
                    [r] if s == &format!("$({r})") && r.ends_with("[*]") => {
                        let r = r.trim_end_matches("[*]");
                        let parts: Vec<&str> = r.split('.').collect();
                        match parts.as_slice() {
                            ["params", name] => self.params[*name].clone(),
                            ["tasks", task, "results", result] => {
                                let values = self
                                    .results
                                    .get(*task)
                                    .and_then(|r| r.get(*result))
                                    .unwrap_or_else(|| panic!("$({r}[*]): no such result yet"));
                                // A matrix's results come back in no guaranteed
                                // order: hand them on in another order than the
                                // combinations ran.
                                let mut values = values.clone();
                                values.reverse();
                                Param::Arr(values)
                            }
                            _ => panic!("unexpected $({r}[*])"),
                        }
                    }
                    _ => Param::Str(self.substitute(s)),
                }
            }
            other => Param::from_yaml(other),
        }
    }
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

fn ws(entries: &[(&str, Option<&Path>)]) -> BTreeMap<String, Option<PathBuf>> {
    entries
        .iter()
        .map(|(n, p)| (n.to_string(), p.map(Path::to_path_buf)))
        .collect()
}

/// The platforms the pipeline builds, from its ARCHITECTURES default.
fn platform_of(arch: &str) -> TestPlatform {
    TestPlatform::parse(&format!("linux/{arch}"))
}

/// Checks an index in the registry against the images it should hold.
fn check_index(reference: &str, digest: &str, children: &BTreeMap<String, String>) {
    let raw = images::inspect_raw(&format!("docker://{reference}"));
    assert_eq!(Digest::of(&raw).to_string(), digest, "{reference}: digest");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX, "{reference}: an OCI index");
    let got: BTreeMap<String, String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(&got, children, "{reference}: children by platform");
}

/// `name@sha256:…` -> `sha256:…`.
fn digest_of(pinned: &str) -> String {
    pinned
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{pinned:?} is not pinned by digest"))
        .1
        .to_string()
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
                std::fs::write(run.results_dir().join("IMAGE_DIGEST"), &pushed.digest).unwrap();
                std::fs::write(
                    run.results_dir().join("IMAGE_URL"),
                    format!("{image}@{}", pushed.digest),
                )
                .unwrap();
                built.insert(format!("linux/{arch}"), pushed.digest.clone());
            };
            let run = run_task(t, &all, &workspaces, &dir, &mut stand_in);
            for r in &t.results {
                results.entry(r.clone()).or_default().push(run.result(r));
            }
        }
        state.results.insert(pt_name, results);
    }

    // The bundle.
    let bundle = &state.results["push-source-bundle"];
    let bundle_url = &bundle["IMAGE_URL"][0];
    assert_eq!(digest_of(bundle_url), bundle["IMAGE_DIGEST"][0]);
    assert!(bundle_url.starts_with(&format!("{host}/app@sha256:")));
    assert_eq!(
        tree::snapshot(&source),
        before,
        "the source workspace is untouched"
    );

    // The builds, each pinned by digest.
    let build = &state.results["build"];
    assert_eq!(build["IMAGE_URL"].len(), 2);
    for url in &build["IMAGE_URL"] {
        assert!(url.starts_with(&format!("{host}/app@sha256:")), "{url}");
    }

    // The index.
    let index = &state.results["assemble-index"];
    let index_digest = &index["IMAGE_DIGEST"][0];
    assert_eq!(index["IMAGE_URL"][0], format!("{host}/app@{index_digest}"));
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
    let mut in_order = build["IMAGE_URL"].clone();
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
    assert_eq!(run.result("IMAGE_URL"), format!("{host}/img@{digest}"));
    let raw = images::inspect_raw(&format!("docker://{host}/img:v1"));
    assert_eq!(Digest::of(&raw).to_string(), digest);

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
            ("IMAGE".to_string(), Param::Str(pushed.result("IMAGE_URL"))),
            ("SUBDIRECTORY".to_string(), Param::Str("tree".into())),
        ]),
        &ws(&[("output", Some(&output))]),
        &root.join("pull-bundle"),
        never,
    );
    assert_eq!(pulled.result("IMAGE_DIGEST"), pushed.result("IMAGE_DIGEST"));
    assert_eq!(pulled.result("IMAGE_URL"), pushed.result("IMAGE_URL"));
    assert_eq!(pulled.result("SOURCE_TIMESTAMP"), SOURCE_EPOCH);
    assert_eq!(
        tree::snapshot(&output.join("tree")),
        tree::snapshot(&source)
    );
}

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
// GitHub Action
// ---------------------------------------------------------------------------

/// A value of a GitHub Actions expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Bool(bool),
}

impl Expr {
    fn truthy(&self) -> bool {
        match self {
            Expr::Str(s) => !s.is_empty(),
            Expr::Bool(b) => *b,
        }
    }

    fn text(&self) -> String {
        match self {
            Expr::Str(s) => s.clone(),
            Expr::Bool(b) => b.to_string(),
        }
    }
}

/// The part of GitHub's expression language that action.yml uses: string
/// literals, `inputs.x`, `==`, `!=`, `!`, `&&`, `||`, parentheses and
/// `format()`.
struct Evaluator<'a> {
    src: &'a str,
    pos: usize,
    inputs: &'a BTreeMap<String, String>,
}

impl Evaluator<'_> {
    fn eval(src: &str, inputs: &BTreeMap<String, String>) -> Expr {
        let mut e = Evaluator {
            src,
            pos: 0,
            inputs,
        };
        let v = e.or();
        e.ws();
        assert_eq!(
            e.pos,
            src.len(),
            "cannot evaluate {src:?} past {}",
            &src[e.pos..]
        );
        v
    }

    fn ws(&mut self) {
        while self.src[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.src[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Expr {
        let mut left = self.and();
        while self.eat("||") {
            let right = self.and();
            left = if left.truthy() { left } else { right };
        }
        left
    }

    fn and(&mut self) -> Expr {
        let mut left = self.cmp();
        while self.eat("&&") {
            let right = self.cmp();
            left = if left.truthy() { right } else { left };
        }
        left
    }

    fn cmp(&mut self) -> Expr {
        let left = self.unary();
        if self.eat("==") {
            let right = self.unary();
            return Expr::Bool(left.text().eq_ignore_ascii_case(&right.text()));
        }
        if self.eat("!=") {
            let right = self.unary();
            return Expr::Bool(!left.text().eq_ignore_ascii_case(&right.text()));
        }
        left
    }

    fn unary(&mut self) -> Expr {
        if self.eat("!") {
            return Expr::Bool(!self.unary().truthy());
        }
        self.primary()
    }

    fn primary(&mut self) -> Expr {
        self.ws();
        if self.eat("(") {
            let v = self.or();
            assert!(self.eat(")"), "missing ) in {:?}", self.src);
            return v;
        }
        if self.src[self.pos..].starts_with('\'') {
            let mut out = String::new();
            self.pos += 1;
            loop {
                let c = self.src[self.pos..].chars().next().expect("closed string");
                self.pos += c.len_utf8();
                if c == '\'' {
                    if self.src[self.pos..].starts_with('\'') {
                        self.pos += 1;
                        out.push('\'');
                    } else {
                        break;
                    }
                } else {
                    out.push(c);
                }
            }
            return Expr::Str(out);
        }
        let start = self.pos;
        while self.src[self.pos..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        if word == "format" {
            assert!(self.eat("("));
            let mut args = vec![self.or()];
            while self.eat(",") {
                args.push(self.or());
            }
            assert!(self.eat(")"));
            let mut out = args[0].text();
            for (i, a) in args.iter().enumerate().skip(1) {
                out = out.replace(&format!("{{{}}}", i - 1), &a.text());
            }
            return Expr::Str(out);
        }
        match word {
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            _ => {
                let name = word
                    .strip_prefix("inputs.")
                    .unwrap_or_else(|| panic!("unsupported expression {word:?}"));
                Expr::Str(
                    self.inputs
                        .get(name)
                        .unwrap_or_else(|| panic!("inputs.{name}: no such input"))
                        .clone(),
                )
            }
        }
    }
}

/// Replaces every `${{ … }}` in `s`.
fn evaluate(s: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed ${{ }}") + start;
        out.push_str(&Evaluator::eval(rest[start + 3..end].trim(), inputs).text());
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

struct Action {
    inputs: BTreeMap<String, (Option<String>, bool)>,
    outputs: BTreeSet<String>,
    args: Vec<String>,
}

fn action() -> Action {
    let doc = documents("action.yml").remove(0);
    let inputs = at(&doc, "inputs")
        .and_then(Value::as_mapping)
        .expect("inputs")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                (
                    string(v, "default"),
                    v.get("required").and_then(Value::as_bool).unwrap_or(false),
                ),
            )
        })
        .collect();
    let outputs = at(&doc, "outputs")
        .and_then(Value::as_mapping)
        .expect("outputs")
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(string(&doc, "runs.using").as_deref(), Some("docker"));
    let image = string(&doc, "runs.image").unwrap();
    assert!(
        image.starts_with(&format!("docker://{OCISTEP_IMAGE}")),
        "the action runs the published image, not {image}"
    );
    Action {
        inputs,
        outputs,
        args: strings(&doc, "runs.args"),
    }
}

/// `name<<delimiter` … blocks of a `$GITHUB_OUTPUT` file (and `name=value` lines).
fn github_outputs(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delimiter {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// Runs the action's args with `with`, in `workspace`, and returns its outputs.
fn run_action(a: &Action, with: &[(&str, String)], workspace: &Path) -> BTreeMap<String, String> {
    let mut inputs: BTreeMap<String, String> = a
        .inputs
        .iter()
        .map(|(k, (d, _))| (k.clone(), d.clone().unwrap_or_default()))
        .collect();
    for (k, v) in with {
        assert!(a.inputs.contains_key(*k), "the action has no input {k}");
        inputs.insert(k.to_string(), v.clone());
    }
    for (k, (_, required)) in &a.inputs {
        assert!(
            !required || with.iter().any(|(w, _)| w == k),
            "input {k} is required"
        );
    }
    let args: Vec<String> = a.args.iter().map(|s| evaluate(s, &inputs)).collect();
    let output = workspace.join(format!(".github-output-{}", inputs["mode"]));
    let _ = std::fs::remove_file(&output);
    let out = Run::new()
        .args(&args)
        .current_dir(workspace)
        .env("GITHUB_OUTPUT", &output)
        .output();
    assert!(
        out.status.success(),
        "action args {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = github_outputs(&output);
    for name in ["digest", "image-url", "size"] {
        assert!(
            outputs.contains_key(name),
            "mode {}: ocistep wrote no `{name}` to $GITHUB_OUTPUT (got {:?})",
            inputs["mode"],
            outputs.keys().collect::<Vec<_>>()
        );
    }
    for name in outputs.keys() {
        assert!(
            a.outputs.contains(name),
            "ocistep wrote output {name}, which action.yml does not declare"
        );
    }
    outputs
}

#[test]
fn action_args_run_every_mode_against_a_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let a = action();
    for o in ["digest", "image-url", "platform-results"] {
        assert!(a.outputs.contains(o), "action.yml declares no output {o}");
    }
    let flags = known_flags();
    let workspace_dir = tempfile::tempdir().unwrap();
    let workspace = workspace_dir.path();
    let mut written = BTreeSet::new();

    tree::sample_tree(&workspace.join("src"));
    let pushed = run_action(
        &a,
        &[
            ("mode", "push-source-bundle".into()),
            ("path", "src".into()),
            ("image", format!("{host}/gh:v1-source")),
            ("source-timestamp", SOURCE_EPOCH.into()),
        ],
        workspace,
    );
    written.extend(pushed.keys().cloned());
    assert_eq!(digest_of(&pushed["image-url"]), pushed["digest"]);

    let pulled = run_action(
        &a,
        &[
            ("mode", "pull-source-bundle".into()),
            ("path", "pulled".into()),
            ("image", pushed["image-url"].clone()),
        ],
        workspace,
    );
    written.extend(pulled.keys().cloned());
    assert_eq!(pulled["digest"], pushed["digest"]);
    assert_eq!(pulled["source-timestamp"], SOURCE_EPOCH);
    assert_eq!(
        tree::snapshot(&workspace.join("pulled")),
        tree::snapshot(&workspace.join("src"))
    );

    let mut urls = Vec::new();
    let mut built = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let platform = platform_of(arch);
        let layout = images::platform_layout(
            &workspace.join(format!("image-{arch}")),
            "latest",
            &platform,
        );
        let out = run_action(
            &a,
            &[
                ("mode", "push-image".into()),
                ("path", format!("image-{arch}")),
                ("image", format!("{host}/gh:v1-linux-{arch}")),
            ],
            workspace,
        );
        written.extend(out.keys().cloned());
        assert_eq!(out["digest"], layout.digest.to_string());
        urls.push(out["image-url"].clone());
        built.insert(platform.label(), layout.digest.to_string());
    }
    urls.reverse();
    let index = run_action(
        &a,
        &[
            ("mode", "assemble-index".into()),
            ("image", format!("{host}/gh:v1")),
            ("platform-images", urls.join("\n")),
            ("require-platforms", "linux/amd64,linux/arm64".into()),
        ],
        workspace,
    );
    written.extend(index.keys().cloned());
    check_index(&format!("{host}/gh:v1"), &index["digest"], &built);
    assert_eq!(index["image-url"], format!("{host}/gh@{}", index["digest"]));
    let platforms: serde_json::Value = serde_json::from_str(&index["platform-results"]).unwrap();
    assert_eq!(platforms.as_array().map(Vec::len), Some(2));

    // Every declared output is one ocistep writes.
    assert_eq!(written, a.outputs, "outputs written vs declared");
    // Every flag the args can produce is known; every input is used.
    let all_args = a.args.join(" ");
    for word in all_args.split(|c: char| c.is_whitespace() || c == '\'') {
        if word.starts_with("--") {
            let flag = word.split(['=', '{']).next().unwrap();
            if flag.len() > 2 {
                assert!(
                    flags.contains(flag),
                    "action.yml passes unknown flag {flag}"
                );
            }
        }
    }
    for name in a.inputs.keys() {
        assert!(
            all_args.contains(&format!("inputs.{name}")),
            "input {name} is never used"
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
