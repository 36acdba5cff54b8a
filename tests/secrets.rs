//! A push of a tree holding credentials (a checkout's persisted token in
//! `.git/config`, `.env`, `.npmrc`, `.pypirc`, `.docker/config.json`,
//! `.netrc`, `.git-credentials`) warns, naming each file and how to leave
//! it out, without ever printing the secret; the push still succeeds.
//! Harmless files of the same names give no warning.

mod support;

use std::path::Path;

use support::tree::write;
use support::Run;

/// Secret values planted in the tree; none may appear in any output.
const SECRETS: &[&str] = &[
    "eC1hY2Nlc3MtdG9rZW46Z2hzX0NoZWNrb3V0VG9rZW4xMjM0",
    "ghs_CheckoutToken1234",
    "hunter2UrlPassword",
    "envSecretValue42",
    "npm_AuthTokenSecret77",
    "pypiPasswordSecret",
    "ZG9ja2VyOmRvY2tlclNlY3JldA==",
    "netrcPasswordSecret",
    "credStorePassword9",
];

/// The files holding [`SECRETS`], relative to the tree.
const SECRET_FILES: &[&str] = &[
    ".git/config",
    "vendor/lib/.git/config",
    ".env",
    "app/.env.production",
    ".npmrc",
    ".pypirc",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
];

fn tree_with_secrets(root: &Path) {
    write(root, "README.md", b"# app\n");
    write(
        root,
        ".git/config",
        b"[core]\n\trepositoryformatversion = 0\n[remote \"origin\"]\n\turl = https://github.com/o/app\n\
          \tfetch = +refs/heads/*:refs/remotes/origin/*\n[http \"https://github.com/\"]\n\
          \textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX0NoZWNrb3V0VG9rZW4xMjM0\n",
    );
    write(
        root,
        "vendor/lib/.git/config",
        b"[remote \"origin\"]\n\turl = https://ci-bot:hunter2UrlPassword@git.example.com/lib.git\n",
    );
    write(
        root,
        ".env",
        b"# settings\nDEBUG=0\nAPI_KEY=envSecretValue42\n",
    );
    write(
        root,
        "app/.env.production",
        b"DB_PASSWORD=envSecretValue42\n",
    );
    write(
        root,
        ".npmrc",
        b"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=npm_AuthTokenSecret77\n",
    );
    write(
        root,
        ".pypirc",
        b"[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\npassword = pypiPasswordSecret\n",
    );
    write(
        root,
        ".docker/config.json",
        br#"{"auths":{"registry.example.com":{"auth":"ZG9ja2VyOmRvY2tlclNlY3JldA=="}}}"#,
    );
    write(
        root,
        ".netrc",
        b"machine api.example.com login bot password netrcPasswordSecret\n",
    );
    write(
        root,
        ".git-credentials",
        b"https://bot:credStorePassword9@github.com\n",
    );
    // A token in a file no rule looks at is not read (the tree's contents
    // are not scanned).
    write(root, "src/main.rs", b"fn main() {}\n");
}

/// Files named like secret stores that hold none.
fn harmless_tree(root: &Path) {
    write(
        root,
        ".git/config",
        b"[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://github.com/o/app.git\n\
          [submodule \"lib\"]\n\turl = git@github.com:o/lib.git\n[branch \"main\"]\n\tremote = origin\n",
    );
    write(root, ".env.example", b"API_KEY=changeme\n");
    write(root, ".env", b"# filled in by the deployment\nAPI_KEY=\n");
    write(
        root,
        ".npmrc",
        b"//registry.npmjs.org/:_authToken=${NPM_TOKEN}\nsave-exact=true\n",
    );
    write(
        root,
        ".docker/config.json",
        br#"{"credsStore":"desktop","auths":{"ghcr.io":{}}}"#,
    );
    write(root, "README.md", b"# app\n");
}

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn secrets_in_the_tree_are_named_with_a_hint_and_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree_with_secrets(&src);
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    for format in ["text", "json"] {
        let (stdout, stderr) = Run::push_bundle(&src)
            .image(&image)
            .args(["--log-format", format])
            .printed_ok();
        assert_no_secret(&stdout);
        assert_no_secret(&stderr);
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
        for file in SECRET_FILES {
            let line = warnings
                .iter()
                .find(|l| l.contains(file))
                .unwrap_or_else(|| panic!("{format}: no warning names {file}:\n{stderr}"));
            assert!(
                line.contains("--exclude") && line.contains(".shpignore"),
                "{format}: no hint in {line}"
            );
        }
        if format == "json" {
            for line in stderr.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            }
        }
    }
    // Following the hint silences the warnings.
    let mut excludes = Vec::new();
    for file in SECRET_FILES {
        excludes.extend(["--exclude".to_string(), format!("/{file}")]);
    }
    let excludes: Vec<&str> = excludes.iter().map(String::as_str).collect();
    let (_, stderr) = Run::push_bundle(&src)
        .image(&image)
        .args(&excludes)
        .printed_ok();
    assert!(!stderr.contains("WARN"), "{stderr}");
    let mut shpignore: String = SECRET_FILES.iter().map(|f| format!("/{f}\n")).collect();
    shpignore.push('\n');
    write(&src, ".shpignore", shpignore.as_bytes());
    let (_, stderr) = Run::push_bundle(&src).image(&image).printed_ok();
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn files_without_credentials_give_no_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    harmless_tree(&src);
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    let (_, stderr) = Run::push_bundle(&src).image(&image).printed_ok();
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn artifact_directories_are_checked_too() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("site");
    tree_with_secrets(&src);
    let image = format!("oci:{}:v1", tmp.path().join("layout").display());
    let out = Run::push_artifact()
        .args(["--artifact-type", "application/vnd.example.test"])
        .arg("--file")
        .arg(&src)
        .image(&image)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_no_secret(&stderr);
    for file in SECRET_FILES {
        assert!(stderr.contains(file), "no warning names {file}:\n{stderr}");
    }
}
