//! Credentials never leak: for a password from `config.json`, from a
//! Kubernetes `.dockerconfigjson` and from a credential helper, against a
//! basic-auth and a token-auth registry, at `-vv` in text and JSON logs, on
//! success and on auth failure, in every mode that talks to a registry
//! (push and pull of a bundle, assemble-index, copy), neither the password,
//! nor `base64(user:password)`, nor an issued bearer token appears in stdout,
//! stderr, any result file, the dotenv file or `$GITHUB_OUTPUT`.

mod support;

use std::path::Path;

use base64::Engine as _;
use support::tree::write;
use support::{Registry, RegistryOptions, Run};

const USER: &str = "ci-leak";
/// Characters that change under URL and base64 encodings on purpose.
const PASSWORD: &str = "L3ak-Ch3ck_p@ss+w/rd=9";
const WRONG: &str = "Wr0ng-L3ak_p@ss+w/rd=7";

/// Where the credentials come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `$DOCKER_CONFIG/config.json` with an `auths` entry.
    ConfigJson,
    /// `--secret-path DIR` holding a `.dockerconfigjson`.
    DockerConfigJson,
    /// `--secret-path DIR` whose `config.json` names a credential helper.
    Helper,
}

const SOURCES: [Source; 3] = [Source::ConfigJson, Source::DockerConfigJson, Source::Helper];

/// Every form of a secret that must not show up anywhere.
fn forbidden(password: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let basic = format!("{USER}:{password}");
    vec![
        password.to_string(),
        b64.encode(&basic),
        b64.encode(&basic).trim_end_matches('=').to_string(),
        b64url.encode(&basic),
        b64.encode(password),
        password
            .replace('@', "%40")
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
    ]
}

/// The byte offset of something shaped like a JWT (a bearer token from the
/// token server): `eyJ…` base64url, a dot, `eyJ…`, a dot, a signature.
fn find_jwt(text: &str) -> Option<usize> {
    let is_b64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").map(|(i, _)| i).find(|&i| {
        let parts: Vec<&str> = text[i..]
            .split(|c: char| !is_b64url(c) && c != '.')
            .next()
            .unwrap_or("")
            .split('.')
            .collect();
        parts.len() >= 3 && parts[1].starts_with("eyJ") && parts[2].len() >= 16
    })
}

/// Credentials for `host` from `source`, with `password`, written under
/// `dir`; returns the flags and environment a run needs to use them.
struct Creds {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn creds(dir: &Path, host: &str, source: Source, password: &str) -> Creds {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let auths = serde_json::json!({ "auths": { host: { "auth": auth } } }).to_string();
    let path = std::env::var("PATH").unwrap_or_default();
    match source {
        Source::ConfigJson => {
            std::fs::write(dir.join("config.json"), auths).unwrap();
            Creds {
                args: vec![],
                env: vec![("DOCKER_CONFIG".into(), dir.display().to_string())],
            }
        }
        Source::DockerConfigJson => {
            std::fs::write(dir.join(".dockerconfigjson"), auths).unwrap();
            Creds {
                args: vec!["--secret-path".into(), dir.display().to_string()],
                env: vec![],
            }
        }
        Source::Helper => {
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let helper = bin.join("docker-credential-testhelper");
            let answer = serde_json::json!({ "Username": USER, "Secret": password }).to_string();
            write_executable(
                &helper,
                &format!(
                    "#!/bin/sh\n# A docker credential helper that knows one secret.\n\
                     [ \"$1\" = get ] || exit 1\ncat >/dev/null\necho '{answer}'\n"
                ),
            );
            std::fs::write(
                dir.join("config.json"),
                serde_json::json!({ "credHelpers": { host: "testhelper" } }).to_string(),
            )
            .unwrap();
            Creds {
                args: vec!["--secret-path".into(), dir.display().to_string()],
                env: vec![("PATH".into(), format!("{}:{path}", bin.display()))],
            }
        }
    }
}

/// One run of ocistep and everything it wrote.
struct Outcome {
    label: String,
    code: Option<i32>,
    /// (name, text) of stdout, stderr and every output file.
    outputs: Vec<(String, String)>,
}

/// Where the modes that write put their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// Into the repository they read from (`leak/app`), under a new tag.
    SameRepository,
    /// Into other repositories of the registry (blobs are mounted).
    OtherRepositories,
}

