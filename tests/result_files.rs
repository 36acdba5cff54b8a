//! A result file's path decides how the value gets there: a regular file
//! (or nothing yet) is replaced atomically, while a character device, a
//! FIFO or a symlink already at the path is written through and stays what
//! it was. Pipelines pass `/dev/null` for a result they do not want and
//! `/dev/stdout` for one they print; replacing those would break the
//! machine's `/dev` for every later step.
//!
//! The device node is made with `mknod`, which needs root, as the test
//! suite has (CI runs it as root); it is made in a temporary directory, so
//! the machine's own `/dev/null` is never at stake.

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use support::tree::sample_tree;
use support::{require_tool, Run};

/// The device numbers of `/dev/null` (major 1, minor 3), as `rdev` holds them.
const NULL_RDEV: u64 = (1 << 8) | 3;

/// Makes a node with `program ARGS` (mknod, mkfifo), failing the test
/// loudly when it cannot.
fn make_node(program: &str, args: &[&std::ffi::OsStr]) {
    require_tool(program);
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} failed (the device node needs root, as CI runs the tests): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn devices_fifos_and_symlinks_are_written_through_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    sample_tree(&src);

    let null = dir.join("null");
    make_node(
        "mknod",
        &[null.as_os_str(), "c".as_ref(), "1".as_ref(), "3".as_ref()],
    );
    let fifo = dir.join("fifo");
    make_node("mkfifo", &[fifo.as_os_str()]);
    let target = dir.join("target.txt");
    std::fs::write(
        &target,
        "old value, longer than a digest's sixty-four hex digits and its prefix",
    )
    .unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let plain = dir.join("plain");
    std::fs::write(&plain, "old").unwrap();

    // The reader a pipeline would have on the FIFO; it gives up after a
    // while so that a run that never writes there fails the test.
    let reader = Command::new("timeout")
        .arg("30")
        .arg("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    Run::push_bundle(&src)
        .image(format!("oci:{}:v1", dir.join("layout").display()))
        .arg("--result-file-image-digest")
        .arg(&null)
        .arg("--result-file-image-ref")
        .arg(&fifo)
        .arg("--result-file-image-size")
        .arg(&link)
        .arg("--dotenv-file")
        .arg(&plain)
        .assert()
        .success();

    let read = reader.wait_with_output().unwrap();
    assert!(read.status.success(), "nothing was written to the FIFO");
    let reference = String::from_utf8(read.stdout).unwrap();
    assert!(reference.contains("@sha256:"), "{reference:?}");

    let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert!(
        kind(&null).file_type().is_char_device(),
        "the device was replaced"
    );
    assert_eq!(kind(&null).rdev(), NULL_RDEV);
    assert!(kind(&fifo).file_type().is_fifo(), "the FIFO was replaced");
    assert!(
        kind(&link).file_type().is_symlink(),
        "the symlink was replaced"
    );
    let size = std::fs::read_to_string(&target).unwrap();
    assert!(
        size.parse::<u64>().is_ok_and(|n| n > 0),
        "the symlink's target holds {size:?}, not the size alone"
    );
    let dotenv = std::fs::read_to_string(&plain).unwrap();
    assert!(
        dotenv.contains(&format!("OCISTEP_SIZE={size}\n")),
        "{dotenv}"
    );
    assert!(
        dotenv.contains(&format!("OCISTEP_IMAGE_URL={reference}\n")),
        "{dotenv}"
    );
}

#[test]
fn a_directory_at_the_result_path_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let taken = tmp.path().join("digest");
    std::fs::create_dir(&taken).unwrap();
    let (code, stderr) = Run::push_bundle(&src)
        .image(format!("oci:{}:v1", tmp.path().join("layout").display()))
        .arg("--result-file-image-digest")
        .arg(&taken)
        .code_and_stderr();
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&*taken.to_string_lossy()), "{stderr}");
    assert!(stderr.to_lowercase().contains("directory"), "{stderr}");
    assert!(taken.is_dir());
}
