//! Files that other users and later steps read (OCI layouts, the cache),
//! written whole to a temporary file in the same directory and renamed
//! into place, so readers never see a partial file.
//!
//! The temporary file is created with mode 0666, from which the kernel
//! takes the umask, as for any file a program creates: under umask 022 the
//! next step's non-root user can read it, under umask 077 nobody else can.
//! (A temporary file's usual 0600 would keep it from every other user
//! whatever the umask says.)

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// The mode asked for; the umask takes its bits away.
const MODE: u32 = 0o666;

/// A new temporary file in `dir`, with the mode the umask allows, to be
/// renamed into place once written.
pub fn temp_file_in(dir: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .permissions(Permissions::from_mode(MODE))
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))
}

/// Writes `bytes` to `dest`, replacing it atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    written(dest, bytes)?
        .persist(dest)
        .map_err(|e| Error::io("writing", dest, e.error))?;
    Ok(())
}

/// Writes `bytes` to `dest` unless something is there already, atomically:
/// of several runs creating the same file, the first one's stays.
pub fn create_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    match written(dest, bytes)?.persist_noclobber(dest) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("writing", dest, e.error)),
    }
}

/// Takes the exclusive lock (`flock`) on the file at `path`, created empty
/// when missing, waiting for a run that holds it; released when the
/// returned file is dropped (or the process ends). A lock file another user
/// created is opened read-only, which is enough to lock it.
pub fn lock(path: &Path) -> Result<std::fs::File> {
    let file = match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path),
        opened => opened,
    }
    .map_err(|e| Error::io("opening the lock file", path, e))?;
    file.lock().map_err(|e| Error::io("locking", path, e))?;
    Ok(file)
}

/// A temporary file beside `dest` holding `bytes`.
fn written(dest: &Path, bytes: &[u8]) -> Result<NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = temp_file_in(dir)?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_get_what_the_umask_allows_and_creation_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // The umask is the process's, which other tests may read: take it
        // without changing it for good.
        let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(umask);
        create_atomic(&path, b"one").unwrap();
        assert_eq!(mode(&path), MODE & !umask.bits());
        create_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"three").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(mode(&path), MODE & !umask.bits());
    }
}
