//! What a server can make ocistep hold is bounded: a token service that
//! streams without end is cut off at 256 KiB (exit 11, fast, in little
//! memory), a 1 MiB token is refused before it is sent; a registry that
//! trickles a blob a byte at a time is a stall under `--min-rate`, retried
//! as one and given up after `--retries` with exit 8; so is a registry
//! that stops taking an upload's body, or stays silent for `--timeout`
//! after its last byte, while one that keeps taking it slowly may take
//! longer than `--timeout` for the whole upload; and
//! `--deadline` ends a run that would otherwise go on.

mod support;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use ocistep::oci::digest::Digest;
use support::fault_runs::tag_status;
use support::faults::{Fault, FaultProxy, Rule};
use support::tree::{sample_tree, snapshot};
use support::{http_request_with, Registry, RegistryOptions, Run, TokenPolicy, TokenReply};

const USER: &str = "bounds-user";
const PASSWORD: &str = "b0unds-pass";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The most memory a run may take while a token service floods it.
const MAX_RSS_KIB: u64 = 64 * 1024;

/// A token-auth registry whose token service answers as `reply` does.
fn token_registry(reply: TokenReply) -> Registry {
    Registry::start_with(RegistryOptions {
        token_policy: TokenPolicy {
            reply,
            ..TokenPolicy::default()
        },
        ..RegistryOptions::with_token_auth(USER, PASSWORD)
    })
}

