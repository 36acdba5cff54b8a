//! Image tarballs: finding the one in DIR and unpacking it safely.
//!
//! An OCI archive is a tar of an OCI image layout (`oci-layout` and
//! `index.json` at its root); a docker archive is what `docker save` and
//! kaniko's `--tar-path` write (`manifest.json` naming the config and the
//! layers). Either may be gzip-compressed.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::archive::extract::{self, ExtractLimits, DEFAULT_MAX_BYTES};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::store::layout::Layout;

/// File name endings recognised as image tarballs.
const TARBALL_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz"];

/// How much an archive may expand, relative to its size on disk, before
/// extraction is stopped (at least the bundle default of 10 GiB).
const EXPANSION_FACTOR: u64 = 16;

/// What DIR holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An OCI image layout.
    Layout,
    /// One image tarball, at this path.
    Tarball(PathBuf),
}

/// What a tarball turned out to be once unpacked.
#[derive(Debug)]
pub enum Unpacked {
    /// An OCI archive: the unpacked directory is a layout.
    Oci(Layout),
    /// A docker archive, unpacked at this directory.
    Docker(PathBuf),
}

/// Looks at DIR: an OCI image layout wins, otherwise exactly one tarball
/// (`*.tar`, `*.tar.gz`, `*.tgz`) must be in it. DIR may also name the
/// tarball itself.
pub fn find(dir: &Path) -> Result<Found> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::Usage(format!(
            "--push-image {}: {e}; give the directory the build wrote its image to",
            dir.display()
        ))
    })?;
    if meta.is_file() && is_tarball_name(dir) {
        return Ok(Found::Tarball(dir.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "--push-image {} is neither a directory nor an image tarball (*.tar, *.tar.gz)",
            dir.display()
        )));
    }
    if dir.join("oci-layout").is_file() && dir.join("index.json").is_file() {
        return Ok(Found::Layout);
    }
    let mut tarballs = tarballs_in(dir)?;
    match tarballs.len() {
        1 => Ok(Found::Tarball(tarballs.remove(0))),
        0 => Err(Error::Usage(format!(
            "{} holds neither an OCI image layout (oci-layout and index.json) nor an image tarball \
             (*.tar, *.tar.gz); give --push-image the directory the build wrote its image to",
            dir.display()
        ))),
        _ => Err(Error::Usage(format!(
            "{} holds {} image tarballs ({}); keep exactly one, or give --push-image the tarball itself",
            dir.display(),
            tarballs.len(),
            tarballs
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Unpacks `tarball` into `into` (an empty directory) and says what it is.
pub fn unpack(tarball: &Path, into: &Path) -> Result<Unpacked> {
    let compression = sniff_compression(tarball)?;
    let size = std::fs::metadata(tarball)
        .map_err(|e| Error::io("reading", tarball, e))?
        .len();
    let limits = ExtractLimits {
        max_bytes: size.saturating_mul(EXPANSION_FACTOR).max(DEFAULT_MAX_BYTES),
        ..ExtractLimits::default()
    };
    let file = File::open(tarball).map_err(|e| Error::io("opening", tarball, e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    extract::unpack(&mut reader, compression, into, &limits, &mut |_| {})?;
    if into.join("oci-layout").is_file() && into.join("index.json").is_file() {
        return Ok(Unpacked::Oci(Layout::open(into)?));
    }
    if into.join("manifest.json").is_file() {
        return Ok(Unpacked::Docker(into.to_path_buf()));
    }
    Err(Error::Usage(format!(
        "{} is neither an OCI archive (oci-layout and index.json inside) nor a docker archive \
         (manifest.json inside); write the image with `docker save`, kaniko --tar-path or an OCI exporter",
        tarball.display()
    )))
}

/// True when the file starts with the gzip magic bytes.
pub fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Error::io("reading", path, e)),
        }
    }
    Ok(read == 2 && magic == [0x1f, 0x8b])
}

fn sniff_compression(path: &Path) -> Result<Compression> {
    Ok(if is_gzip(path)? {
        Compression::Gzip
    } else {
        Compression::None
    })
}

fn is_tarball_name(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    TARBALL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The regular files in `dir` (symlinks followed) named like tarballs, sorted.
fn tarballs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))?;
    let mut found = Vec::new();
    for entry in listing {
        let path = entry.map_err(|e| Error::io("reading", dir, e))?.path();
        if is_tarball_name(&path) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_wins_over_tarballs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("img.tar"), b"").unwrap();
        assert_eq!(
            find(dir.path()).unwrap(),
            Found::Tarball(dir.path().join("img.tar"))
        );
        Layout::open_or_create(dir.path()).unwrap();
        assert_eq!(find(dir.path()).unwrap(), Found::Layout);
    }

    #[test]
    fn none_or_several_tarballs_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let e = find(dir.path()).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        std::fs::write(dir.path().join("a.tar"), b"").unwrap();
        std::fs::write(dir.path().join("b.tar.gz"), b"").unwrap();
        let e = find(dir.path()).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert!(e.to_string().contains("a.tar, b.tar.gz"), "{e}");
        assert_eq!(
            find(&dir.path().join("missing")).unwrap_err().exit_code(),
            crate::ExitCode::Usage
        );
    }

    #[test]
    fn gzip_is_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x");
        std::fs::write(&gz, [0x1f, 0x8b, 8]).unwrap();
        assert!(is_gzip(&gz).unwrap());
        std::fs::write(&gz, b"u").unwrap();
        assert!(!is_gzip(&gz).unwrap());
    }
}
