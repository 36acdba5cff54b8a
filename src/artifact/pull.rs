//! Writing an artifact's layers under a directory: which layers, where
//! (checked before any byte is written), and how (a file with its mode, or
//! a tar layer unpacked safely).

use std::collections::BTreeSet;
use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::archive::beneath::Beneath;
use crate::archive::extract::writer::written_error;
use crate::archive::extract::{self, ExtractLimits, ExtractStats};
use crate::archive::staging::StagingDir;
use crate::artifact::title::{self, Title};
use crate::artifact::{ANNOTATION_CONTENT_DIGEST, ANNOTATION_FILE_MODE, ANNOTATION_UNPACK};
use crate::compress::{decompress, Compression};
use crate::error::{Error, Result};
use crate::oci::digest::{self, Digest, HashingReader};
use crate::oci::manifest::{Descriptor, ImageManifest, ANNOTATION_TITLE};

/// Most bytes allowed after a tar archive's end marker (record padding).
const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// One layer to write.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The layer.
    pub desc: Descriptor,
    /// Where it goes, relative to the pull directory.
    pub title: Title,
    /// What to do with it.
    pub kind: PlannedKind,
}

/// How a planned layer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedKind {
    /// Written as one file with these permission bits.
    File {
        /// 0755 or 0644.
        mode: u32,
    },
    /// Unpacked as a tar archive into a directory.
    Unpack(Compression),
}

/// Chooses the layers to write: those with a title, and with one of
/// `media_types` when any are given. Every title is checked (relative, no
/// `..`, no NUL or backslash) and the chosen ones must not collide, all
/// before anything is written.
pub fn plan(manifest: &ImageManifest, media_types: &[String], what: &str) -> Result<Vec<Planned>> {
    let wanted: BTreeSet<&str> = media_types.iter().map(String::as_str).collect();
    let mut planned = Vec::new();
    for (i, desc) in manifest.layers.iter().enumerate() {
        let Some(raw) = desc.annotations.get(ANNOTATION_TITLE) else {
            tracing::debug!(
                "layer {i} ({}, {}) has no {ANNOTATION_TITLE} annotation; skipped",
                desc.media_type,
                desc.digest
            );
            continue;
        };
        let title = Title::parse(raw)?;
        if !wanted.is_empty() && !wanted.contains(desc.media_type.as_str()) {
            tracing::debug!(
                "layer {:?} has media type {}; skipped (--media-type)",
                title.as_str(),
                desc.media_type
            );
            continue;
        }
        let unpack = desc
            .annotations
            .get(ANNOTATION_UNPACK)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let kind = if unpack {
            PlannedKind::Unpack(compression_of(&desc.media_type))
        } else {
            PlannedKind::File {
                mode: file_mode(desc),
            }
        };
        planned.push(Planned {
            desc: desc.clone(),
            title,
            kind,
        });
    }
    let titles: Vec<&Title> = planned.iter().map(|p| &p.title).collect();
    title::check_distinct(&titles)?;
    if planned.is_empty() {
        let types: BTreeSet<&str> = manifest
            .layers
            .iter()
            .filter(|l| l.annotations.contains_key(ANNOTATION_TITLE))
            .map(|l| l.media_type.as_str())
            .collect();
        return Err(if types.is_empty() {
            Error::BadContent(format!(
                "{what} has no layer with an {ANNOTATION_TITLE} annotation, so nothing can be written; \
                 is it an artifact? (images and source bundles have their own modes)"
            ))
        } else {
            Error::NotFound(format!(
                "{what} has no titled layer with media type {}; it has: {}",
                media_types.join(" or "),
                types.into_iter().collect::<Vec<_>>().join(", ")
            ))
        });
    }
    Ok(planned)
}

/// Plain tar when the media type says so (`….tar`, `…+tar`), zstd for
/// `…+zstd`, else gzip, which is what ORAS writes (and always reads) for
/// directories.
fn compression_of(media_type: &str) -> Compression {
    if media_type.ends_with(".tar") || media_type.ends_with("+tar") {
        Compression::None
    } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
        Compression::Zstd
    } else {
        Compression::Gzip
    }
}

