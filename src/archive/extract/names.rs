//! Checks on what an archive entry says about itself: its type, its name,
//! its link target and its PAX records. Each refuses what could write
//! outside the target directory or something else than the archive says.

use std::io::Read;

use tar::EntryType;

use super::EntryKind;
use crate::error::{Error, Result};

/// Refuses PAX extended headers that are malformed (a record that does not
/// parse, a size that is not a number) or that describe a sparse file: the
/// tar reader would otherwise quietly ignore them and write something else
/// than the archive says.
pub(super) fn check_pax<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<()> {
    let refuse = |why: String| Error::UnsafeArchive(format!("entry {shown:?} {why}"));
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(|e| refuse(format!("has an unreadable PAX header: {e}")))?
    else {
        return Ok(());
    };
    for extension in extensions {
        let extension =
            extension.map_err(|e| refuse(format!("has a malformed PAX record: {e}")))?;
        let key = extension
            .key()
            .map_err(|_| refuse("has a PAX key that is not UTF-8".to_string()))?;
        let value = extension
            .value()
            .map_err(|_| refuse(format!("has a PAX {key} value that is not UTF-8")))?;
        if key.starts_with("GNU.sparse") {
            return Err(refuse(
                "is a sparse file (PAX GNU.sparse); sparse files are not supported".to_string(),
            ));
        }
        if key == "size" && value.parse::<u64>().is_err() {
            return Err(refuse(format!("has an invalid PAX size {value:?}")));
        }
    }
    Ok(())
}

/// Maps a tar entry type to what is extracted, refusing everything else.
pub(super) fn classify(entry_type: EntryType, shown: &str) -> Result<EntryKind> {
    let what = match entry_type {
        EntryType::Regular | EntryType::Continuous => return Ok(EntryKind::File),
        EntryType::Directory => return Ok(EntryKind::Dir),
        EntryType::Symlink => return Ok(EntryKind::Symlink),
        EntryType::Link => return Ok(EntryKind::Hardlink),
        EntryType::Char => "a character device".to_string(),
        EntryType::Block => "a block device".to_string(),
        EntryType::Fifo => "a fifo".to_string(),
        EntryType::GNUSparse => "a sparse file".to_string(),
        other => format!("of unsupported type {:?}", char::from(other.as_byte())),
    };
    Err(Error::UnsafeArchive(format!(
        "entry {shown:?} is {what}; source bundles may only hold files, directories and links"
    )))
}

/// Validates an entry name and returns it relative, `/`-separated, without
/// `.` components, empty components or a trailing slash. Returns `None` for
/// the archive root itself (`.` or `./`), which only a directory may name.
pub(super) fn normalize_name(raw: &[u8], is_dir: bool, shown: &str) -> Result<Option<String>> {
    let unsafe_name = |reason: &str| Err(Error::UnsafeArchive(format!("entry {shown:?} {reason}")));
    if raw.is_empty() {
        return Err(Error::UnsafeArchive(
            "an entry has an empty name".to_string(),
        ));
    }
    if raw.contains(&0) {
        return unsafe_name("has a NUL byte in its name");
    }
    let Ok(name) = std::str::from_utf8(raw) else {
        return unsafe_name("has a name that is not valid UTF-8");
    };
    if name.starts_with('/') {
        return unsafe_name("has an absolute path");
    }
    if name.ends_with('/') && !is_dir {
        return unsafe_name("ends with '/' but is not a directory");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return unsafe_name("escapes the target directory"),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return if is_dir {
            Ok(None)
        } else {
            unsafe_name("does not name anything inside the target directory")
        };
    }
    Ok(Some(parts.join("/")))
}

/// Reads the link name of a symlink or hard link entry as UTF-8.
pub(super) fn link_target<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<String> {
    let raw = entry.link_name_bytes().unwrap_or_default();
    if raw.is_empty() {
        return Err(Error::UnsafeArchive(format!(
            "link {shown:?} has an empty target"
        )));
    }
    if raw.contains(&0) {
        return Err(Error::UnsafeArchive(format!(
            "link {shown:?} has a NUL byte in its target"
        )));
    }
    match std::str::from_utf8(&raw) {
        Ok(target) => Ok(target.to_string()),
        Err(_) => Err(Error::UnsafeArchive(format!(
            "link {shown:?} has a target that is not valid UTF-8"
        ))),
    }
}

/// Checks that a symlink target is relative and stays inside the target
/// directory. `..` components may only lead the target (so the check holds
/// even when the target passes through other symlinks), and there may be no
/// more of them than directories above the link.
pub(super) fn check_symlink_target(path: &str, target: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::UnsafeArchive(format!(
            "symlink {path:?} -> {target:?} {reason}"
        )))
    };
    if target.starts_with('/') {
        return refuse(
            "has an absolute target; only relative targets inside the bundle are allowed",
        );
    }
    let mut depth = path.matches('/').count();
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => {
                return refuse(
                    "uses \"..\" after a directory name; only leading \"..\" are allowed",
                )
            }
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return refuse("escapes the target directory"),
            },
            _ => named = true,
        }
    }
    Ok(())
}
