//! The Tekton tasks as the pipeline contract tests model them: parameters,
//! results, workspaces and steps of every catalog and pipeline task.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::ci::*;
/// A parameter value: Tekton's string or array.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Str(String),
    Arr(Vec<String>),
}

impl Param {
    pub fn from_yaml(v: &Value) -> Param {
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

    pub fn str(&self) -> &str {
        match self {
            Param::Str(s) => s,
            Param::Arr(a) => panic!("expected a string param, found array {a:?}"),
        }
    }
}

#[derive(Debug)]
pub struct ParamSpec {
    pub array: bool,
    pub default: Option<Param>,
}

#[derive(Debug)]
pub struct Task {
    pub file: String,
    pub name: String,
    pub doc: Value,
    pub params: BTreeMap<String, ParamSpec>,
    pub results: BTreeSet<String>,
    /// Workspace name -> optional.
    pub workspaces: BTreeMap<String, bool>,
}

impl Task {
    pub fn from_doc(file: &str, doc: Value) -> Task {
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

    pub fn steps(&self) -> Vec<&Value> {
        list(&self.doc, "spec.steps")
    }

    pub fn is_ocistep(step: &Value) -> bool {
        strings(step, "command") == [OCISTEP_PATH]
    }
}

/// The catalog tasks and the tasks of the pipeline file.
pub fn all_tasks() -> Vec<Task> {
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

pub fn task<'a>(tasks: &'a [Task], name: &str) -> &'a Task {
    tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no Task {name}"))
}

/// A pipeline reference resolved against the pipeline's params and earlier
/// results, as the PipelineRun controller does.
pub struct PipelineState {
    pub params: BTreeMap<String, Param>,
    /// pipeline task -> result -> value, one value per TaskRun (several for a matrix).
    pub results: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub matrixed: BTreeSet<String>,
}

impl PipelineState {
    /// Substitutes a string that is not a whole-array reference.
    pub fn substitute(&self, s: &str) -> String {
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
    pub fn value(&self, v: &Value) -> Param {
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