/// 0755 when the layer's mode annotation has an exec bit, else 0644.
/// Other bits (set-id, sticky, group or world write) are never applied.
fn file_mode(desc: &Descriptor) -> u32 {
    let Some(value) = desc.annotations.get(ANNOTATION_FILE_MODE) else {
        return 0o644;
    };
    match u32::from_str_radix(value.trim().trim_start_matches("0o"), 8) {
        Ok(mode) if mode & 0o111 != 0 => 0o755,
        Ok(_) => 0o644,
        Err(_) => {
            tracing::warn!(
                "layer {}: {ANNOTATION_FILE_MODE} {value:?} is not an octal mode; written as 0644",
                desc.digest
            );
            0o644
        }
    }
}

/// Writes one file layer from `reader` to `root/title` (parents created),
/// with `mode`; returns the bytes written. The file must not exist. Every
/// path is resolved beneath `root`, never through a symlink.
pub fn write_file(reader: &mut dyn Read, root: &Path, title: &Title, mode: u32) -> Result<u64> {
    let dest = open_root(root)?;
    let rel = title.as_str();
    if let Some(parent) = title.parent() {
        let parent = parent.to_string_lossy();
        dest.create_dir_all(&parent)
            .map_err(|e| written_error(&dest, &parent, e))?;
    }
    let path = dest.shown(&rel);
    let mut file = dest
        .create_file(&rel, 0o600)
        .map_err(|e| written_error(&dest, &rel, e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Interrupted(format!(
                    "download of {:?} cut short: {e}",
                    title.as_str()
                )))
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("writing", &path, e))?;
        written += n as u64;
    }
    file.sync_all()
        .map_err(|e| Error::io("writing", &path, e))?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting the mode of", &path, e))?;
    Ok(written)
}

/// Opens the directory files are written beneath.
fn open_root(root: &Path) -> Result<Beneath> {
    Beneath::open(root).map_err(|e| Error::io("opening", root, e))
}

/// Removes what a failed attempt of [`write_file`] left.
pub fn remove_partial(root: &Path, title: &Title) -> Result<()> {
    let dest = open_root(root)?;
    let rel = title.as_str();
    match dest.remove_file(&rel) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(written_error(&dest, &rel, e)),
        _ => Ok(()),
    }
}

/// A scratch directory for one unpacked layer, next to the staging
/// directory (so moving out of it is a rename), locked and removed like it.
pub fn scratch_dir(target: &Path) -> Result<StagingDir> {
    StagingDir::create_in(target)
}

/// Unpacks a tar layer into `scratch` (empty) with the safety checks and
/// limits of source bundles; returns the totals and the entry paths. When
/// `tar_digest` is given (the layer's `io.deis.oras.content.digest`), the
/// uncompressed tar must hash to it.
pub fn unpack(
    reader: &mut dyn Read,
    compression: Compression,
    scratch: &Path,
    limits: &ExtractLimits,
    tar_digest: Option<&Digest>,
) -> Result<(ExtractStats, Vec<String>)> {
    let (head, reader) = peek::<4>(reader)
        .map_err(|e| Error::BadContent(format!("layer could not be read: {e}")))?;
    let compression = match compression {
        // A directory pushed with --compression zstd under a media type of
        // the user's own that does not say so.
        Compression::Gzip if head == decompress::ZSTD_MAGIC => Compression::Zstd,
        other => other,
    };
    let (decoded, _) = decompress::decoder(reader, compression);
    let mut tar = HashingReader::new(decoded);
    let mut listing = Vec::new();
    let stats = extract::unpack(&mut tar, Compression::None, scratch, limits, &mut |e| {
        listing.push(e.path.to_string())
    })?;
    if let Some(expected) = tar_digest {
        let corrupt = |e: std::io::Error| {
            Error::BadContent(format!(
                "layer is not a valid tar stream after its end: {e}"
            ))
        };
        let trailing = std::io::copy(
            &mut (&mut tar).take(MAX_TRAILING_BYTES + 1),
            &mut std::io::sink(),
        )
        .map_err(corrupt)?;
        if trailing > MAX_TRAILING_BYTES {
            return Err(Error::UnsafeArchive(format!(
                "more than {MAX_TRAILING_BYTES} bytes follow the end of the tar archive"
            )));
        }
        let (actual, size) = tar.drain_and_finish().map_err(corrupt)?;
        digest::verify(
            &format!("the uncompressed tar ({ANNOTATION_CONTENT_DIGEST})"),
            expected,
            None,
            &actual,
            size,
        )?;
    }
    Ok((stats, listing))
}

