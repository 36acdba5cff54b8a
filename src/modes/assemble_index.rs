//! `--assemble-index`: per-platform images (any repository, any registry,
//! or a layout) become one image index at `--image`.
//!
//! Every input is resolved first; all problems are reported together and
//! nothing is pushed unless the set is complete (or `--allow-missing`).
//! Then children are copied (mounted where possible) and pushed by digest,
//! and the index goes last.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::modes::{require_tag, Context};
use crate::oci::index::index_children;
use crate::oci::index::{self, IndexChild};
use crate::oci::manifest::{Descriptor, FetchedManifest};
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::results::{self, Outcome};
use crate::settings::AssembleSettings;
use crate::store::copy::copy_manifest;
use crate::store::Store;

/// The largest image config read to learn a platform.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// One `--platform-image` entry: an optional declared platform and a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The platform given with `os/arch=REF`.
    pub declared: Option<Platform>,
    /// The reference.
    pub reference: String,
}

/// A resolved child, with the store it comes from.
struct Resolved {
    child: IndexChild,
    manifest: FetchedManifest,
    source: Arc<Store>,
    label: String,
}

/// One line of the platform results file.
#[derive(Serialize)]
struct PlatformResult {
    platform: String,
    digest: String,
    size: u64,
    reference: String,
}

/// Splits `--platform-image` values (commas, newlines, or a JSON array)
/// into entries.
pub fn parse_entries(values: &[String]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for value in values {
        let items: Vec<String> = match serde_json::from_str::<Vec<String>>(value.trim()) {
            Ok(list) if value.trim_start().starts_with('[') => list,
            _ => value.split([',', '\n']).map(str::to_string).collect(),
        };
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            out.push(match item.split_once('=') {
                Some((platform, reference)) => Entry {
                    declared: Some(Platform::parse(platform)?),
                    reference: reference.trim().to_string(),
                },
                None => Entry {
                    declared: None,
                    reference: item.to_string(),
                },
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Usage(
            "--assemble-index needs at least one --platform-image (os/arch=REF or REF)".to_string(),
        ));
    }
    Ok(out)
}

/// Runs the mode.
pub async fn run(
    ctx: &Context,
    target: &Target,
    args: &AssembleSettings,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    require_tag(target, "app:v1")?;
    let entries = parse_entries(&args.platform_images)?;
    let outcomes = join_all(entries.iter().map(|e| resolve(ctx, e))).await;

    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Ok(children) => resolved.extend(children),
            Err(e) if is_missing(&e) => problems.push(format!("  {}: {e}", label(entry))),
            // A mislabelled child, a bad reference or forged content is
            // wrong, not missing: --allow-missing does not excuse it.
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        let list = problems.join("\n");
        if !args.allow_missing || resolved.is_empty() {
            return Err(Error::MissingInputs(format!(
                "{} of {} platform images cannot be used, nothing was pushed:\n{list}\n(--allow-missing builds the index from the others)",
                problems.len(),
                entries.len()
            )));
        }
        tracing::warn!("left out of the index (--allow-missing):\n{list}");
    }
    if let Some(nested) = resolved.iter().find(|r| r.manifest.is_index()) {
        return Err(Error::BadContent(format!(
            "{}: an index holds another index ({}) as a child; nested indexes cannot be assembled, pass the inner index itself",
            nested.label, nested.manifest.digest
        )));
    }
    check_duplicates(&resolved)?;
    if let Some(required) = &args.require_platforms {
        check_required(&resolved, required)?;
    }

    let dst = Store::for_writing(target, &ctx.client)?;
    let copies = join_all(
        resolved
            .iter()
            .map(|r| copy_manifest(&r.source, &dst, &r.manifest)),
    )
    .await;
    for (r, copied) in resolved.iter().zip(copies) {
        let stats = copied.map_err(|e| annotate(e, &r.label))?;
        tracing::debug!("{}: {:?}", r.label, stats);
    }

    let mut children: Vec<IndexChild> = resolved.iter().map(|r| r.child.clone()).collect();
    let bytes = index::build(&mut children, args.index_format, annotations);
    let digest = dst
        .put_manifest(&bytes, args.index_format.media_type())
        .await?;
    let pinned = dst.pinned(&digest);
    tracing::info!(
        "pushed index {target} as {pinned} with {} children",
        children.len()
    );

    let platform_results: Vec<PlatformResult> = children
        .iter()
        .map(|c| PlatformResult {
            platform: c.platform.short(),
            digest: c.descriptor.digest.clone(),
            size: c.descriptor.size,
            reference: dst.pinned(
                &crate::oci::digest::Digest::parse(&c.descriptor.digest).expect("verified digest"),
            ),
        })
        .collect();
    let json =
        serde_json::to_string(&platform_results).map_err(|e| Error::Internal(e.to_string()))?;
    results::publish(
        &ctx.results,
        &Outcome {
            digest: Some(digest),
            size: Some(bytes.len() as u64),
            reference: Some(pinned),
            source_timestamp: None,
            platform_results: Some(json),
        },
    )?;
    Ok(())
}

/// Errors that mean "this input is not there or cannot be read".
fn is_missing(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound(_)
            | Error::Auth(_)
            | Error::Unreachable(_)
            | Error::Interrupted(_)
            | Error::BadContent(_)
            | Error::PlatformNotFound(_)
    )
}