/// A `config.json` with the credentials for `host`, in `dir`.
fn docker_config(dir: &Path, host: &str) {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// How a run ended, and its peak resident memory.
struct Measured {
    code: Option<i32>,
    stderr: String,
    took: Duration,
    peak_rss_kib: u64,
}

/// Runs ocistep with `args` (isolated like [`Run`]), reading
/// its peak RSS (`VmHWM`) from `/proc` until it exits; kills it after 60 s.
fn measured(args: &[&str], docker_config_dir: &Path) -> Measured {
    let mut child = Run::new()
        .args(args)
        .env("DOCKER_CONFIG", docker_config_dir)
        .spawn();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        peak_rss_kib = peak_rss_kib.max(hwm.unwrap_or(0));
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ocistep still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Measured {
        code: status.code(),
        stderr: reader.join().unwrap(),
        took: started.elapsed(),
        peak_rss_kib,
    }
}

/// Pulls `registry_host`/app:v1 with the credentials in `config_dir`
/// while its token service floods the reply; checks that the run ended with
/// exit 11 naming the limit, in little memory, leaving no directory.
fn pull_is_cut_off(registry_host: &str, config_dir: &Path) -> Measured {
    docker_config(config_dir, registry_host);
    let work = config_dir.join("work");
    let image = format!("{registry_host}/app:v1");
    let run = measured(
        &[
            "--pull-source-bundle",
            work.to_str().unwrap(),
            "--image",
            &image,
        ],
        config_dir,
    );
    eprintln!("peak RSS {} KiB in {:?}", run.peak_rss_kib, run.took);
    assert_eq!(run.code, Some(11), "{}", run.stderr);
    assert!(
        run.stderr.contains("token service") && run.stderr.contains("larger than 256 KiB"),
        "the error should name the token service and the limit: {}",
        run.stderr
    );
    assert!(
        run.peak_rss_kib > 0 && run.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        run.peak_rss_kib
    );
    assert!(!work.exists());
    run
}

#[test]
fn an_endless_token_reply_is_cut_off_fast_in_little_memory() {
    let reg = token_registry(TokenReply::Endless);
    let tmp = tempfile::tempdir().unwrap();
    let run = pull_is_cut_off(&reg.host(), tmp.path());
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

/// A registry whose refusals name no challenge sends ocistep to `GET /v2/`
/// for one; the token service found there is bounded all the same.
#[test]
fn a_token_service_named_only_by_the_version_check_is_bounded_too() {
    let reg = token_registry(TokenReply::Endless);
    // Manifest requests get a bare 401; `/v2/` passes through, with the
    // registry's challenge naming the flooding token service.
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Rule::every(
            "/manifests/",
            Fault::Status {
                code: 401,
                retry_after: None,
            },
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    pull_is_cut_off(&proxy.host(), tmp.path());
    assert!(
        proxy
            .hits()
            .iter()
            .any(|(method, target, _)| method == "GET" && target == "/v2/"),
        "no version check: {:#?}",
        proxy.hits()
    );
}

#[test]
fn a_huge_token_is_refused_and_never_sent() {
    // 1 MiB does not fit the reply limit; 64 KiB does, but not the token's.
    for (bytes, says) in [
        (1 << 20, "sent a reply larger than 256 KiB"),
        (
            64 << 10,
            "sent a token of 65536 bytes, longer than the 16 KiB",
        ),
    ] {
        let reg = token_registry(TokenReply::TokenOfBytes(bytes));
        let proxy = FaultProxy::start(&reg.host(), vec![]);
        let tmp = tempfile::tempdir().unwrap();
        docker_config(tmp.path(), &proxy.host());
        let run = Run::pull_bundle(tmp.path().join("work"))
            .image(format!("{}/app:v1", proxy.host()))
            .env("DOCKER_CONFIG", tmp.path())
            .timeout(Duration::from_secs(60))
            .assert()
            .code(11);
        let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
        assert!(
            stderr.contains("the token service") && stderr.contains(says),
            "{bytes}: the error should name the token service and the limit: {stderr}"
        );
        // Only the request that got the challenge: the token never went out.
        assert_eq!(proxy.count("GET", "/manifests/"), 1, "{:#?}", proxy.hits());
    }
}

/// Pushes the sample tree as `app:v1`; returns the source directory and
/// the path of the layer's blob (`/blobs/sha256:…`).
fn pushed_sample(reg: &Registry, dir: &Path) -> (std::path::PathBuf, String) {
    let src = dir.join("src");
    sample_tree(&src);
    Run::push_bundle(&src)
        .image(format!("{}/app:v1", reg.host()))
        .assert()
        .success();
    let manifest = http_request_with(
        "GET",
        &reg.host(),
        "/v2/app/manifests/v1",
        None,
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    (src, format!("/blobs/{layer}"))
}

fn trickle() -> Fault {
    Fault::Trickle {
        millis_per_byte: 100,
    }
}

#[test]
fn a_trickled_download_is_retried_like_a_stall() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (src, blob) = pushed_sample(&reg, tmp.path());
    let proxy = FaultProxy::start(&reg.host(), vec![Rule::new("GET", &blob, &[1], trickle())]);

    let work = tmp.path().join("work");
    let started = Instant::now();
    Run::pull_bundle(&work)
        .image(format!("{}/app:v1", proxy.host()))
        .args(["--timeout", "1", "--retries", "3"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();

    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(snapshot(&src), snapshot(&work));
    let blob_gets: Vec<Option<String>> = proxy
        .hits()
        .into_iter()
        .filter(|(method, target, _)| method == "GET" && target.contains(&blob))
        .map(|(_, _, fault)| fault)
        .collect();
    assert_eq!(blob_gets, [Some("trickle".to_string()), None]);
}

/// A registry holding the sample bundle behind a proxy that trickles its
/// layer every time, and a pull target holding a file.
struct Trickling {
    proxy: FaultProxy,
    /// The layer's blob path.
    blob: String,
    work: std::path::PathBuf,
    /// The pull target before the pull.
    before: std::collections::BTreeMap<String, support::tree::Node>,
    _reg: Registry,
}

impl Trickling {
    fn start(dir: &Path) -> Trickling {
        let reg = Registry::start();
        let (_, blob) = pushed_sample(&reg, dir);
        let proxy = FaultProxy::start(&reg.host(), vec![Rule::every(&blob, trickle())]);
        let work = dir.join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("keep"), "precious").unwrap();
        let before = snapshot(&work);
        Trickling {
            proxy,
            blob,
            work,
            before,
            _reg: reg,
        }
    }

    /// Pulls with `extra`, which must end with exit 8 and leave the target
    /// as it was; returns stderr and how long the pull took.
    fn failed_pull(&self, extra: &[&str]) -> (String, Duration) {
        let started = Instant::now();
        let run = Run::pull_bundle(&self.work)
            .image(format!("{}/app:v1", self.proxy.host()))
            .args(extra)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(8);
        let took = started.elapsed();
        assert_eq!(snapshot(&self.work), self.before);
        let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
        (stderr, took)
    }

    /// How often the layer was asked for.
    fn blob_gets(&self) -> usize {
        self.proxy.count("GET", &self.blob)
    }
}

#[test]
fn a_download_trickled_every_time_ends_with_exit_8_naming_the_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let trickling = Trickling::start(tmp.path());

    let (stderr, took) = trickling.failed_pull(&["--timeout", "1", "--retries", "2"]);

    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        stderr.contains("below the minimum rate of 1024 bytes/s") && stderr.contains("--min-rate"),
        "the error should name the rate rule: {stderr}"
    );
    assert_eq!(trickling.blob_gets(), 2, "{:#?}", trickling.proxy.hits());
}

#[test]
fn the_deadline_ends_a_run_that_would_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let trickling = Trickling::start(tmp.path());

    // No rate minimum: only the deadline can end this trickle.
    let (stderr, took) =
        trickling.failed_pull(&["--min-rate", "0", "--timeout", "5", "--deadline", "3s"]);

    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert!(
        stderr.contains("did not finish within --deadline 3s"),
        "the error should name the deadline: {stderr}"
    );
    assert_eq!(trickling.blob_gets(), 1, "{:#?}", trickling.proxy.hits());
}

/// A registry behind a proxy that reads every upload's body at a fixed
/// pace, and a 20 MiB file to push to it as an artifact.
struct SlowUploads {
    reg: Registry,
    proxy: FaultProxy,
    file: std::path::PathBuf,
    /// The file's blob path (`/blobs/sha256:…`).
    blob: String,
    _tmp: tempfile::TempDir,
}

impl SlowUploads {
    /// A 20 MiB file, and a proxy that reads uploads at `bytes_per_sec`.
    fn start(bytes_per_sec: u64) -> SlowUploads {
        SlowUploads::behind(20 << 20, |_| {
            Rule::every("/blobs/uploads/", Fault::ReadBodySlowly { bytes_per_sec })
        })
    }

    /// A file of `size` bytes, and a proxy that injects the rule `rule`
    /// makes of the file's digest (its hex part).
    fn behind(size: u32, rule: impl FnOnce(&str) -> Rule) -> SlowUploads {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let digest = Digest::of(&bytes);
        let reg = Registry::start();
        let proxy = FaultProxy::start(&reg.host(), vec![rule(digest.hex())]);
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("large.bin");
        std::fs::write(&file, &bytes).unwrap();
        SlowUploads {
            reg,
            proxy,
            file,
            blob: format!("/blobs/{digest}"),
            _tmp: tmp,
        }
    }

    /// Pushes the file to `repo:v1` through the proxy with `extra`;
    /// returns the outcome and how long it took.
    fn push(&self, repo: &str, extra: &[&str]) -> (assert_cmd::assert::Assert, Duration) {
        let started = Instant::now();
        let run = Run::push_artifact()
            .image(format!("{}/{repo}:v1", self.proxy.host()))
            .args(["--artifact-type", "application/vnd.example.large", "--file"])
            .arg(&self.file)
            .args(extra)
            .timeout(Duration::from_secs(120))
            .assert();
        (run, started.elapsed())
    }
}

#[test]
fn an_upload_longer_than_the_timeout_goes_on_while_the_registry_takes_it() {
    // About 7 s for the upload at 3 MB/s, never 3 s without a byte taken.
    let slow = SlowUploads::start(3_000_000);

    let (run, took) = slow.push("slow/large", &["--timeout", "3", "--retries", "1"]);

    run.success();
    assert!(
        took > Duration::from_secs(3),
        "the upload took {took:?}, not longer than --timeout: the proxy did not slow it"
    );
    let hex = slow.blob.rsplit(':').next().unwrap();
    let puts = slow.proxy.count("PUT", hex);
    assert_eq!(
        puts,
        1,
        "one upload, never cut off: {:#?}",
        slow.proxy.hits()
    );
    let stored = http_request_with(
        "GET",
        &slow.reg.host(),
        &format!("/v2/slow/large{}", slow.blob),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(stored.body, std::fs::read(&slow.file).unwrap());
}

#[test]
fn an_upload_the_registry_stops_taking_is_a_stall_with_exit_8() {
    // 1 KB/s: once the connection's buffers are full, the next piece of
    // the body waits minutes.
    let slow = SlowUploads::start(1000);

    let (run, took) = slow.push("stuck/large", &["--timeout", "2", "--retries", "2"]);

    let run = run.code(8);
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        stderr.contains("stalled") && stderr.contains("--timeout"),
        "the error should say the upload stalled, and what to raise: {stderr}"
    );
    assert_eq!(
        tag_status(&slow.reg, "stuck/large", "v1"),
        404,
        "no tag after a failed push"
    );
}

#[test]
fn a_registry_silent_after_the_whole_body_is_a_stall_after_the_timeout() {
    // The PUT's body goes at once; the answer would come 3.5 s later.
    // With --timeout 2 that is a stall, counted from the body's last byte
    // even though the connection never asks past it.
    let silent = SlowUploads::behind(1 << 20, |hex| {
        Rule::new("PUT", hex, &[1, 2, 3], Fault::Stall { millis: 3_500 })
    });

    let (run, _) = silent.push("silent/large", &["--timeout", "2", "--retries", "1"]);

    let run = run.code(8);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        stderr.contains("stalled") && stderr.contains("nor answered for 2 s"),
        "the error should name the silence after the body: {stderr}"
    );
    assert_eq!(tag_status(&silent.reg, "silent/large", "v1"), 404);
}