/// Reads up to `N` bytes from the start of `reader` (fewer only at its
/// end); returns them and a reader that yields them again, then the rest.
fn peek<const N: usize>(reader: impl Read) -> std::io::Result<([u8; N], impl Read)> {
    let mut head = [0u8; N];
    let mut got = 0;
    let mut reader = reader;
    while got < N {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let again = std::io::Cursor::new(head).take(got as u64);
    Ok((head, again.chain(reader)))
}

/// The layer's `io.deis.oras.content.digest`, when it is a valid digest.
pub fn tar_digest(desc: &Descriptor) -> Option<Digest> {
    let value = desc.annotations.get(ANNOTATION_CONTENT_DIGEST)?;
    match Digest::parse(value) {
        Ok(d) => Some(d),
        Err(_) => {
            tracing::warn!(
                "layer {}: {ANNOTATION_CONTENT_DIGEST} {value:?} is not a digest; not checked",
                desc.digest
            );
            None
        }
    }
}

/// Moves an unpacked layer from `scratch` to `root/title`. When every
/// entry sits under a top-level path equal to the title (how ORAS packs a
/// directory), that path is moved; otherwise the archive's root becomes
/// `root/title`. Returns the entries as `title/…` paths.
pub fn place_unpacked(
    scratch: &Path,
    listing: &[String],
    root: &Path,
    title: &Title,
) -> Result<Vec<String>> {
    let name = title.as_str();
    let prefix = format!("{name}/");
    let dest = open_root(root)?;
    let from = open_root(scratch)?;
    if let Some(parent) = title.parent() {
        let parent = parent.to_string_lossy();
        dest.create_dir_all(&parent)
            .map_err(|e| written_error(&dest, &parent, e))?;
    }
    let moved = |rel: &str, to_rel: &str| {
        from.rename(rel, &dest, to_rel)
            .map_err(|e| written_error(&dest, to_rel, e))
    };
    let oras_style =
        !listing.is_empty() && listing.iter().all(|p| *p == name || p.starts_with(&prefix));
    if oras_style {
        moved(&name, &name)?;
        return Ok(listing.to_vec());
    }
    dest.create_dir_all(&name)
        .map_err(|e| written_error(&dest, &name, e))?;
    let mut top = Vec::new();
    for entry in std::fs::read_dir(scratch).map_err(|e| Error::io("reading", scratch, e))? {
        let entry = entry.map_err(|e| Error::io("reading", scratch, e))?;
        top.push(entry.file_name().to_string_lossy().into_owned());
    }
    for entry in top {
        moved(&entry, &format!("{name}/{entry}"))?;
    }
    Ok(listing.iter().map(|p| format!("{prefix}{p}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::OCI_MANIFEST;

    fn layer(title: Option<&str>, media_type: &str, extra: &[(&str, &str)]) -> Descriptor {
        let mut d = Descriptor::new(media_type, &Digest::of(media_type.as_bytes()), 1);
        if let Some(t) = title {
            d.annotations.insert(ANNOTATION_TITLE.into(), t.into());
        }
        for (k, v) in extra {
            d.annotations.insert(k.to_string(), v.to_string());
        }
        d
    }

    fn manifest(layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some("application/x-test".into()),
            config: layer(None, crate::artifact::EMPTY_CONFIG_MEDIA_TYPE, &[]),
            layers,
            subject: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn plan_skips_untitled_filters_and_reads_modes() {
        let m = manifest(vec![
            layer(
                Some("bin"),
                "application/x-bin",
                &[(ANNOTATION_FILE_MODE, "0755")],
            ),
            layer(None, "application/x-bin", &[]),
            layer(
                Some("web"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &[(ANNOTATION_UNPACK, "true")],
            ),
            layer(
                Some("odd"),
                "application/x-bin",
                &[(ANNOTATION_FILE_MODE, "4777")],
            ),
        ]);
        let p = plan(&m, &[], "t").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].kind, PlannedKind::File { mode: 0o755 });
        assert_eq!(p[1].kind, PlannedKind::Unpack(Compression::Gzip));
        assert_eq!(p[2].kind, PlannedKind::File { mode: 0o755 });
        let p = plan(&m, &["application/x-bin".into()], "t").unwrap();
        assert_eq!(p.len(), 2);
        let e = plan(&m, &["text/plain".into()], "t").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::NotFound);
        assert!(e.to_string().contains("application/x-bin"));
    }

    #[test]
    fn hostile_or_colliding_titles_fail_the_plan() {
        for titles in [vec!["../x"], vec!["/abs"], vec!["a", "a"], vec!["a", "a/b"]] {
            let m = manifest(
                titles
                    .iter()
                    .map(|t| layer(Some(t), "application/x-bin", &[]))
                    .collect(),
            );
            let e = plan(&m, &[], "t").unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::UnsafeArchive, "{titles:?}");
        }
    }

    #[test]
    fn unpacked_layers_are_placed_with_or_without_the_title_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let scratch = scratch_dir(tmp.path()).unwrap();
        std::fs::create_dir_all(scratch.path().join("site/css")).unwrap();
        std::fs::write(scratch.path().join("site/css/a.css"), b"x").unwrap();
        let listing = vec![
            "site".to_string(),
            "site/css".into(),
            "site/css/a.css".into(),
        ];
        let title = Title::parse("site").unwrap();
        place_unpacked(scratch.path(), &listing, &root, &title).unwrap();
        assert!(root.join("site/css/a.css").is_file());

        let scratch = scratch_dir(tmp.path()).unwrap();
        std::fs::write(scratch.path().join("a.json"), b"{}").unwrap();
        let title = Title::parse("defs/crds").unwrap();
        let shown = place_unpacked(scratch.path(), &["a.json".into()], &root, &title).unwrap();
        assert_eq!(shown, ["defs/crds/a.json"]);
        assert!(root.join("defs/crds/a.json").is_file());
    }

    #[test]
    fn zstd_layers_are_recognised_by_media_type_or_by_their_magic() {
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd
        );
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar+gzip"),
            Compression::Gzip
        );
        assert_eq!(compression_of("application/x-tar"), Compression::Gzip);
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar"),
            Compression::None
        );

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "a.txt", &b"abc"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let layer = zstd::encode_all(&tar[..], 3).unwrap();
        let tar_digest = Digest::of(&tar);
        // Named zstd, or named as the user liked (gzip assumed): both unpack.
        for compression in [Compression::Zstd, Compression::Gzip] {
            let tmp = tempfile::tempdir().unwrap();
            let (stats, listing) = unpack(
                &mut &layer[..],
                compression,
                tmp.path(),
                &ExtractLimits::default(),
                Some(&tar_digest),
            )
            .unwrap();
            assert_eq!((stats.entries, listing), (1, vec!["a.txt".to_string()]));
            assert_eq!(std::fs::read(tmp.path().join("a.txt")).unwrap(), b"abc");
        }
        // Garbage after the frame is refused, not ignored.
        let mut junk = layer.clone();
        junk.extend_from_slice(b"junk");
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(
            &mut &junk[..],
            Compression::Zstd,
            tmp.path(),
            &ExtractLimits::default(),
            Some(&tar_digest),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::BadContent, "{err}");
    }
}
