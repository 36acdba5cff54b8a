//! Every registry-facing mode (bundles, artifacts, images, assemble-index,
//! copy) under a seeded fault schedule that fails about a third of all
//! requests (429 with `Retry-After`, 500/502/503, resets
//! before and in the middle of bodies, truncated bodies, stalls past the
//! read timeout): push, pull, assemble-index and copy still give exactly
//! what a fault-free run gives. Under schedules that never recover they
//! fail with exit code 8 within a bounded time and write no tag and no
//! partial target.

mod support;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use support::faults::{Fault, FaultProxy, Rule, Seeded};
use support::images::{
    platform_layout, push_platform_image, PushFormat, PushedImage, TestPlatform,
};
use support::tree::{all_paths, pseudo_random, sample_tree, snapshot, write};
use support::{http_request_with, Registry, Run};

/// The seeds every scenario runs with.
const SEEDS: [u64; 4] = [7, 8, 9, 10];
/// `--timeout` for runs through the proxy, in seconds.
const TIMEOUT_SECS: u64 = 2;
/// The stall the seeded schedule injects: past [`TIMEOUT_SECS`].
const STALL_MILLIS: u64 = 2_500;
/// The exit code for a registry that cannot be reached or keeps failing.
const EXIT_UNREACHABLE: i32 = 8;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Flags for every run through a faulty proxy.
fn flaky_flags() -> Vec<String> {
    vec![
        "--timeout".into(),
        TIMEOUT_SECS.to_string(),
        "--retries".into(),
        "6".into(),
    ]
}

/// What a seeded proxy did across a scenario's runs.
#[derive(Default)]
struct Tally {
    faulted: usize,
    total: usize,
    kinds: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, proxy: &FaultProxy) {
        let (faulted, total) = proxy.faulted();
        self.faulted += faulted;
        self.total += total;
        self.kinds
            .extend(proxy.hits().into_iter().filter_map(|(_, _, fault)| fault));
    }

    /// Asserts the schedule really failed about a third of the requests,
    /// with a mix of faults, and prints the figures for the README.
    fn assert_about_a_third(&self, scenario: &str) {
        let share = self.faulted as f64 / self.total as f64;
        eprintln!(
            "{scenario}: {} of {} requests faulted ({:.0}%), kinds: {:?}",
            self.faulted,
            self.total,
            share * 100.0,
            self.kinds
        );
        assert!(
            (0.2..=0.45).contains(&share),
            "{scenario}: {} of {} requests faulted",
            self.faulted,
            self.total
        );
        assert!(
            self.kinds.len() >= 4,
            "{scenario}: only {:?} injected",
            self.kinds
        );
    }
}

