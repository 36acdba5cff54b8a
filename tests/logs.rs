//! What a run tells its log: off a terminal, a progress line at most every
//! `OCISTEP_PROGRESS_EVERY` seconds (10 by default) while a push packs and
//! a pull downloads; with `--log-format json`, the run's outcome and the
//! progress as fields of their lines; text lines carry the message only.

mod support;

use serde_json::Value;
use support::{Registry, Run};

/// A tree of `mib` MiB that does not compress, so packing it takes a while.
fn incompressible_tree(dir: &std::path::Path, mib: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for file in 0..mib {
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(dir.join(format!("blob{file}")), bytes).unwrap();
    }
}

/// The JSON lines of `stderr`.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The progress lines labelled `label`, as (bytes, total bytes).
fn progress(lines: &[Value], label: &str) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter(|l| l["progress"] == label)
        .map(|l| {
            (
                l["bytes"].as_u64().unwrap(),
                l["total_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn json_lines_carry_the_outcome_and_the_progress_as_fields() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    incompressible_tree(&tree, 12);
    let image = format!("{}/logs/app:v1", reg.host());

    let result = |name: &str| tmp.path().join(name);
    let out = Run::push_bundle(&tree)
        .image(&image)
        .args(["--log-format", "json"])
        .arg("--result-file-image-digest")
        .arg(result("digest"))
        .arg("--result-file-image-size")
        .arg(result("size"))
        .arg("--result-file-image-ref")
        .arg(result("ref"))
        .env("OCISTEP_PROGRESS_EVERY", "0.02")
        .output_ok();
    let read = |name: &str| std::fs::read_to_string(result(name)).unwrap();
    let digest = read("digest");
    let lines = json_lines(&out.stderr);
    let done: Vec<&Value> = lines
        .iter()
        .filter(|l| l["mode"] == "push-source-bundle")
        .collect();
    assert_eq!(done.len(), 1, "{lines:#?}");
    assert_eq!(done[0]["digest"], digest.as_str());
    assert_eq!(done[0]["reference"], read("ref").as_str());
    assert_eq!(done[0]["bytes"].to_string(), read("size"));
    assert!(done[0]["duration_ms"].as_u64().is_some(), "{:?}", done[0]);

    // Packing 12 MiB told its progress, in order, within the total.
    let packing = progress(&lines, "packing");
    assert!(packing.len() >= 2, "{lines:#?}");
    assert!(packing.windows(2).all(|w| w[0].0 <= w[1].0), "{packing:?}");
    assert!(packing
        .iter()
        .all(|&(done, total)| done <= total && total > 12 << 20));

    let target = tmp.path().join("out");
    let out = Run::pull_bundle(&target)
        .image(&image)
        .args(["--log-format", "json", "--platform", "linux/arm64"])
        .env("OCISTEP_PROGRESS_EVERY", "0")
        .output_ok();
    let lines = json_lines(&out.stderr);
    let pulled = lines
        .iter()
        .find(|l| l["mode"] == "pull-source-bundle")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(pulled["digest"], digest.as_str());
    assert_eq!(pulled["platform"], "linux/arm64");
    let downloading = progress(&lines, "downloading");
    assert!(!downloading.is_empty(), "{lines:#?}");
}

#[test]
fn text_lines_show_progress_off_a_terminal_and_nothing_with_quiet() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    incompressible_tree(&tree, 8);
    let image = format!("{}/logs/text:v1", reg.host());
    let out = Run::push_bundle(&tree)
        .image(&image)
        .env("OCISTEP_PROGRESS_EVERY", "0.02")
        .output_ok();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let packing: Vec<&str> = stderr.lines().filter(|l| l.contains("packing: ")).collect();
    assert!(!packing.is_empty(), "{stderr}");
    assert!(packing[0].contains(" of 8.0 MiB ("), "{stderr}");
    // The outcome's fields are for JSON: the text line is the message.
    let pushed = stderr.lines().find(|l| l.contains("pushed ")).unwrap();
    assert!(
        !pushed.contains("duration_ms") && !pushed.contains("mode="),
        "{pushed}"
    );

    let quiet = Run::push_bundle(&tree)
        .image(format!("{}/logs/quiet:v1", reg.host()))
        .arg("-q")
        .env("OCISTEP_PROGRESS_EVERY", "0")
        .output_ok();
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}
