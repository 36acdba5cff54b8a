//! The GitHub composite action as the tests run it: action.yml read, its
//! `${{ }}` expressions evaluated, and its steps run with bash as a Linux
//! runner runs them (`GITHUB_ACTION_PATH`, `GITHUB_OUTPUT`, `GITHUB_PATH`,
//! `RUNNER_TOOL_CACHE`, `RUNNER_TEMP`, `RUNNER_ARCH`, its own `HOME`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_yaml_ng::Value;

use super::ci::*;

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
/// literals, `inputs.x`, `steps.id.outputs.x`, `==`, `!=`, `!`, `&&`,
/// `||`, parentheses and `format()`.
struct Evaluator<'a> {
    src: &'a str,
    pos: usize,
    context: &'a BTreeMap<String, String>,
}

impl Evaluator<'_> {
    fn eval(src: &str, context: &BTreeMap<String, String>) -> Expr {
        let mut e = Evaluator {
            src,
            pos: 0,
            context,
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
            // A step output nobody wrote is empty, as on GitHub.
            _ if word.starts_with("steps.") => {
                Expr::Str(self.context.get(word).cloned().unwrap_or_default())
            }
            _ if word.starts_with("inputs.") => Expr::Str(
                self.context
                    .get(word)
                    .unwrap_or_else(|| panic!("{word}: no such input"))
                    .clone(),
            ),
            _ => panic!("unsupported expression {word:?}"),
        }
    }
}

/// Replaces every `${{ … }}` in `s`.
pub fn evaluate(s: &str, context: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed ${{ }}") + start;
        out.push_str(&Evaluator::eval(rest[start + 3..end].trim(), context).text());
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// One step of the composite action.
pub struct Step {
    pub id: String,
    pub env: BTreeMap<String, String>,
    pub run: String,
}

/// action.yml.
pub struct Action {
    /// Input name -> (default, required).
    pub inputs: BTreeMap<String, (Option<String>, bool)>,
    /// Output name -> its `value` expression.
    pub outputs: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

/// Reads action.yml: a composite action whose steps run bash.
pub fn action() -> Action {
    let doc = documents("action.yml").remove(0);
    let inputs = at(&doc, "inputs")
        .and_then(Value::as_mapping)
        .expect("inputs")
        .iter()
        .map(|(k, v)| {
            let required = v.get("required").and_then(Value::as_bool).unwrap_or(false);
            (
                k.as_str().unwrap().to_string(),
                (string(v, "default"), required),
            )
        })
        .collect();
    let outputs = at(&doc, "outputs")
        .and_then(Value::as_mapping)
        .expect("outputs")
        .iter()
        .map(|(k, v)| {
            let value = string(v, "value").expect("a composite action's output has a value");
            (k.as_str().unwrap().to_string(), value)
        })
        .collect();
    assert_eq!(string(&doc, "runs.using").as_deref(), Some("composite"));
    let steps = list(&doc, "runs.steps")
        .into_iter()
        .map(|step| {
            assert_eq!(string(step, "shell").as_deref(), Some("bash"), "bash steps");
            let env = step
                .get("env")
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().expect("env values are strings");
                            (k.as_str().unwrap().to_string(), v.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Step {
                id: string(step, "id").expect("every step has an id"),
                env,
                run: string(step, "run").expect("every step runs a script"),
            }
        })
        .collect();
    Action {
        inputs,
        outputs,
        steps,
    }
}

/// `name<<delimiter` … blocks of a `$GITHUB_OUTPUT` file (and `name=value` lines).
pub fn github_outputs(path: &Path) -> BTreeMap<String, String> {
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

/// A Linux runner for the action: its workspace, home, tool cache and
/// temporary directory, all under one directory.
pub struct Runner {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub tool_cache: PathBuf,
}

/// What one use of the action did.
pub struct ActionRun {
    /// The action's outputs, evaluated from its steps' outputs.
    pub outputs: BTreeMap<String, String>,
    /// The outputs each step wrote, by step id.
    pub written: BTreeMap<String, BTreeMap<String, String>>,
    /// The first step that failed, with its output; `None` when all passed.
    pub failed: Option<(String, Output)>,
}

impl Runner {
    pub fn new(root: &Path) -> Runner {
        let runner = Runner {
            root: root.to_path_buf(),
            workspace: root.join("workspace"),
            home: root.join("home"),
            tool_cache: root.join("tool-cache"),
        };
        for dir in [
            &runner.workspace,
            &runner.home,
            &runner.tool_cache,
            &root.join("temp"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        runner
    }

    /// `RUNNER_ARCH` of a runner like this machine.
    pub fn arch() -> &'static str {
        match std::env::consts::ARCH {
            "x86_64" => "X64",
            "aarch64" => "ARM64",
            other => panic!("no GitHub runner architecture for {other}"),
        }
    }

    /// Runs the action's steps in order with `with` as inputs, as the
    /// runner does, stopping at the first that fails.
    pub fn use_action(&self, a: &Action, with: &[(&str, &str)]) -> ActionRun {
        let mut context: BTreeMap<String, String> = a
            .inputs
            .iter()
            .map(|(k, (d, _))| (format!("inputs.{k}"), d.clone().unwrap_or_default()))
            .collect();
        for (k, v) in with {
            assert!(a.inputs.contains_key(*k), "the action has no input {k}");
            context.insert(format!("inputs.{k}"), v.to_string());
        }
        for (k, (_, required)) in &a.inputs {
            assert!(
                !required || with.iter().any(|(w, _)| w == k),
                "input {k} is required"
            );
        }
        let mut written = BTreeMap::new();
        for (n, step) in a.steps.iter().enumerate() {
            let output_file = self.root.join(format!("output-{n}"));
            let path_file = self.root.join(format!("path-{n}"));
            std::fs::write(&output_file, "").unwrap();
            let mut cmd = super::tool("bash");
            cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &step.run])
                .current_dir(&self.workspace)
                .env("HOME", &self.home)
                .env("GITHUB_ACTION_PATH", repo())
                .env("GITHUB_WORKSPACE", &self.workspace)
                .env("GITHUB_OUTPUT", &output_file)
                .env("GITHUB_PATH", &path_file)
                .env("RUNNER_TOOL_CACHE", &self.tool_cache)
                .env("RUNNER_TEMP", self.root.join("temp"))
                .env("RUNNER_ARCH", Self::arch())
                .env("RUNNER_OS", "Linux");
            for (k, v) in &step.env {
                cmd.env(k, evaluate(v, &context));
            }
            let output = cmd.output().expect("run bash");
            if !output.status.success() {
                return ActionRun {
                    outputs: BTreeMap::new(),
                    written,
                    failed: Some((step.id.clone(), output)),
                };
            }
            let outputs = github_outputs(&output_file);
            for (k, v) in &outputs {
                context.insert(format!("steps.{}.outputs.{k}", step.id), v.clone());
            }
            written.insert(step.id.clone(), outputs);
        }
        let outputs = a
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), evaluate(v, &context)))
            .collect();
        ActionRun {
            outputs,
            written,
            failed: None,
        }
    }
}

/// The long flags a script passes: `--name` words, and the names given to
/// run.sh's `value`, `switch` and `lines` helpers.
pub fn script_flags(script: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in script.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        if let (Some("value" | "switch" | "lines"), Some(name)) = (words.next(), words.next()) {
            flags.insert(format!("--{name}"));
        }
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if word.starts_with("--")
                && word.len() > 2
                && word[2..].starts_with(char::is_alphabetic)
            {
                flags.insert(word.to_string());
            }
        }
    }
    flags
}