/// Status of `HEAD /v2/REPO/manifests/TAG` straight at the registry.
fn tag_status(reg: &Registry, repo: &str, tag: &str) -> u16 {
    http_request_with(
        "HEAD",
        &reg.host(),
        &format!("/v2/{repo}/manifests/{tag}"),
        None,
        &[("Accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
    )
    .unwrap()
    .status
}

#[test]
fn push_and_pull_survive_a_third_of_requests_failing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let push_args = |image: String| -> Vec<String> {
        let mut args = vec![
            "--push-source-bundle".to_string(),
            src.display().to_string(),
            "--image".into(),
            image,
            "--source-timestamp".into(),
            "1700000000".into(),
        ];
        args.extend(flaky_flags());
        args
    };
    let clean = Run::with(push_args(format!("{}/app:clean", reg.host()))).digest();

    let mut tally = Tally::default();
    for seed in SEEDS {
        let proxy = FaultProxy::seeded(&reg.host(), Seeded::third(seed, STALL_MILLIS));
        // A repository of its own, so every blob is uploaded again.
        let image = format!("{}/app-{seed}:v1", proxy.host());
        let pushed = Run::with(push_args(image.clone())).digest();
        assert_eq!(
            pushed, clean,
            "seed {seed}: the same bundle as without faults"
        );

        let work = tmp.path().join(format!("work-{seed}"));
        Run::pull_bundle(&work)
            .image(&image)
            .args(flaky_flags())
            .assert()
            .success();
        assert_eq!(snapshot(&work), snapshot(&src), "seed {seed}");
        tally.add(&proxy);
    }
    tally.assert_about_a_third("push + pull");
}

#[test]
fn artifacts_and_images_survive_a_third_of_requests_failing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    write(&files, "module.wasm", &pseudo_random(200_000, 3));
    write(&files, "static/index.html", b"<h1>hi</h1>\n");
    let push_artifact = |image: String| -> Vec<String> {
        let mut args = vec![
            "--push-artifact".to_string(),
            "--image".into(),
            image,
            "--artifact-type".into(),
            "application/vnd.example.app.v1".into(),
            "--file".into(),
            format!("{}:application/wasm", files.join("module.wasm").display()),
            "--file".into(),
            files.join("static").display().to_string(),
        ];
        args.extend(flaky_flags());
        args
    };
    let layout = tmp.path().join("layout");
    platform_layout(&layout, "v1", &TestPlatform::parse("linux/amd64"));
    let push_image = |image: String| -> Vec<String> {
        let mut args = vec![
            "--push-image".to_string(),
            layout.display().to_string(),
            "--image".into(),
            image,
        ];
        args.extend(flaky_flags());
        args
    };
    let clean_artifact = Run::with(push_artifact(format!("{}/art:clean", reg.host()))).digest();
    let clean_image = Run::with(push_image(format!("{}/img:clean", reg.host()))).digest();

    let mut tally = Tally::default();
    for seed in SEEDS {
        let proxy = FaultProxy::seeded(&reg.host(), Seeded::third(seed, STALL_MILLIS));
        let artifact = format!("{}/art-{seed}:v1", proxy.host());
        assert_eq!(
            Run::with(push_artifact(artifact.clone())).digest(),
            clean_artifact,
            "seed {seed}: artifact"
        );
        let pulled = tmp.path().join(format!("pulled-{seed}"));
        Run::pull_artifact(&pulled)
            .image(&artifact)
            .args(flaky_flags())
            .assert()
            .success();
        assert_eq!(snapshot(&pulled), snapshot(&files), "seed {seed}");
        assert_eq!(
            Run::with(push_image(format!("{}/img-{seed}:v1", proxy.host()))).digest(),
            clean_image,
            "seed {seed}: image"
        );
        tally.add(&proxy);
    }
    tally.assert_about_a_third("push-artifact + pull-artifact + push-image");
}

/// An OCI linux/amd64 and linux/arm64/v8 image, each in its own repository.
fn two_platforms(host: &str) -> [PushedImage; 2] {
    ["linux/amd64", "linux/arm64/v8"].map(|p| {
        let platform = TestPlatform::parse(p);
        let repo = format!("builds/{}", platform.slug());
        push_platform_image(host, &repo, "v1", &platform, PushFormat::Oci)
    })
}

/// `--assemble-index` arguments for `images`, read through `host`.
fn assemble_args(target: String, images: &[PushedImage], host: &str) -> Vec<String> {
    let mut args = vec!["--assemble-index".to_string(), "--image".into(), target];
    for image in images {
        args.push("--platform-image".into());
        args.push(image.reference.replacen(&registry_part(image), host, 1));
    }
    args
}

/// `HOST:PORT` of a pushed image's reference.
fn registry_part(image: &PushedImage) -> String {
    image.name.split('/').next().unwrap().to_string()
}

#[test]
fn assemble_index_and_copy_survive_a_third_of_requests_failing() {
    let reg = Registry::start();
    let images = two_platforms(&reg.host());
    let clean = Run::with(assemble_args(
        format!("{}/multi/app:clean", reg.host()),
        &images,
        &reg.host(),
    ))
    .digest();
    let flaky = |mut args: Vec<String>| {
        args.extend(flaky_flags());
        args
    };

    let mut tally = Tally::default();
    for seed in SEEDS {
        let proxy = FaultProxy::seeded(&reg.host(), Seeded::third(seed, STALL_MILLIS));
        // Into another repository: every blob is mounted (or copied).
        let index = format!("{}/multi/app:s{seed}", proxy.host());
        let assembled =
            Run::with(flaky(assemble_args(index.clone(), &images, &proxy.host()))).digest();
        assert_eq!(
            assembled, clean,
            "seed {seed}: the same index as without faults"
        );

        // And the whole index on to a third repository.
        let copy = vec![
            "--copy".to_string(),
            index,
            format!("{}/mirror/app:s{seed}", proxy.host()),
        ];
        assert_eq!(
            Run::with(flaky(copy)).digest(),
            clean,
            "seed {seed}: copied index"
        );
        for image in &images {
            let manifest = format!("/v2/mirror/app/manifests/{}", image.digest);
            let got = http_request_with(
                "GET",
                &reg.host(),
                &manifest,
                None,
                &[("Accept", OCI_MANIFEST)],
            )
            .unwrap();
            assert_eq!(got.status, 200, "seed {seed}: {manifest} copied");
            for blob in support::images::blobs_of(&got.body) {
                let path = format!("/v2/mirror/app/blobs/{blob}");
                let head = http_request_with("HEAD", &reg.host(), &path, None, &[]).unwrap();
                assert_eq!(head.status, 200, "seed {seed}: {path} copied");
            }
        }
        tally.add(&proxy);
    }
    tally.assert_about_a_third("assemble-index + copy");
}

