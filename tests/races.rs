//! Another process that can write the tree (a sidecar, a leftover build
//! step) swaps files and directories for symlinks while ocistep runs. A push
//! must never publish what such a symlink points to, and a pull must never
//! write where it points; each race runs for many rounds, bounded in time.

mod support;

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::tree::write;
use support::Run;

/// What the outside file holds: as long as the file it takes the place of,
/// so only the identity check can tell them apart.
const SECRET: &[u8] = b"SECRET-TOKEN-THAT-STAYS-OUTSIDE!";

/// Rounds after which a race stops once it was seen to be lost by the
/// swapper at least once; it also stops at its time limit.
const ROUNDS: usize = 60;
const TIME_LIMIT: Duration = Duration::from_secs(40);

/// A thread that runs `swap` over and over until dropped.
struct Swapper {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Swapper {
    fn start(mut swap: impl FnMut() + Send + 'static) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut swaps = 0;
            while !stopping.load(Ordering::Relaxed) {
                swap();
                swaps += 1;
            }
            swaps
        });
        Swapper {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns how many swaps it made.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The uncompressed tar of the only layer tagged `tag` in the layout.
fn layer_tar(layout: &Path, tag: &str) -> Vec<u8> {
    let read_json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &str| layout.join("blobs").join(digest.replacen(':', "/", 1));
    let index = read_json(layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {index}"));
    let manifest = read_json(blob(manifest["digest"].as_str().unwrap()));
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(layer).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Swaps `target` for `make(temp)` through a rename, so it is never
/// missing.
fn replace_with(target: &Path, temp: &Path, make: impl FnOnce(&Path)) {
    let _ = std::fs::remove_file(temp);
    make(temp);
    std::fs::rename(temp, target).unwrap();
}

#[test]
fn a_push_never_publishes_the_file_a_swapped_in_symlink_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let plain = vec![b'a'; SECRET.len()];
    for i in 0..20 {
        write(&root, &format!("other/{i}.txt"), b"filler");
    }
    write(&root, "sub/f", &plain);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let layout = dir.path().join("layout");

    let (f, link_temp, file_temp) = (root.join("sub/f"), scratch.join("l"), scratch.join("r"));
    let swapper = Swapper::start(move || {
        replace_with(&f, &link_temp, |t| symlink(&secret, t).unwrap());
        replace_with(&f, &file_temp, |t| std::fs::write(t, &plain).unwrap());
    });
    let (started, mut rounds, mut pushed, mut caught) = (Instant::now(), 0, 0, 0);
    while (rounds < ROUNDS || caught == 0) && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        let tag = format!("r{rounds}");
        let out = Run::push_bundle(&root)
            .image(format!("oci:{}:{tag}", layout.display()))
            .output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                pushed += 1;
                let tar = layer_tar(&layout, &tag);
                assert!(
                    !contains(&tar, SECRET),
                    "round {rounds}: the bundle holds the outside file's content"
                );
            }
            // The walk met the symlink (it points outside the tree), or
            // packing met what replaced the file the walk saw.
            Some(9)
                if stderr.contains("points outside the source directory")
                    || stderr.contains("changed while the tree was walked") => {}
            Some(9) if stderr.contains("file sub/f was replaced while packing") => caught += 1,
            other => panic!("round {rounds}: exit {other:?}: {stderr}"),
        }
    }
    let swaps = swapper.finish();
    assert!(
        caught > 0,
        "no push met a swapped file in {rounds} rounds ({swaps} swaps, {pushed} pushed): the race \
         was never run"
    );
}

#[test]
fn a_pull_never_writes_through_a_directory_swapped_for_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..1500 {
        write(
            &src,
            &format!("d/{i:04}.txt"),
            format!("file {i}\n").as_bytes(),
        );
    }
    let layout = dir.path().join("layout");
    let image = format!("oci:{}:v1", layout.display());
    Run::push_bundle(&src).image(&image).assert().success();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = dir.path().join("target");
    let moved = dir.path().join("moved");

    let (watched, link_to) = (target.clone(), outside.clone());
    let moved_to = moved.clone();
    let swapper = Swapper::start(move || {
        // Once the pull's staging directory has `d`, put a symlink to the
        // outside directory in its place.
        let Ok(listing) = std::fs::read_dir(&watched) else {
            return;
        };
        for entry in listing.flatten() {
            let d = entry.path().join("d");
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".ocistep-staging-")
                && std::fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir())
                && std::fs::rename(&d, &moved_to).is_ok()
            {
                let _ = symlink(&link_to, &d);
                let _ = std::fs::remove_dir_all(&moved_to);
            }
        }
    });
    let (started, mut rounds, mut pulled, mut caught) = (Instant::now(), 0, 0, 0);
    while (rounds < ROUNDS / 3 || caught == 0) && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        let _ = std::fs::remove_dir_all(&target);
        let out = Run::pull_bundle(&target).image(&image).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let written: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
        assert!(
            written.is_empty(),
            "round {rounds}: the pull wrote {} entries outside its target",
            written.len()
        );
        match out.status.code() {
            Some(0) => pulled += 1,
            Some(6) if stderr.contains("while the pull wrote to it") => caught += 1,
            other => panic!("round {rounds}: exit {other:?}: {stderr}"),
        }
    }
    let swaps = swapper.finish();
    assert!(
        caught > 0,
        "no pull met a swapped directory in {rounds} rounds ({swaps} swaps, {pulled} pulled): \
         the race was never run"
    );
}
