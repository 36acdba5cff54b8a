//! Result files: the bare value, no trailing newline, written atomically so
//! an orchestrator never reads half a digest.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `value` to `path` (when given) via a temporary file and a rename.
pub fn write(path: Option<&Path>, value: &str) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating result directory", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("creating result file in", dir, e))?;
    tmp.write_all(value.as_bytes())
        .map_err(|e| Error::io("writing result file", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("writing result file", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_bare_value_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/digest");
        super::write(Some(&p), "sha256:abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"sha256:abc");
        super::write(None, "ignored").unwrap();
    }
}