/// Runs ocistep with `args` against a proxy that never recovers; asserts
/// exit code 8 with a message naming the registry, within `bound`.
fn assert_gives_up(args: &[String], bound: Duration) -> Output {
    let started = Instant::now();
    let out = Run::with(args).output();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(EXIT_UNREACHABLE),
        "{args:?}:\n{stderr}"
    );
    assert!(took < bound, "{args:?} took {took:?}");
    assert!(stderr.contains("registry"), "{stderr}");
    out
}

/// Schedules that never recover: every request answered 503, or stalled
/// far past the read timeout.
fn hopeless_schedules() -> Vec<(&'static str, Rule)> {
    vec![
        (
            "503",
            Rule::every(
                "/v2/",
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
            ),
        ),
        (
            "stall",
            Rule::every("/v2/", Fault::Stall { millis: 600_000 }),
        ),
    ]
}

#[test]
fn every_mode_against_a_registry_that_never_recovers() {
    let reg = Registry::start();
    let images = two_platforms(&reg.host());
    let tmp = tempfile::tempdir().unwrap();
    for (name, rule) in hopeless_schedules() {
        let proxy = FaultProxy::start(&reg.host(), vec![rule]);
        let hopeless = ["--timeout", "1", "--retries", "3"].map(String::from);

        // A bundle push: no tag; a bundle pull: the target unchanged.
        let src = tmp.path().join("src");
        if !src.exists() {
            sample_tree(&src);
        }
        let mut args = vec![
            "--push-source-bundle".to_string(),
            src.display().to_string(),
            "--image".into(),
            format!("{}/app:{name}", proxy.host()),
        ];
        args.extend(hopeless.clone());
        assert_gives_up(&args, Duration::from_secs(60));
        assert_eq!(tag_status(&reg, "app", name), 404, "{name}: no tag");
        let work = tmp.path().join(format!("work-{name}"));
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("keep"), "precious").unwrap();
        let before = snapshot(&work);
        let mut args = vec![
            "--pull-source-bundle".to_string(),
            work.display().to_string(),
            "--image".into(),
            format!("{}/builds/linux-amd64:v1", proxy.host()),
        ];
        args.extend(hopeless.clone());
        assert_gives_up(&args, Duration::from_secs(60));
        assert_eq!(snapshot(&work), before, "{name}: pull target unchanged");

        // Sources read straight from the registry, the target behind the proxy.
        let mut args = assemble_args(
            format!("{}/multi/app:{name}", proxy.host()),
            &images,
            &reg.host(),
        );
        args.extend(hopeless.clone());
        assert_gives_up(&args, Duration::from_secs(60));
        assert_eq!(tag_status(&reg, "multi/app", name), 404, "{name}: no tag");

        // Copy out of the failing registry into a layout: nothing written.
        let layout = tmp.path().join(format!("layout-{name}"));
        let mut args = vec![
            "--copy".to_string(),
            format!(
                "{}/{}",
                proxy.host(),
                images[0].reference.split_once('/').unwrap().1
            ),
            format!("oci:{}:v1", layout.display()),
        ];
        args.extend(hopeless.clone());
        assert_gives_up(&args, Duration::from_secs(60));
        assert!(
            !layout.exists() || all_paths(&layout).is_empty(),
            "{name}: {:?}",
            all_paths(&layout)
        );

        // Copy into the failing registry: no tag.
        let mut args = vec![
            "--copy".to_string(),
            images[0].reference.clone(),
            format!("{}/mirror/app:{name}", proxy.host()),
        ];
        args.extend(hopeless);
        assert_gives_up(&args, Duration::from_secs(60));
        assert_eq!(tag_status(&reg, "mirror/app", name), 404, "{name}: no tag");
    }
}