/// The four modes against `host`, reading `HOST/leak/app:v1` (pushed
/// beforehand) and writing under `tag`, with the exit code each ends with
/// when the credentials are refused.
fn modes(
    host: &str,
    src: &Path,
    work: &Path,
    tag: &str,
    dest: Dest,
) -> Vec<(&'static str, Vec<String>, i32)> {
    let s = |v: &str| v.to_string();
    let repo = |name: &str| match dest {
        Dest::SameRepository => format!("{host}/leak/app:{name}-{tag}"),
        Dest::OtherRepositories => format!("{host}/leak/{name}:{tag}"),
    };
    vec![
        (
            "push-source-bundle",
            vec![
                s("--push-source-bundle"),
                src.display().to_string(),
                s("--image"),
                repo("pushed"),
            ],
            3,
        ),
        (
            "pull-source-bundle",
            vec![
                s("--pull-source-bundle"),
                work.join("pulled").display().to_string(),
                s("--image"),
                format!("{host}/leak/app:v1"),
            ],
            3,
        ),
        (
            "assemble-index",
            vec![
                s("--assemble-index"),
                s("--image"),
                repo("index"),
                s("--platform-image"),
                format!("linux/amd64={host}/leak/app:v1"),
            ],
            // An input that cannot be read is a missing input; the message
            // says why.
            12,
        ),
        (
            "copy",
            vec![s("--copy"), format!("{host}/leak/app:v1"), repo("copied")],
            3,
        ),
    ]
}

/// Runs `args` with `creds` at `-vv` in `format`, every result file asked
/// for and `$GITHUB_OUTPUT` set; collects everything it printed or wrote.
fn outcome(label: String, args: &[String], creds: &Creds, format: &str, scratch: &Path) -> Outcome {
    let results = scratch.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let github_output = results.join("github-output");
    std::fs::write(&github_output, "").unwrap();
    let mut cmd = Run::with(args);
    cmd.args(&creds.args)
        .args(["-vv", "--log-format", format])
        .env("GITHUB_OUTPUT", &github_output)
        .timeout(std::time::Duration::from_secs(120));
    for (flag, file) in [
        ("--result-file-image-digest", "digest"),
        ("--result-file-image-size", "size"),
        ("--result-file-image-ref", "ref"),
        ("--result-file-source-timestamp", "timestamp"),
        ("--result-file-platform-results", "platforms"),
        ("--dotenv-file", "dotenv"),
    ] {
        cmd.arg(flag).arg(results.join(file));
    }
    for (key, value) in &creds.env {
        cmd.env(key, value);
    }
    let out = cmd.output();
    let mut outputs = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            "stderr".to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    ];
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        outputs.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
        ));
    }
    std::fs::remove_dir_all(&results).unwrap();
    Outcome {
        label,
        code: out.status.code(),
        outputs,
    }
}

/// Pushes the bundle every mode reads, with the right credentials.
fn seed(reg: &Registry, src: &Path, scratch: &Path) {
    let creds = creds(
        &scratch.join("seed"),
        &reg.host(),
        Source::DockerConfigJson,
        PASSWORD,
    );
    let r = outcome(
        "seed".into(),
        &[
            "--push-source-bundle".into(),
            src.display().to_string(),
            "--image".into(),
            format!("{}/leak/app:v1", reg.host()),
        ],
        &creds,
        "text",
        scratch,
    );
    assert_eq!(r.code, Some(0), "seeding failed: {:?}", r.outputs);
}

