//! The same tree gives the same digests whatever the mtimes, permissions
//! beyond the exec bit, creation order or umask on disk.

mod support;

use std::path::Path;

use support::tree::{pseudo_random, set_mode, write};
use support::Run;

fn build_tree(root: &Path, reverse: bool, mode: u32) {
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("dir{}/sub{}/file{i}.txt", i % 4, i % 3),
                pseudo_random(1000 + i * 37, i as u64),
            )
        })
        .collect();
    files.push(("run.sh".into(), b"#!/bin/sh\n".to_vec()));
    if reverse {
        files.reverse();
    }
    for (rel, content) in &files {
        write(root, rel, content);
        set_mode(&root.join(rel), mode);
    }
    set_mode(&root.join("run.sh"), 0o755);
    std::fs::create_dir_all(root.join("zz-empty")).unwrap();
    std::os::unix::fs::symlink("run.sh", root.join("link")).unwrap();
}

#[test]
fn digest_ignores_mtimes_order_and_permission_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build_tree(&a, false, 0o644);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_tree(&b, true, 0o600);
    let first = Run::push_bundle(&a)
        .image(format!("oci:{}:t", tmp.path().join("la").display()))
        .digest();
    let second = Run::push_bundle(&b)
        .image(format!("oci:{}:t", tmp.path().join("lb").display()))
        .digest();
    assert_eq!(first, second);

    // Touch every file: still the same.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for i in 0..40 {
        let p = a.join(format!("dir{}/sub{}/file{i}.txt", i % 4, i % 3));
        std::fs::File::options()
            .append(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    assert_eq!(
        Run::push_bundle(&a)
            .image(format!("oci:{}:t", tmp.path().join("lc").display()))
            .digest(),
        first
    );

    // What does matter: content, the exec bit, the timestamp flag, the level.
    set_mode(&a.join("dir0/sub0/file0.txt"), 0o755);
    assert_ne!(
        Run::push_bundle(&a)
            .image(format!("oci:{}:t", tmp.path().join("ld").display()))
            .digest(),
        first
    );
    assert_ne!(
        Run::push_bundle(&b)
            .image(format!("oci:{}:t", tmp.path().join("le").display()))
            .args(["--source-timestamp", "1"])
            .digest(),
        first
    );
    assert_ne!(
        Run::push_bundle(&b)
            .image(format!("oci:{}:t", tmp.path().join("lf").display()))
            .args(["--compression-level", "1"])
            .digest(),
        first
    );
}
