//! Source trees for tests: a sample tree with every kind of entry a bundle
//! keeps, snapshots for byte-for-byte comparison, and hand-made bundles.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ocistep::bundle::format;
use ocistep::oci::digest::Digest;
use ocistep::oci::manifest::{Descriptor, OCI_MANIFEST};
use ocistep::store::layout::Layout;

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file: content digest and whether any exec bit is set.
    File { digest: String, executable: bool },
    /// A directory.
    Dir,
    /// A symlink and its target.
    Symlink(String),
}

/// Writes a tree with nested and empty directories, an executable, an
/// in-tree symlink, a long and a non-ASCII name, and a 1 MiB file.
pub fn sample_tree(root: &Path) {
    let files: &[(&str, &[u8])] = &[
        ("README.md", b"# sample\n"),
        ("src/main.rs", b"fn main() { println!(\"hi\"); }\n"),
        ("src/lib/util.rs", b"pub fn util() {}\n"),
        ("docs/ünïcødé.txt", "häßlich\n".as_bytes()),
        ("a/very/deeply/nested/directory/structure/with/a/name/longer/than/one/hundred/characters/in/total/file.txt", b"deep\n"),
    ];
    for (rel, content) in files {
        write(root, rel, content);
    }
    write(root, "scripts/build.sh", b"#!/bin/sh\necho build\n");
    set_mode(&root.join("scripts/build.sh"), 0o755);
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("main-link")).unwrap();
    std::os::unix::fs::symlink("../README.md", root.join("docs/readme-link")).unwrap();
    write(root, "data/blob.bin", &pseudo_random(1 << 20, 7));
}

/// Writes a file, creating parents.
pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Sets permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every entry below `root` (not following symlinks), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, Node::Symlink(target));
        } else if meta.is_dir() {
            out.insert(rel, Node::Dir);
            visit(root, &path, out);
        } else {
            let digest = Digest::of(&std::fs::read(&path).unwrap()).to_string();
            out.insert(
                rel,
                Node::File {
                    digest,
                    executable: meta.permissions().mode() & 0o111 != 0,
                },
            );
        }
    }
}

/// Lists every path below `dir` (for "nothing was written outside" checks).
pub fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Stores a bundle whose layer is `layer` (already compressed as
/// `media_type` says) in the layout at `dir` under `tag`, bypassing
/// ocistep's packer. Returns the manifest digest.
pub fn layout_with_layer(dir: &Path, tag: &str, layer: &[u8], media_type: &str) -> Digest {
    let layout = Layout::open_or_create(dir).unwrap();
    let layer_digest = Digest::of(layer);
    let docs = format::build(
        &layer_digest,
        layer.len() as u64,
        &layer_digest,
        Some(1_700_000_000),
        &BTreeMap::new(),
    );
    let mut manifest: serde_json::Value = serde_json::from_slice(&docs.manifest).unwrap();
    manifest["layers"][0]["mediaType"] = serde_json::Value::String(media_type.to_string());
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&bytes);
    layout.put_blob_bytes(&layer_digest, layer).unwrap();
    layout
        .put_blob_bytes(&docs.config_desc.parsed_digest().unwrap(), &docs.config)
        .unwrap();
    layout.put_blob_bytes(&digest, &bytes).unwrap();
    layout
        .set_tag(
            tag,
            Descriptor::new(OCI_MANIFEST, &digest, bytes.len() as u64),
        )
        .unwrap();
    digest
}

/// gzip-compresses bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A tar archive with raw entries: (name, type flag, link name, content).
/// Names are written into the header bytes directly, so `..` and absolute
/// paths come through as an attacker would write them.
pub fn raw_tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, content) in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
        h.set_size(content.len() as u64);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}
