//! Publishing what a mode produced: one result file per value (the bare
//! value, no trailing newline, written atomically), `$GITHUB_OUTPUT` when
//! set, and a dotenv file for GitLab's `artifacts: reports: dotenv`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::digest::Digest;

/// Result file paths; `None` means "not asked for".
#[derive(Debug, Clone, Default)]
pub struct ResultFiles {
    /// Manifest digest.
    pub digest: Option<PathBuf>,
    /// Total size in bytes.
    pub size: Option<PathBuf>,
    /// Pinned reference `name@digest`.
    pub reference: Option<PathBuf>,
    /// Source timestamp in seconds.
    pub source_timestamp: Option<PathBuf>,
    /// Per-platform JSON of an index.
    pub platform_results: Option<PathBuf>,
    /// A scan's findings (`ID:S,…`).
    pub vulnerabilities: Option<PathBuf>,
    /// A dotenv file with every value (`OCISTEP_DIGEST=…`).
    pub dotenv: Option<PathBuf>,
    /// The referrers `--discover` found, as an OCI index.
    pub referrers: Option<PathBuf>,
}

/// What a run produced. Values left `None` are not published.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Manifest or index digest.
    pub digest: Option<Digest>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// `registry/repo@sha256:…` or `oci:PATH@sha256:…`.
    pub reference: Option<String>,
    /// Seconds since the epoch; `None` when a bundle has none (no file).
    pub source_timestamp: Option<String>,
    /// JSON array of `{platform, digest, size, reference}`.
    pub platform_results: Option<String>,
    /// A scan's findings, `ID:S,…`; empty when it found none.
    pub vulnerabilities: Option<String>,
}

impl Outcome {
    /// (result file, GitHub output name, dotenv name, value) for each value present.
    fn values<'a>(
        &'a self,
        files: &'a ResultFiles,
    ) -> Vec<(Option<&'a Path>, &'static str, &'static str, String)> {
        let mut out = Vec::new();
        let mut push = |file: &'a Option<PathBuf>,
                        gh: &'static str,
                        env: &'static str,
                        value: Option<String>| {
            if let Some(v) = value {
                out.push((file.as_deref(), gh, env, v));
            }
        };
        push(
            &files.digest,
            "digest",
            "OCISTEP_DIGEST",
            self.digest.as_ref().map(Digest::to_string),
        );
        push(
            &files.size,
            "size",
            "OCISTEP_SIZE",
            self.size.map(|s| s.to_string()),
        );
        push(
            &files.reference,
            "image-url",
            "OCISTEP_IMAGE_URL",
            self.reference.clone(),
        );
        push(
            &files.source_timestamp,
            "source-timestamp",
            "OCISTEP_SOURCE_TIMESTAMP",
            self.source_timestamp.clone(),
        );
        push(
            &files.platform_results,
            "platform-results",
            "OCISTEP_PLATFORM_RESULTS",
            self.platform_results.clone(),
        );
        push(
            &files.vulnerabilities,
            "vulnerabilities",
            "OCISTEP_VULNERABILITIES",
            self.vulnerabilities.clone(),
        );
        out
    }
}

/// Writes every value to its result file, to `$GITHUB_OUTPUT` when that is
/// set, and to the dotenv file when asked for.
pub fn publish(files: &ResultFiles, outcome: &Outcome) -> Result<()> {
    let values = outcome.values(files);
    for (file, _, _, value) in &values {
        write(*file, value)?;
    }
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let mut text = String::new();
        for (_, name, _, value) in &values {
            let delimiter = format!("ocistep_{}", Digest::of(value.as_bytes()).hex());
            text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        }
        append(Path::new(&path), &text)?;
    }
    if let Some(path) = &files.dotenv {
        let text: String = values
            .iter()
            .map(|(_, _, env, value)| format!("{env}={}\n", value.replace('\n', " ")))
            .collect();
        write(Some(path), &text)?;
    }
    Ok(())
}

/// Writes `value` to `path` (when given). A regular file, or nothing yet,
/// is replaced atomically: a temporary file beside it, then a rename.
/// Anything else already at `path` (`/dev/null`, `/dev/stdout`, a FIFO, a
/// symlink) is written through, as a shell redirection would: renaming
/// over it would replace the device node or the link itself.
pub fn write(path: Option<&Path>, value: &str) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return write_through(path, value),
        _ => {}
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating result directory", dir, e))?;
    // The umask decides who reads it: a later step may run as another user.
    let mut tmp = crate::shared_file::temp_file_in(dir)?;
    tmp.write_all(value.as_bytes())
        .map_err(|e| Error::io("writing result file", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("writing result file", path, e.error))?;
    Ok(())
}

/// Writes `value` into what `path` names, which exists and is not a
/// regular file, without creating or replacing anything.
fn write_through(path: &Path, value: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).truncate(true);
    write_opened(
        &options,
        path,
        value,
        ["opening result file", "writing result file"],
    )
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    write_opened(
        &options,
        path,
        text,
        ["opening $GITHUB_OUTPUT", "writing $GITHUB_OUTPUT"],
    )
}

/// Opens `path` with `options` and writes `text`; `[opening, writing]`
/// say what failed in an error.
fn write_opened(
    options: &std::fs::OpenOptions,
    path: &Path,
    text: &str,
    [opening, writing]: [&'static str; 2],
) -> Result<()> {
    let mut file = options
        .open(path)
        .map_err(|e| Error::io(opening, path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(writing, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_bare_value_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/digest");
        write(Some(&p), "sha256:abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"sha256:abc");
        write(None, "ignored").unwrap();
        // Readable by whom the umask allows, not only this user.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o666 & !umask);
    }

    #[test]
    fn publish_writes_files_and_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        let files = ResultFiles {
            digest: Some(dir.path().join("d")),
            dotenv: Some(dir.path().join("build.env")),
            ..Default::default()
        };
        let d = Digest::of(b"x");
        let outcome = Outcome {
            digest: Some(d.clone()),
            size: Some(42),
            platform_results: Some("[]".into()),
            ..Default::default()
        };
        publish(&files, &outcome).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("d")).unwrap(),
            d.to_string()
        );
        let env = std::fs::read_to_string(dir.path().join("build.env")).unwrap();
        assert_eq!(
            env,
            format!("OCISTEP_DIGEST={d}\nOCISTEP_SIZE=42\nOCISTEP_PLATFORM_RESULTS=[]\n")
        );
    }
}
