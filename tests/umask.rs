//! Layouts and caches are written with the modes the umask allows (files
//! 0666 & !umask, directories 0777 & !umask), so another user (the next
//! step's non-root user, skopeo run as nobody) can read them under umask
//! 022, and umask 077 keeps them private.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::tree::{all_paths, sample_tree, write};
use support::{require_tool, Registry, Run};

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Writes a layout (a bundle and an artifact) and fills a cache (a pull
/// from the registry, then a push that records its packed layer), all
/// under `umask`. Returns the layout and the cache.
fn write_all_under(umask: u32, image: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let layout = dir.join("layout");
    let cache = dir.join("cache");
    let src = dir.join("src");
    sample_tree(&src);
    write(dir, "notes.txt", b"notes\n");
    let layout_ref = |tag: &str| format!("oci:{}:{tag}", layout.display());
    Run::pull_bundle(dir.join("work"))
        .image(image)
        .cache_dir(&cache)
        .umask(umask)
        .assert()
        .success();
    Run::push_bundle(&src)
        .image(layout_ref("v1"))
        .cache_dir(&cache)
        .umask(umask)
        .assert()
        .success();
    Run::push_artifact()
        .args(["--artifact-type", "application/vnd.example.notes", "--file"])
        .arg(dir.join("notes.txt"))
        .image(layout_ref("notes"))
        .umask(umask)
        .assert()
        .success();
    assert!(
        cache.join("ocistep-packed").is_dir(),
        "the push recorded its layer"
    );
    (layout, cache)
}

/// Every path under `root` (itself included) whose mode is not what
/// `umask` allows, with its mode.
fn wrong_modes(root: &Path, umask: u32) -> Vec<String> {
    let mut paths = all_paths(root);
    paths.push(root.to_path_buf());
    paths
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let base = if meta.is_dir() { 0o777 } else { 0o666 };
            let mode = meta.permissions().mode() & 0o7777;
            (mode != base & !umask).then(|| format!("{} {mode:o}", p.display()))
        })
        .collect()
}

fn pushed_bundle(reg: &Registry, dir: &Path) -> String {
    let src = dir.join("pushed");
    sample_tree(&src);
    let image = format!("{}/app:v1", reg.host());
    Run::push_bundle(&src).image(&image).assert().success();
    image
}

/// A directory others may enter (tempdirs are 0700).
fn open_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// `program args` run as nobody (uid and gid 65534, no groups).
fn as_nobody(program: &Path, args: &[&str]) -> std::process::Output {
    Command::new(require_tool("setpriv"))
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .output()
        .expect("run setpriv")
}

#[test]
fn umask_022_lets_other_users_read_layouts_and_caches() {
    let skopeo = require_tool("skopeo");
    let reg = Registry::start();
    let tmp = open_tempdir();
    let image = pushed_bundle(&reg, tmp.path());
    let (layout, cache) = write_all_under(0o022, &image, tmp.path());

    assert_eq!(wrong_modes(&layout, 0o022), Vec::<String>::new(), "layout");
    assert_eq!(wrong_modes(&cache, 0o022), Vec::<String>::new(), "cache");

    // skopeo reads the bundle's manifest and config, and the artifact's
    // manifest (it inspects only images in full).
    for (tag, how) in [("v1", None), ("notes", Some("--raw"))] {
        let reference = format!("oci:{}:{tag}", layout.display());
        let args: Vec<&str> = ["inspect"]
            .into_iter()
            .chain(how)
            .chain([&*reference])
            .collect();
        let out = as_nobody(&skopeo, &args);
        assert!(
            out.status.success(),
            "skopeo inspect {reference} as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cat = require_tool("cat");
    let files = all_paths(&layout).into_iter().chain(all_paths(&cache));
    for file in files.filter(|p| p.is_file()) {
        let out = as_nobody(&cat, &[file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "cat {} as nobody: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn umask_077_keeps_layouts_and_caches_private() {
    let reg = Registry::start();
    let tmp = open_tempdir();
    let image = pushed_bundle(&reg, tmp.path());
    let (layout, cache) = write_all_under(0o077, &image, tmp.path());
    assert_eq!(wrong_modes(&layout, 0o077), Vec::<String>::new(), "layout");
    assert_eq!(wrong_modes(&cache, 0o077), Vec::<String>::new(), "cache");
}
