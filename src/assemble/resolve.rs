//! Turning `--platform-image` entries into the children of a new index:
//! each reference is fetched, an image gives one child (its platform read
//! from its config and checked against the declared one), an index gives
//! its children (those of the declared platform, if one was declared).
//! Problems are gathered so that they are all reported together.

use std::sync::Arc;

use futures_util::future::join_all;

use crate::assemble::entries::Entry;
use crate::error::{Error, Result};
use crate::oci::index::{self, index_children, IndexChild};
use crate::oci::manifest::FetchedManifest;
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::store::remote::Remote;
use crate::store::Store;

/// The largest image config read to learn a platform.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A resolved child, with the store it comes from.
pub struct Resolved {
    /// The child's entry in the new index.
    pub child: IndexChild,
    /// Its manifest.
    pub manifest: FetchedManifest,
    /// Where it comes from.
    pub source: Arc<Store>,
    /// The entry it came from, for messages.
    pub label: String,
}

impl Resolved {
    /// True for an attestation manifest that came with its image.
    pub fn is_attestation(&self) -> bool {
        self.child.is_attestation()
    }
}

/// Resolves every entry, all at once. Entries that cannot be used (missing,
/// unreadable) are left out and described in the second list, one line
/// each; content that is wrong rather than missing (a mislabelled child, a
/// bad reference, forged bytes) is an error at once.
pub async fn resolve_all(
    remote: &Remote,
    entries: &[Entry],
) -> Result<(Vec<Resolved>, Vec<String>)> {
    let outcomes = join_all(entries.iter().map(|e| resolve(remote, e))).await;
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Ok(children) => resolved.extend(children),
            Err(e) if is_missing(&e) => problems.push(format!("  {}: {e}", entry.label())),
            Err(e) => return Err(e),
        }
    }
    Ok((resolved, problems))
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

/// Resolves one entry into its children: an image manifest gives one (its
/// platform read from the config), an index gives all of its children (or
/// those matching the declared platform).
async fn resolve(remote: &Remote, entry: &Entry) -> Result<Vec<Resolved>> {
    let source = Arc::new(Store::for_reading(
        &Target::parse(&entry.reference)?,
        remote,
    )?);
    let manifest = source.get_manifest().await?;
    let label = entry.label();
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
    let entries = index_children(&manifest)?;
    let mut out = Vec::new();
    for desc in &entries {
        let Some(platform) = index::child_platform(desc) else {
            continue;
        };
        if entry
            .declared
            .as_ref()
            .is_some_and(|d| !d.same_as(&platform))
        {
            continue;
        }
        out.push(IndexChild {
            platform,
            ..IndexChild::from_entry(desc)
        });
    }
    // Attestations come along with the images they are about.
    let attestations: Vec<IndexChild> = entries
        .iter()
        .map(IndexChild::from_entry)
        .filter(|a| {
            a.attests()
                .is_some_and(|d| out.iter().any(|c| c.descriptor.digest == d))
        })
        .collect();
    out.extend(attestations);
    let manifests = join_all(out.iter().map(|c| source.get_child(&c.descriptor))).await;
    let out = out
        .into_iter()
        .zip(manifests)
        .map(|(child, manifest)| {
            Ok(Resolved {
                child,
                manifest: manifest?,
                source: source.clone(),
                label: label.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
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
