//! [`Run`]: the one way the integration tests start `ocistep`.
//!
//! A `Run` holds the arguments, the environment and the working directory
//! of one invocation; it starts from an environment isolated from the
//! developer's or CI's real credentials and settings (the variables in
//! [`SCRUBBED_ENV`](super::SCRUBBED_ENV) removed, `HOME` a fresh empty directory, chosen once per
//! `Run`). The constructors name the mode, the setters add to it, and the
//! finishers run it:
//!
//! ```ignore
//! Run::push_bundle(&src).image(&image).arg("-q").assert().success();
//! let digest = Run::push_artifact().image(&image).args(["--file", "a"]).digest();
//! let child = Run::pull_bundle(&work).image(&image).spawn();
//! ```

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{fresh_home, isolated};

/// The path of the `ocistep` binary under test.
pub fn ocistep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ocistep"))
}

/// What a run wrote to its result files (see [`Run::results`]).
#[derive(Clone, Debug)]
pub struct Results {
    /// `--result-file-image-digest`.
    pub digest: String,
    /// `--result-file-image-size`.
    pub size: String,
    /// `--result-file-image-ref`.
    pub reference: String,
}

/// One invocation of `ocistep`, built up and then run (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct Run {
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    home: PathBuf,
    timeout: Option<Duration>,
    umask: Option<u32>,
    wrapper: Option<(OsString, Vec<OsString>)>,
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

impl Run {
    /// `ocistep` with no arguments yet.
    pub fn new() -> Run {
        Run {
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
            home: fresh_home(),
            timeout: None,
            umask: None,
            wrapper: None,
        }
    }

