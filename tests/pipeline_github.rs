//! The GitHub Action: its `args` run every mode against a real registry,
//! their `${{ }}` expressions evaluated, with `$GITHUB_OUTPUT` read back;
//! and the example workflow uses the action as declared.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml_ng::Value;

use support::ci::*;
use support::images::{self};
use support::{tree, Registry, Run};

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
