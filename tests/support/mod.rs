//! Shared support for the integration tests.
//!
//! Each integration test file pulls this in with `mod support;`. It provides:
//!
//! * [`Registry`]: a real CNCF distribution registry (`docker-registry`)
//!   running on a free loopback port, optionally with htpasswd basic auth
//!   and/or TLS, or with token auth served by a [`TokenServer`], with its
//!   own storage and access log, stopped on drop;
//! * [`http_get`] / [`http_request`]: a minimal HTTP/1.1 client over plain
//!   TCP for probing a registry without extra crates;
//! * [`require_tool`]: a hard check (never a silent skip) that an external
//!   program the tests rely on is installed;
//! * [`Run`]: the one builder that runs the CLI under test, with an
//!   environment isolated from the developer's or CI's real credentials and
//!   settings;
//! * [`tree`]: sample source trees, snapshots and hand-made bundles;
//! * [`file_server`]: a directory served over loopback HTTP, and
//!   [`github`]: the GitHub action run as a runner runs it;
//! * [`faults`]: a fault-injecting proxy, and [`fault_runs`] what the fault
//!   tests share;
//! * [`assembly`], [`ci`] and [`tekton`]: what the `--assemble-index` and
//!   the pipeline contract test files share; [`chains`]: Tekton Chains'
//!   reading of a run's results.

// Every test file compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod assembly;
pub mod buildx;
pub mod chains;
pub mod ci;
pub mod fault_runs;
pub mod faults;
pub mod file_server;
pub mod github;
pub mod http;
pub mod images;
pub mod jail;
pub mod registry;
pub mod run;
pub mod shipwright;
pub mod tekton;
pub mod tls;
pub mod token;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use http::{http_get, http_request, http_request_with, HttpResponse};
pub use registry::{AccessLogEntry, Registry, RegistryOptions};
pub use run::{ocistep_bin, Run};
pub use tls::TlsMaterial;
pub use token::{TokenPolicy, TokenReply, TokenRequest, TokenServer};

/// Debian package that provides an external tool. Most tools come in a
/// package of the same name (`docker-registry`, `skopeo`, `umoci`,
/// `buildah`, `openssl`, `curl`).
fn package_for(tool: &str) -> &str {
    match tool {
        "htpasswd" => "apache2-utils",
        "setpriv" => "util-linux",
        "busybox" => "busybox-static",
        "node" => "nodejs",
        "mknod" | "mkfifo" | "timeout" => "coreutils",
        other => other,
    }
}

/// Looks `name` up on `PATH`, then in `/usr/bin` (where Debian installs
/// all of the tools, e.g. `/usr/bin/docker-registry`), in case `PATH` is
/// minimal. Returns the executable's path.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    on_path.or_else(|| {
        let fallback = Path::new("/usr/bin").join(name);
        is_executable(&fallback).then_some(fallback)
    })
}

/// Whether `name` is installed (see [`find_tool`]).
pub fn has_tool(name: &str) -> bool {
    find_tool(name).is_some()
}

/// Returns the path of the external program `name`, or panics with an
/// installation hint when it is missing. Tests that depend on a tool must
/// fail loudly rather than skip when it is absent.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{}", install_hint(name)))
}

/// The message [`require_tool`] panics with when `name` is missing.
pub fn install_hint(name: &str) -> String {
    format!(
        "missing test dependency `{name}`: install it with `apt-get install -y {}` (or run .ci/run)",
        package_for(name)
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Environment variables removed from every process the tests start, so
/// nothing from the surrounding shell or CI (credentials, reproducibility
/// settings, step outputs, proxies) changes what is being tested.
pub const SCRUBBED_ENV: &[&str] = &[
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "SOURCE_DATE_EPOCH",
    "GITHUB_OUTPUT",
    "GITHUB_ENV",
    "GITHUB_STEP_SUMMARY",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// A fresh, empty directory that is kept after the test (under Cargo's
/// per-target scratch directory, so `cargo clean` removes it). Used as
/// `HOME` for processes under test.
pub fn fresh_home() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("homes");
    std::fs::create_dir_all(&base).expect("create the directory for temporary homes");
    tempfile::Builder::new()
        .prefix("home-")
        .tempdir_in(&base)
        .expect("create a temporary HOME")
        .keep()
}

/// The external program `name` (see [`require_tool`]) as a
/// [`std::process::Command`], isolated like [`Run`]: fresh `HOME`,
/// [`SCRUBBED_ENV`] removed.
pub fn tool(name: &str) -> Command {
    isolated(require_tool(name), &fresh_home())
}

/// `program` as a [`std::process::Command`] with the variables in
/// [`SCRUBBED_ENV`] removed and `HOME` set to `home`.
fn isolated(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home);
    cmd
}

/// Runs `cmd`, panics with its output unless it succeeds, and returns its
/// stdout as text.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_success(cmd, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(cmd: &Command, output: &Output) {
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates, with `umoci`, an OCI image layout at `dir/layout` holding one
/// tiny image (a config and no layers) tagged `tag`. Returns the layout
/// directory; `oci:<layout>:<tag>` names the image for `skopeo`.
pub fn umoci_image(dir: &Path, tag: &str) -> PathBuf {
    let layout = dir.join("layout");
    run_ok(tool("umoci").arg("init").arg("--layout").arg(&layout));
    run_ok(
        tool("umoci")
            .arg("new")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display())),
    );
    layout
}
