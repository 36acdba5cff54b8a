//! OCI 1.1 referrers against distribution 2.8 (no referrers API: the tag
//! schema) and registry personas in front of it: `--push-artifact
//! --subject`, `--discover`, concurrent attaches, `--copy --referrers`
//! with cosign's tags.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use ocistep::oci::digest::Digest;
use serde_json::Value;
use support::assembly::{stderr, writes_to};
use support::faults::FaultProxy;
use support::images::{four_bundle_index, inspect_raw, try_inspect_raw};
use support::tree::write;
use support::{Registry, Run};

const SPDX: &str = "application/spdx+json";
const SIG: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Pushes a one-file bundle to `host/app:v1` and returns its digest.
fn subject(host: &str, dir: &Path) -> String {
    write(&dir.join("src"), "main.c", b"int main() { return 0; }\n");
    Run::push_bundle(dir.join("src"))
        .image(format!("{host}/app:v1"))
        .digest()
}

/// Attaches a file holding `content` to `subject` as `artifact_type` and
/// returns the referrer's digest.
fn attach(subject: &str, artifact_type: &str, content: &str, dir: &Path) -> String {
    let file = dir.join(format!("{}.json", Digest::of(content.as_bytes()).hex()));
    std::fs::write(&file, content).unwrap();
    Run::attach(subject, artifact_type, &file).digest()
}

/// The tag schema's index for `digest` in `host/repo`, if the tag exists.
fn tag_schema(host: &str, repo: &str, digest: &str) -> Option<Value> {
    let tag = digest.replacen(':', "-", 1);
    let raw = try_inspect_raw(&format!("docker://{host}/{repo}:{tag}")).ok()?;
    Some(serde_json::from_slice(&raw).unwrap())
}

fn digests(index: &Value) -> BTreeSet<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `--discover` and returns the index it printed (checked to be what
/// `--result-file-referrers` holds).
fn discover(image: &str, extra: &[&str]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("referrers.json");
    let (stdout, _) = Run::discover(image)
        .args(extra)
        .arg("--result-file-referrers")
        .arg(&file)
        .printed_ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout.trim_end());
    let index: Value = serde_json::from_str(&stdout).expect("--discover prints JSON");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    index
}

#[test]
fn attach_writes_the_tag_schema_and_discover_lists_and_filters() {
    let reg = Registry::start();
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let s = subject(&host, tmp.path());
    let image = format!("{host}/app:v1");
    let sbom = attach(&image, SPDX, r#"{"spdxVersion":"SPDX-2.3"}"#, tmp.path());
    let sig = attach(&image, SIG, r#"{"sig":1}"#, tmp.path());

    // The referrer names the subject, and lives in the subject's repository.
    let manifest: Value =
        serde_json::from_slice(&inspect_raw(&format!("docker://{host}/app@{sbom}"))).unwrap();
    assert_eq!(manifest["subject"]["digest"], s);
    assert_eq!(manifest["artifactType"], SPDX);
    // The tag schema lists both, with their artifact types.
    let listed = tag_schema(&host, "app", &s).expect("the tag schema was written");
    assert_eq!(
        digests(&listed),
        BTreeSet::from([sbom.clone(), sig.clone()])
    );
    let types: BTreeSet<&str> = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from([SPDX, SIG]));
    // The subject's tag still names the subject.
    assert_eq!(
        Digest::of(&inspect_raw(&format!("docker://{image}"))).to_string(),
        s
    );

    assert_eq!(
        digests(&discover(&image, &[])),
        BTreeSet::from([sbom.clone(), sig])
    );
    assert_eq!(
        digests(&discover(&image, &["--artifact-type", SPDX])),
        BTreeSet::from([sbom])
    );
    // An image without referrers has none.
    let index = four_bundle_index(&reg, &tmp.path().join("bundles"));
    assert!(digests(&discover(&index, &[])).is_empty());
}

#[test]
fn a_subject_that_does_not_exist_is_not_found_and_nothing_is_pushed() {
    let reg = Registry::start();
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sbom.json"), "{}").unwrap();
    let (code, err) = Run::attach(
        &format!("{host}/app:missing"),
        SPDX,
        &tmp.path().join("sbom.json"),
    )
    .code_and_stderr();
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("--subject") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        writes_to(&reg, "app").is_empty(),
        "{:#?}",
        writes_to(&reg, "app")
    );
}