fn label(entry: &Entry) -> String {
    match &entry.declared {
        Some(p) => format!("{}={}", p.short(), entry.reference),
        None => entry.reference.clone(),
    }
}

fn annotate(e: Error, label: &str) -> Error {
    match e {
        Error::NotFound(m) => Error::NotFound(format!("{label}: {m}")),
        Error::Unreachable(m) => Error::Unreachable(format!("{label}: {m}")),
        other => other,
    }
}

/// Resolves one entry into its children: an image manifest gives one (its
/// platform read from the config), an index gives all of its children (or
/// those matching the declared platform).
async fn resolve(ctx: &Context, entry: &Entry) -> Result<Vec<Resolved>> {
    let source = Arc::new(Store::for_reading(
        &Target::parse(&entry.reference)?,
        &ctx.client,
    )?);
    let manifest = source.get_manifest().await?;
    let label = label(entry);
    if !manifest.is_index() {
        let platform = platform_of(&source, &manifest, entry).await?;
        let child = IndexChild {
            platform,
            descriptor: manifest.descriptor(),
        };
        return Ok(vec![Resolved {
            child,
            manifest,
            source,
            label,
        }]);
    }
    let mut out = Vec::new();
    for desc in index_children(&manifest)? {
        let Some(platform) = index::child_platform(&desc) else {
            continue;
        };
        if entry
            .declared
            .as_ref()
            .is_some_and(|d| !d.same_as(&platform))
        {
            continue;
        }
        let child_manifest = source.get_child(&desc).await?;
        let descriptor = Descriptor {
            platform: None,
            ..desc.clone()
        };
        out.push(Resolved {
            child: IndexChild {
                platform,
                descriptor,
            },
            manifest: child_manifest,
            source: source.clone(),
            label: label.clone(),
        });
    }
    if out.is_empty() {
        return Err(Error::PlatformNotFound(format!(
            "index {} has no child for {}",
            manifest.digest,
            entry
                .declared
                .as_ref()
                .map(Platform::short)
                .unwrap_or_else(|| "any platform".into())
        )));
    }
    Ok(out)
}

/// The platform of a single image, from its config, checked against the
/// declared one.
async fn platform_of(
    source: &Store,
    manifest: &FetchedManifest,
    entry: &Entry,
) -> Result<Platform> {
    let image = manifest.image_manifest()?;
    let config = source.read_blob(&image.config, MAX_CONFIG_BYTES).await?;
    let from_config = serde_json::from_slice::<Platform>(&config)
        .ok()
        .filter(|p| !p.os.is_empty() && !p.architecture.is_empty() && !p.is_unknown())
        .map(Platform::normalized);
    match (&entry.declared, from_config) {
        (Some(declared), Some(actual)) if !declared.same_as(&actual) => Err(Error::InvalidInput(format!(
            "{} was declared as {} but its config says {}; fix the --platform-image entry or the build",
            entry.reference,
            declared.short(),
            actual.short()
        ))),
        (Some(declared), Some(actual)) => Ok(Platform { os_version: actual.os_version.or(declared.os_version.clone()), ..actual }),
        (None, Some(actual)) => Ok(actual),
        (Some(declared), None) => Ok(declared.clone()),
        (None, None) => Err(Error::InvalidInput(format!(
            "{}: its config names no platform; give it as os/arch={}",
            entry.reference, entry.reference
        ))),
    }
}

fn check_duplicates(resolved: &[Resolved]) -> Result<()> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for r in resolved.iter().filter(|r| !r.child.platform.is_unknown()) {
        let key = r.child.platform.to_string();
        if let Some(first) = seen.insert(key.clone(), &r.label) {
            return Err(Error::Usage(format!(
                "two images for {key}: {first} and {}; give one image per platform",
                r.label
            )));
        }
    }
    Ok(())
}

fn check_required(resolved: &[Resolved], required: &str) -> Result<()> {
    let have: Vec<&Platform> = resolved.iter().map(|r| &r.child.platform).collect();
    let mut missing = Vec::new();
    for want in required
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let want = Platform::parse(want)?;
        if !have.iter().any(|p| p.same_as(&want)) {
            missing.push(want.short());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let present: Vec<String> = have.iter().map(|p| p.short()).collect();
    Err(Error::PlatformNotFound(format!(
        "--require-platforms: missing {}; the index would have {}",
        missing.join(", "),
        present.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_commas_newlines_and_json_arrays() {
        let e = parse_entries(&[
            "linux/amd64=reg/app:a, linux/arm64/v8=reg/app:b\nreg/app:c".into(),
            r#"["reg/app:d","linux-arm-v7=reg/app:e"]"#.into(),
        ])
        .unwrap();
        let refs: Vec<&str> = e.iter().map(|e| e.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "reg/app:a",
                "reg/app:b",
                "reg/app:c",
                "reg/app:d",
                "reg/app:e"
            ]
        );
        assert_eq!(e[1].declared.as_ref().unwrap().short(), "linux/arm64");
        assert_eq!(e[4].declared.as_ref().unwrap().short(), "linux/arm/v7");
        assert!(e[2].declared.is_none());
        assert!(parse_entries(&[" , ".into()]).is_err());
        assert!(parse_entries(&["nonsense/a/b/c=reg/app".into()]).is_err());
    }
}
