//! Docker archives (`docker save`, kaniko `--tar-path`) as Docker schema 2
//! images in an OCI layout.
//!
//! The config is kept byte for byte, so its digest (the image ID) survives.
//! gzip layers are kept as they are; uncompressed layers are compressed
//! deterministically (gzip level 6, no name, mtime 0), streamed from file
//! to file, and checked against the config's `rootfs.diff_ids`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::GzBuilder;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::image::archive::is_gzip;
use crate::oci::digest::{self, Digest, HashingReader, HashingWriter};
use crate::oci::manifest::{Descriptor, ImageManifest, DOCKER_LAYER_GZIP, DOCKER_MANIFEST};
use crate::store::layout::Layout;

/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The largest config or manifest.json read into memory.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// gzip level of layers compressed here.
const LAYER_GZIP_LEVEL: u32 = 6;

/// The gzip header's OS byte: "unknown", so the output is the same everywhere.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Copy buffer size.
const BUFFER_SIZE: usize = 256 * 1024;

/// One image in `manifest.json`.
#[derive(Debug, Deserialize)]
struct ArchiveImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A layer stored in the layout.
struct StoredLayer {
    digest: Digest,
    size: u64,
}

/// Converts the docker archive unpacked at `root` into a Docker schema 2
/// image whose blobs and manifest are stored in `layout`; returns the
/// manifest's descriptor.
pub fn convert(root: &Path, layout: &Layout) -> Result<Descriptor> {
    let image = read_archive_manifest(root)?;
    let config_path = resolve(root, &image.config)?;
    let config = read_small(&config_path)?;
    let config_digest = Digest::of(&config);
    let diff_ids = diff_ids(&config, &image.config)?;
    let mut layers = Vec::with_capacity(image.layers.len());
    for (i, name) in image.layers.iter().enumerate() {
        let path = resolve(root, name)?;
        let stored = store_layer(&path, name, diff_ids.get(i), layout)?;
        layers.push(Descriptor::new(
            DOCKER_LAYER_GZIP,
            &stored.digest,
            stored.size,
        ));
    }
    layout.put_blob_bytes(&config_digest, &config)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(DOCKER_MANIFEST.to_string()),
        artifact_type: None,
        config: Descriptor::new(DOCKER_CONFIG, &config_digest, config.len() as u64),
        layers,
        subject: None,
        annotations: Default::default(),
    }
    .to_bytes();
    let digest = Digest::of(&manifest);
    layout.put_blob_bytes(&digest, &manifest)?;
    Ok(Descriptor::new(
        DOCKER_MANIFEST,
        &digest,
        manifest.len() as u64,
    ))
}