#[test]
fn concurrent_attaches_all_land_in_the_tag_schema() {
    let reg = Registry::start();
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let s = subject(&host, tmp.path());
    let image = format!("{host}/app:v1");
    let runs: Vec<(std::process::Child, std::path::PathBuf)> = (0..6)
        .map(|i| {
            let file = tmp.path().join(format!("sbom-{i}.json"));
            std::fs::write(&file, format!(r#"{{"n":{i}}}"#)).unwrap();
            let digest = tmp.path().join(format!("digest-{i}"));
            let mut run = Run::attach(&image, SPDX, &file);
            run.digest_to(&digest);
            (run.spawn(), digest)
        })
        .collect();
    let mut attached = BTreeSet::new();
    for (child, digest) in runs {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        attached.insert(std::fs::read_to_string(digest).unwrap());
    }
    assert_eq!(attached.len(), 6);
    let listed = tag_schema(&host, "app", &s).unwrap();
    assert_eq!(digests(&listed), attached);
    assert_eq!(listed["manifests"].as_array().unwrap().len(), 6);
}

#[test]
fn copy_referrers_moves_referrers_their_referrers_and_cosign_tags() {
    let (reg, mirror) = (Registry::start(), Registry::start());
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let s = subject(&host, tmp.path());
    let image = format!("{host}/app:v1");
    let sbom = attach(&image, SPDX, r#"{"spdxVersion":"SPDX-2.3"}"#, tmp.path());
    // A signature of the SBOM: a referrer of a referrer.
    let sbom_sig = attach(
        &format!("{host}/app@{sbom}"),
        SIG,
        r#"{"of":"sbom"}"#,
        tmp.path(),
    );
    // cosign's tag convention.
    let cosign_tag = format!("{}.sig", s.replacen(':', "-", 1));
    std::fs::write(tmp.path().join("cosign.json"), r#"{"cosign":1}"#).unwrap();
    let cosign = Run::push_artifact()
        .image(format!("{host}/app:{cosign_tag}"))
        .args([
            "--artifact-type",
            "application/vnd.dev.cosign.simplesigning.v1+json",
        ])
        .arg("--file")
        .arg(tmp.path().join("cosign.json"))
        .digest();

    // Without --referrers, none of them moves.
    let plain = format!("{}/plain:v1", mirror.host());
    Run::copy(&image, &plain).output_ok();
    assert!(tag_schema(&mirror.host(), "plain", &s).is_none());

    let dst = format!("{}/mirror/app:v1", mirror.host());
    Run::copy(&image, &dst).arg("--referrers").output_ok();
    let m = mirror.host();
    assert_eq!(
        digests(&tag_schema(&m, "mirror/app", &s).unwrap()),
        BTreeSet::from([sbom.clone()])
    );
    assert_eq!(
        digests(&tag_schema(&m, "mirror/app", &sbom).unwrap()),
        BTreeSet::from([sbom_sig.clone()])
    );
    assert_eq!(
        Digest::of(&inspect_raw(&format!(
            "docker://{m}/mirror/app:{cosign_tag}"
        )))
        .to_string(),
        cosign
    );
    for d in [&sbom, &sbom_sig] {
        inspect_raw(&format!("docker://{m}/mirror/app@{d}"));
    }
    assert_eq!(digests(&discover(&dst, &[])), BTreeSet::from([sbom]));
    // The tag came last: the mirror's tag was the final write.
    let writes = writes_to(&mirror, "mirror/app");
    let last = writes.last().expect("writes to the mirror");
    assert!(last.uri.ends_with("/manifests/v1"), "{writes:#?}");
}

#[test]
fn a_registry_with_the_referrers_api_keeps_the_list_itself() {
    let reg = Registry::start();
    let proxy = FaultProxy::referrers_api(&reg.host());
    let tmp = tempfile::tempdir().unwrap();
    let s = subject(&proxy.host(), tmp.path());
    let image = format!("{}/app:v1", proxy.host());
    let sbom = attach(&image, SPDX, "{}", tmp.path());
    assert!(
        tag_schema(&reg.host(), "app", &s).is_none(),
        "no tag schema where the registry answers OCI-Subject"
    );
    assert_eq!(
        digests(&discover(&image, &[])),
        BTreeSet::from([sbom.clone()])
    );
    assert!(proxy.count("GET", "/referrers/") >= 1);

    // Copied to distribution, they land in the tag schema there.
    let mirror = Registry::start();
    Run::copy(&image, format!("{}/app:v1", mirror.host()))
        .arg("--referrers")
        .output_ok();
    assert_eq!(
        digests(&tag_schema(&mirror.host(), "app", &s).unwrap()),
        BTreeSet::from([sbom])
    );
}

#[test]
fn harbor_and_docker_hub_refusing_the_api_fall_back_to_the_tag_schema() {
    for (name, persona) in [
        ("harbor", FaultProxy::harbor as fn(&str) -> FaultProxy),
        ("docker hub", FaultProxy::docker_hub),
    ] {
        let reg = Registry::start();
        let proxy = persona(&reg.host());
        let tmp = tempfile::tempdir().unwrap();
        let s = subject(&proxy.host(), tmp.path());
        let image = format!("{}/app:v1", proxy.host());
        let sbom = attach(&image, SPDX, "{}", tmp.path());
        assert_eq!(
            digests(&tag_schema(&reg.host(), "app", &s).expect(name)),
            BTreeSet::from([sbom.clone()]),
            "{name}"
        );
        assert_eq!(
            digests(&discover(&image, &[])),
            BTreeSet::from([sbom]),
            "{name}"
        );
        let (faulted, _) = proxy.faulted();
        assert!(faulted >= 1, "{name}: the referrers API was asked");
    }
}

#[test]
fn ecr_refusing_a_subject_gets_the_artifact_without_one_and_a_warning() {
    let reg = Registry::start();
    let proxy = FaultProxy::ecr(&reg.host());
    let tmp = tempfile::tempdir().unwrap();
    let s = subject(&proxy.host(), tmp.path());
    let image = format!("{}/app:v1", proxy.host());
    std::fs::write(tmp.path().join("sbom.json"), "{}").unwrap();
    let out = Run::attach(&image, SPDX, &tmp.path().join("sbom.json")).output_ok();
    assert!(
        stderr(&out).contains("refused a manifest with a subject"),
        "{}",
        stderr(&out)
    );
    let listed = tag_schema(&reg.host(), "app", &s).unwrap();
    let sbom = digests(&listed).into_iter().next().expect("listed");
    let manifest: Value =
        serde_json::from_slice(&inspect_raw(&format!("docker://{}/app@{sbom}", reg.host())))
            .unwrap();
    assert!(manifest.get("subject").is_none(), "{manifest:#}");
    assert_eq!(digests(&discover(&image, &[])), BTreeSet::from([sbom]));
}

#[test]
fn gitlab_resolving_the_fallback_tag_to_the_subject_is_not_read_as_referrers() {
    let reg = Registry::start();
    let proxy = FaultProxy::gitlab(&reg.host());
    let tmp = tempfile::tempdir().unwrap();
    // An index subject: read naively, its children would pass for referrers.
    let index = four_bundle_index(&reg, tmp.path()).replacen(&reg.host(), &proxy.host(), 1);
    let (stdout, err) = Run::discover(&index).printed_ok();
    let found: Value = serde_json::from_str(&stdout).unwrap();
    assert!(digests(&found).is_empty(), "{found:#}");
    assert!(err.contains("not an index of referrers"), "{err}");
}

#[test]
fn referrers_of_index_children_travel_into_a_layout_and_back() {
    let (reg, mirror) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    let index = four_bundle_index(&reg, &tmp.path().join("bundles"));
    let (_, doc) = support::assembly::fetch_index(&format!("docker://{index}"));
    let child = doc["manifests"][1]["digest"].as_str().unwrap().to_string();
    let name = index.rsplit_once(':').unwrap().0.to_string();
    let sbom = attach(
        &format!("{name}@{child}"),
        SPDX,
        r#"{"child":1}"#,
        tmp.path(),
    );

    let layout = format!("oci:{}:v1", tmp.path().join("layout").display());
    Run::copy(&index, &layout).arg("--referrers").output_ok();
    let pinned = format!("oci:{}@{child}", tmp.path().join("layout").display());
    assert_eq!(
        digests(&discover(&pinned, &[])),
        BTreeSet::from([sbom.clone()])
    );

    let back = format!("{}/back:v1", mirror.host());
    Run::copy(&layout, &back).arg("--referrers").output_ok();
    assert_eq!(
        digests(&tag_schema(&mirror.host(), "back", &child).unwrap()),
        BTreeSet::from([sbom])
    );
    let (raw, _) = support::assembly::fetch_index(&format!("docker://{back}"));
    assert_eq!(
        support::buildx::skopeo_copy_all(&format!("docker://{back}")),
        Digest::of(&raw).to_string()
    );
}