    /// `ocistep ARGS...`.
    pub fn with<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut run = Run::new();
        run.args(args);
        run
    }

    fn mode(flag: &str, value: Option<&OsStr>) -> Run {
        let mut run = Run::new();
        run.arg(flag);
        if let Some(value) = value {
            run.arg(value);
        }
        run
    }

    /// `ocistep --push-source-bundle DIR`.
    pub fn push_bundle(dir: impl AsRef<OsStr>) -> Run {
        Run::mode("--push-source-bundle", Some(dir.as_ref()))
    }

    /// `ocistep --pull-source-bundle DIR`.
    pub fn pull_bundle(dir: impl AsRef<OsStr>) -> Run {
        Run::mode("--pull-source-bundle", Some(dir.as_ref()))
    }

    /// `ocistep --push-artifact`.
    pub fn push_artifact() -> Run {
        Run::mode("--push-artifact", None)
    }

    /// `ocistep --pull-artifact DIR`.
    pub fn pull_artifact(dir: impl AsRef<OsStr>) -> Run {
        Run::mode("--pull-artifact", Some(dir.as_ref()))
    }

    /// `ocistep --push-image DIR`.
    pub fn push_image(dir: impl AsRef<OsStr>) -> Run {
        Run::mode("--push-image", Some(dir.as_ref()))
    }

    /// `ocistep --assemble-index`.
    pub fn assemble_index() -> Run {
        Run::mode("--assemble-index", None)
    }

    /// `ocistep --discover --image REF`.
    pub fn discover(image: impl AsRef<OsStr>) -> Run {
        let mut run = Run::mode("--discover", None);
        run.image(image);
        run
    }

    /// `ocistep --push-artifact --subject REF`: one file `FILE` pushed as a
    /// layer of `artifact_type`, attached to REF.
    pub fn attach(subject: &str, artifact_type: &str, file: &Path) -> Run {
        let mut run = Run::push_artifact();
        run.args(["--subject", subject, "--artifact-type", artifact_type])
            .arg("--file")
            .arg(format!("{}:{artifact_type}", file.display()));
        run
    }

    /// `ocistep --copy SRC DST`.
    pub fn copy(src: impl AsRef<OsStr>, dst: impl AsRef<OsStr>) -> Run {
        let mut run = Run::mode("--copy", Some(src.as_ref()));
        run.arg(dst);
        run
    }

    /// Adds `--image REF`.
    pub fn image(&mut self, reference: impl AsRef<OsStr>) -> &mut Self {
        self.arg("--image").arg(reference)
    }

    /// Adds `--cache-dir DIR`.
    pub fn cache_dir(&mut self, dir: impl AsRef<OsStr>) -> &mut Self {
        self.arg("--cache-dir").arg(dir)
    }

    /// Adds `--secret-path DIR`.
    pub fn secret_path(&mut self, dir: impl AsRef<OsStr>) -> &mut Self {
        self.arg("--secret-path").arg(dir)
    }

    /// Adds `--result-file-image-digest FILE`.
    pub fn digest_to(&mut self, file: impl AsRef<OsStr>) -> &mut Self {
        self.arg("--result-file-image-digest").arg(file)
    }

    /// Adds `--platform-image ENTRY` for each entry.
    pub fn platform_images<I, S>(&mut self, entries: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for entry in entries {
            self.arg("--platform-image").arg(entry);
        }
        self
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (`HOME` included, which replaces the
    /// fresh one).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        let value = value.as_ref().to_owned();
        self.envs.push((key.as_ref().to_owned(), Some(value)));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Runs in `dir` instead of the test's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Kills the run after `limit` ([`assert`](Run::assert) and
    /// [`output`](Run::output) only).
    pub fn timeout(&mut self, limit: Duration) -> &mut Self {
        self.timeout = Some(limit);
        self
    }

    /// Runs under the file mode creation mask `umask`.
    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.umask = Some(umask);
        self
    }

    /// Runs `ocistep` through `program ARGS...` (e.g. `setpriv`), which is
    /// given the path of `ocistep` and then the run's arguments.
    pub fn via<I, S>(&mut self, program: impl AsRef<OsStr>, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.wrapper = Some((program.as_ref().to_owned(), args));
        self
    }

    /// The run as a [`std::process::Command`], for a test that sets more up
    /// itself (stdio, umask, a process group).
    pub fn command(&self) -> Command {
        let mut cmd = match &self.wrapper {
            Some((program, args)) => {
                let mut cmd = isolated(program, &self.home);
                cmd.args(args).arg(ocistep_bin());
                cmd
            }
            None => isolated(ocistep_bin(), &self.home),
        };
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd.args(&self.args);
        if let Some(umask) = self.umask {
            // SAFETY: umask is async-signal-safe and touches no memory.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(umask as libc::mode_t);
                    Ok(())
                });
            }
        }
        cmd
    }

    fn assert_cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.command());
        if let Some(limit) = self.timeout {
            cmd.timeout(limit);
        }
        cmd
    }

    /// Runs to the end, for `assert_cmd`'s checks.
    pub fn assert(&self) -> assert_cmd::assert::Assert {
        self.assert_cmd().assert()
    }

    /// Runs to the end and returns what it printed and its status.
    pub fn output(&self) -> Output {
        self.assert_cmd()
            .output()
            .unwrap_or_else(|e| panic!("cannot run ocistep {:?}: {e}", self.args))
    }

    /// Runs to the end and returns its exit code (-1 when a signal ended
    /// it) and its stderr as text.
    pub fn code_and_stderr(&self) -> (i32, String) {
        let out = self.output();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs to the end, panics with what it printed unless it succeeded, and
    /// returns its output.
    pub fn output_ok(&self) -> Output {
        self.assert().success().get_output().clone()
    }

    /// Runs to the end, panics with what it printed unless it succeeded, and
    /// returns its stdout and stderr as text.
    pub fn printed_ok(&self) -> (String, String) {
        let out = self.output_ok();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs with `--result-file-image-digest` added, asserts success and
    /// returns the digest written there.
    pub fn digest(&self) -> String {
        self.result("--result-file-image-digest")
    }

    /// Runs with the result-file flag `flag FILE` added (e.g.
    /// `--result-file-image-ref`), asserts success and returns what was
    /// written to FILE.
    pub fn result(&self, flag: &str) -> String {
        let file = tempfile::NamedTempFile::new().expect("a file for the result");
        let mut run = self.clone();
        run.arg(flag).arg(file.path());
        run.assert().success();
        std::fs::read_to_string(file.path()).expect("read the result file")
    }

    /// Runs with the digest, size and reference result files asked for,
    /// asserts success and returns what they hold.
    pub fn results(&self) -> Results {
        let dir = tempfile::tempdir().expect("a directory for the results");
        self.results_in(dir.path())
    }

    /// Like [`results`](Run::results), with the result files left in `dir`
    /// as `digest`, `size` and `ref`.
    pub fn results_in(&self, dir: &Path) -> Results {
        let file = |name: &str| dir.join(name);
        let mut run = self.clone();
        run.arg("--result-file-image-digest")
            .arg(file("digest"))
            .arg("--result-file-image-size")
            .arg(file("size"))
            .arg("--result-file-image-ref")
            .arg(file("ref"));
        run.assert().success();
        let read = |name: &str| std::fs::read_to_string(file(name)).expect("read a result file");
        Results {
            digest: read("digest"),
            size: read("size"),
            reference: read("ref"),
        }
    }

    /// Starts in the background with stdout discarded and stderr piped.
    pub fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ocistep {:?}: {e}", self.args))
    }

    /// Starts in the background with stdout discarded and stderr written
    /// to the file `log`.
    pub fn spawn_logged(&self, log: &Path) -> Child {
        let log = std::fs::File::create(log).expect("create the log file");
        self.command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ocistep {:?}: {e}", self.args))
    }
}