/// Runs every mode with every credential source and log format, with
/// `password` (`ok`: the right one); checks the exit code and that no
/// secret form appears.
fn check(reg: &Registry, kind: &str, password: &str, ok: bool, dest: Dest) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "README", b"leak check\n");
    write(&src, "dir/file", b"content\n");
    seed(reg, &src, tmp.path());

    let mut forbidden_forms = forbidden(password);
    forbidden_forms.extend(forbidden(PASSWORD));
    let mut runs = Vec::new();
    let mut n = 0;
    for source in SOURCES {
        for format in ["text", "json"] {
            let work = tmp.path().join(format!("w{n}"));
            for (mode, args, refused) in modes(&reg.host(), &src, &work, &format!("t{n}"), dest) {
                n += 1;
                let scratch = tmp.path().join(format!("run{n}"));
                let creds = creds(&scratch.join("creds"), &reg.host(), source, password);
                let want = if ok { 0 } else { refused };
                runs.push((
                    want,
                    outcome(
                        format!("{kind}, {source:?}, {format}, {mode}"),
                        &args,
                        &creds,
                        format,
                        &scratch,
                    ),
                ));
            }
        }
    }
    let mut wrong = Vec::new();
    for (want, r) in &runs {
        let want = *want;
        if r.code != Some(want) {
            wrong.push(format!(
                "{}: exit {:?}, want {want}: {}",
                r.label, r.code, r.outputs[1].1
            ));
        }
        for (name, text) in &r.outputs {
            for form in &forbidden_forms {
                if let Some(at) = text.find(form.as_str()) {
                    wrong.push(format!(
                        "{}: {name} holds the secret as {form:?}: …{}…",
                        r.label,
                        &text[at.saturating_sub(80)..(at + form.len() + 20).min(text.len())]
                    ));
                }
            }
            if let Some(at) = find_jwt(text) {
                wrong.push(format!(
                    "{}: {name} holds a bearer token: …{}…",
                    r.label,
                    &text[at.saturating_sub(40)..(at + 60).min(text.len())]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problems in {} runs:\n{}",
        wrong.len(),
        runs.len(),
        wrong.join("\n")
    );
    // The runs were verbose enough to have had a chance to leak.
    let stderr_bytes: usize = runs.iter().map(|(_, r)| r.outputs[1].1.len()).sum();
    assert!(
        stderr_bytes > runs.len() * 200,
        "the runs logged almost nothing"
    );
}

fn basic_registry() -> Registry {
    Registry::start_with(RegistryOptions::with_basic_auth(USER, PASSWORD))
}

fn token_registry() -> Registry {
    Registry::start_with(RegistryOptions::with_token_auth(USER, PASSWORD))
}

#[test]
fn basic_auth_success_leaks_nothing() {
    let reg = basic_registry();
    check(&reg, "basic", PASSWORD, true, Dest::SameRepository);
    check(&reg, "basic", PASSWORD, true, Dest::OtherRepositories);
}

#[test]
fn basic_auth_failure_leaks_nothing() {
    check(
        &basic_registry(),
        "basic",
        WRONG,
        false,
        Dest::OtherRepositories,
    );
}

#[test]
fn token_auth_success_leaks_nothing() {
    check(
        &token_registry(),
        "token",
        PASSWORD,
        true,
        Dest::SameRepository,
    );
}

/// Copying and assembling into other repositories mounts blobs, which with
/// token auth needs a token for both repositories.
#[test]
fn token_auth_success_across_repositories_leaks_nothing() {
    check(
        &token_registry(),
        "token",
        PASSWORD,
        true,
        Dest::OtherRepositories,
    );
}

#[test]
fn token_auth_failure_leaks_nothing() {
    check(
        &token_registry(),
        "token",
        WRONG,
        false,
        Dest::OtherRepositories,
    );
}

/// Writes an executable script from a child process. Written from this
/// process, the open file could be inherited by a child another test thread
/// is forking at that moment, and running the script would then fail with
/// "Text file busy".
fn write_executable(path: &Path, script: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run sh to write the helper");
    child
        .stdin
        .take()
        .expect("stdin of sh")
        .write_all(script.as_bytes())
        .expect("write the helper");
    assert!(child.wait().expect("wait for sh").success());
}

#[test]
fn the_leak_checks_see_secrets() {
    // The checks themselves: each form is found where it would be printed.
    let text = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    assert!(forbidden(PASSWORD)
        .iter()
        .any(|f| text.contains(f.as_str())));
    assert!(
        find_jwt("token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ ok")
            .is_some()
    );
    assert!(find_jwt("eyJ alone, eyJabc.def").is_none());
    let helper_dir = tempfile::tempdir().unwrap();
    let c = creds(helper_dir.path(), "h:1", Source::Helper, PASSWORD);
    let out = std::process::Command::new("docker-credential-testhelper")
        .arg("get")
        .env("PATH", &c.env[0].1)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["Secret"], PASSWORD);
}