/// Reads `manifest.json`, which must describe exactly one image.
fn read_archive_manifest(root: &Path) -> Result<ArchiveImage> {
    let path = root.join("manifest.json");
    let bytes = read_small(&path)?;
    let mut images: Vec<ArchiveImage> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::BadContent(format!(
            "manifest.json of the docker archive is not valid (expected [{{\"Config\", \"RepoTags\", \"Layers\"}}]): {e}"
        ))
    })?;
    match images.len() {
        1 => Ok(images.remove(0)),
        0 => Err(Error::BadContent(
            "manifest.json of the docker archive lists no image".to_string(),
        )),
        n => Err(Error::Usage(format!(
            "the docker archive holds {n} images ({}); save one image per tarball",
            images
                .iter()
                .map(|i| match &i.repo_tags {
                    Some(tags) if !tags.is_empty() => tags.join(" "),
                    _ => i.config.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The `rootfs.diff_ids` of the config (empty when it has none).
fn diff_ids(config: &[u8], name: &str) -> Result<Vec<String>> {
    #[derive(Deserialize, Default)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        rootfs: Option<RootFs>,
    }
    let parsed: Config = serde_json::from_slice(config).map_err(|e| {
        Error::BadContent(format!(
            "config {name} of the docker archive is not a valid image config: {e}"
        ))
    })?;
    Ok(parsed.rootfs.unwrap_or_default().diff_ids)
}

/// Stores one layer: a gzip layer as it is, an uncompressed one compressed.
fn store_layer(
    path: &Path,
    name: &str,
    diff_id: Option<&String>,
    layout: &Layout,
) -> Result<StoredLayer> {
    if is_gzip(path)? {
        return link_layer(path, layout);
    }
    if starts_with(path, &crate::compress::decompress::ZSTD_MAGIC)? {
        return Err(Error::BadContent(format!(
            "layer {name} of the docker archive is zstd-compressed; only uncompressed and gzip layers are supported"
        )));
    }
    let (stored, actual_diff_id) = compress_layer(path, layout)?;
    if let Some(expected) = diff_id {
        let expected = Digest::parse(expected).map_err(|_| {
            Error::BadContent(format!(
                "the docker archive's config has an invalid diff id {expected:?}"
            ))
        })?;
        digest::verify(
            &format!("layer {name} (its diff id in the config)"),
            &expected,
            None,
            &actual_diff_id,
            0,
        )?;
    }
    Ok(stored)
}

/// Stores a file as it is: hashed, then hard-linked (or copied) into the layout.
fn link_layer(path: &Path, layout: &Layout) -> Result<StoredLayer> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let (digest, size) = HashingReader::new(BufReader::with_capacity(BUFFER_SIZE, file))
        .drain_and_finish()
        .map_err(|e| Error::io("reading", path, e))?;
    if !layout.has_blob(&digest) && std::fs::hard_link(path, layout.blob_path(&digest)).is_err() {
        layout.put_blob_file(&digest, path)?;
    }
    Ok(StoredLayer { digest, size })
}

/// gzip-compresses an uncompressed layer into the layout; returns the
/// stored layer and the digest of the uncompressed tar (its diff id).
fn compress_layer(path: &Path, layout: &Layout) -> Result<(StoredLayer, Digest)> {
    let blobs = layout.root().join("blobs").join("sha256");
    let tmp = tempfile::NamedTempFile::new_in(&blobs)
        .map_err(|e| Error::io("creating temp file in", &blobs, e))?;
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut input = HashingReader::new(BufReader::with_capacity(BUFFER_SIZE, file));
    let sink = HashingWriter::new(BufWriter::with_capacity(BUFFER_SIZE, tmp.as_file()));
    let mut gzip = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(sink, flate2::Compression::new(LAYER_GZIP_LEVEL));
    std::io::copy(&mut input, &mut gzip).map_err(|e| Error::io("compressing", path, e))?;
    let (mut out, digest, size) = gzip
        .finish()
        .map_err(|e| Error::io("compressing", path, e))?
        .finish();
    out.flush()
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    drop(out);
    let (diff_id, _) = input
        .drain_and_finish()
        .map_err(|e| Error::io("reading", path, e))?;
    if !layout.has_blob(&digest) {
        let dest = layout.blob_path(&digest);
        tmp.persist(&dest)
            .map_err(|e| Error::io("storing blob", &dest, e.error))?;
    }
    Ok((StoredLayer { digest, size }, diff_id))
}

/// Resolves a path named in `manifest.json` inside `root`, refusing
/// anything that leaves it; the result is canonical and a regular file.
fn resolve(root: &Path, name: &str) -> Result<PathBuf> {
    let relative = Path::new(name);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if name.is_empty() || !plain {
        return Err(Error::UnsafeArchive(format!(
            "manifest.json names {name:?}, which is not a plain relative path inside the archive"
        )));
    }
    let joined = root.join(relative);
    let canonical = joined.canonicalize().map_err(|e| {
        Error::BadContent(format!(
            "the docker archive lacks {name}, which its manifest.json names: {e}"
        ))
    })?;
    let canonical_root = root
        .canonicalize()
        .map_err(|e| Error::io("resolving", root, e))?;
    if !canonical.starts_with(&canonical_root) {
        return Err(Error::UnsafeArchive(format!(
            "{name} in the docker archive leads outside it"
        )));
    }
    if !canonical.is_file() {
        return Err(Error::BadContent(format!(
            "{name} in the docker archive is not a regular file"
        )));
    }
    Ok(canonical)
}

/// Reads a small file (config, manifest.json), refusing large ones.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::BadContent(format!(
            "{} is larger than {MAX_JSON_BYTES} bytes; it is not a docker archive's JSON",
            path.display()
        )));
    }
    Ok(bytes)
}

fn starts_with(path: &Path, magic: &[u8]) -> Result<bool> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut head = Vec::with_capacity(magic.len());
    file.take(magic.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(head == magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello.txt", &b"hi\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn archive(dir: &Path, layer: &[u8], diff_id: &Digest) {
        std::fs::create_dir_all(dir.join("l1")).unwrap();
        std::fs::write(dir.join("l1/layer.tar"), layer).unwrap();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"k":"v"}}}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        std::fs::write(dir.join("cfg.json"), config).unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            r#"[{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["l1/layer.tar"]}]"#,
        )
        .unwrap();
    }

    #[test]
    fn uncompressed_layers_are_gzipped_deterministically() {
        let layer = layer_tar();
        let mut digests = Vec::new();
        for _ in 0..2 {
            let tmp = tempfile::tempdir().unwrap();
            archive(&tmp.path().join("a"), &layer, &Digest::of(&layer));
            let layout = Layout::open_or_create(&tmp.path().join("l")).unwrap();
            let desc = convert(&tmp.path().join("a"), &layout).unwrap();
            let manifest = layout
                .read_manifest(&desc)
                .unwrap()
                .image_manifest()
                .unwrap();
            assert_eq!(manifest.config.media_type, DOCKER_CONFIG);
            assert_eq!(manifest.layers[0].media_type, DOCKER_LAYER_GZIP);
            let blob = layout.blob_path(&manifest.layers[0].parsed_digest().unwrap());
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(File::open(blob).unwrap())
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, layer);
            digests.push(desc.digest);
        }
        assert_eq!(digests[0], digests[1]);
    }

    #[test]
    fn wrong_diff_id_is_a_digest_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        archive(&tmp.path().join("a"), &layer_tar(), &Digest::of(b"other"));
        let layout = Layout::open_or_create(&tmp.path().join("l")).unwrap();
        let e = convert(&tmp.path().join("a"), &layout).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::DigestMismatch, "{e}");
    }

    #[test]
    fn paths_leaving_the_archive_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(tmp.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("link")).unwrap();
        for name in ["../secret", "/etc/passwd", "link"] {
            let e = resolve(&root, name).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::UnsafeArchive, "{name}: {e}");
        }
    }
}
