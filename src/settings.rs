//! The flags of one run, resolved once into the plain settings each mode
//! takes. Empty values mean absent (Tekton passes unset parameters as
//! `""`); timestamps, compression levels and extraction limits are parsed
//! and checked here, only for the mode that runs. Nothing below the modes
//! knows the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::archive::extract::{ExtractLimits, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use crate::archive::pack::PackOptions;
use crate::archive::walk::WalkOptions;
use crate::cli::{ArtifactArgs, AssembleArgs, PullArgs, PushArgs, PushImageArgs};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::image::mutate::Mutations;
use crate::oci::index::IndexFormat;
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::scan::report::{self, Vulnerability};
use crate::scan::ScanSettings;
use crate::shipwright;
use crate::timestamp;

/// When a source bundle's layer is uploaded while it is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUpload {
    /// All of it into a new repository (which cannot have the layer); into
    /// an existing one while the registry keeps up with the packing, the
    /// rest after a HEAD shows the registry lacks the layer.
    Auto,
    /// All of it, whatever the repository holds.
    Always,
    /// None: packed first, then a HEAD, then the upload.
    Never,
}

/// How the pushing modes pack what they push.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Every entry's mtime, the config's `created` and the `created`
    /// annotation, in seconds since the epoch.
    pub source_timestamp: Option<u64>,
    /// What the walk of a pushed directory leaves out, and how it treats
    /// symlinks that leave the tree.
    pub walk: WalkOptions,
    /// When a bundle's layer is uploaded.
    pub stream_upload: StreamUpload,
    /// The layer compression.
    pub compression: Compression,
    /// Its level, checked against the algorithm's range.
    pub compression_level: u32,
}

impl PushSettings {
    /// Resolves the push flags.
    pub fn new(args: &PushArgs) -> Result<Self> {
        let source_timestamp = args
            .source_timestamp
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(timestamp::parse_flag)
            .transpose()?;
        let compression = Compression::from(args.compression);
        Ok(PushSettings {
            source_timestamp,
            walk: WalkOptions {
                ignore_files: args.ignore_file.clone(),
                excludes: args.exclude.clone(),
                dereference_symlinks: args.dereference_symlinks,
            },
            stream_upload: StreamUpload::from(args.stream_upload),
            compression,
            compression_level: compression.level(args.compression_level)?,
        })
    }

    /// How a layer is packed: every mtime the source timestamp (or 0).
    pub fn pack_options(&self) -> PackOptions {
        PackOptions {
            mtime: self.source_timestamp.unwrap_or(0),
            compression: self.compression,
            compression_level: self.compression_level,
        }
    }
}

/// How the pulling modes write what they pull.
#[derive(Debug, Clone, Copy)]
pub struct PullSettings {
    /// Delete the pulled manifest from the registry afterwards.
    pub prune: bool,
    /// Print every extracted entry on stdout.
    pub show_listing: bool,
    /// Replace entries of the target that the pull also holds.
    pub overwrite: bool,
    /// What an extraction may expand to.
    pub limits: ExtractLimits,
}

impl PullSettings {
    /// Resolves the pull flags.
    pub fn new(args: &PullArgs) -> Self {
        PullSettings {
            prune: args.prune,
            show_listing: args.show_listing,
            overwrite: args.overwrite,
            limits: ExtractLimits {
                max_bytes: args.max_extract_size.unwrap_or(DEFAULT_MAX_BYTES),
                max_entries: args.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            },
        }
    }

    /// Resolves the flags of a bundle pull: `BUNDLE_SHOW_LISTING`, when
    /// set, decides whether it lists, as in Shipwright's bundle puller.
    pub fn for_bundle(args: &PullArgs) -> Self {
        let env = std::env::var(shipwright::SHOW_LISTING_ENV).ok();
        PullSettings {
            show_listing: shipwright::show_listing(args.show_listing, env.as_deref()),
            ..PullSettings::new(args)
        }
    }
}

/// What happens to an image on its way to `--image`.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// Annotations, labels and creation time.
    pub mutations: Mutations,
    /// The vulnerability scan asked for.
    pub scan: Option<ScanSettings>,
    /// Report the size as Shipwright does (config plus layers; none for
    /// an index) rather than the manifest's.
    pub shipwright_size: bool,
}

impl ImageSettings {
    /// Resolves the image flags; `credential_files` and `insecure` are what
    /// a scan of a registry image needs.
    pub fn new(
        args: &PushImageArgs,
        annotations: &BTreeMap<String, String>,
        shipwright_size: bool,
        credential_files: Vec<PathBuf>,
        insecure: bool,
    ) -> Result<Self> {
        let mutations = Mutations::new(
            &args.label,
            args.image_timestamp.as_deref(),
            args.image_timestamp_file.as_deref(),
            annotations,
        )?;
        let scan = ScanSettings::parse(
            args.vuln_settings.as_deref().unwrap_or(""),
            args.vuln_count_limit,
        )?
        .map(|scan| ScanSettings {
            credential_files,
            insecure,
            ..scan
        });
        Ok(ImageSettings {
            mutations,
            scan,
            shipwright_size,
        })
    }
}

/// What `--assemble-index` builds.
#[derive(Debug, Clone)]
pub struct AssembleSettings {
    /// The `--platform-image` values, each possibly holding several entries.
    pub platform_images: Vec<String>,
    /// Build the index from the images that exist.
    pub allow_missing: bool,
    /// Platforms the index must cover (comma-separated).
    pub require_platforms: Option<String>,
    /// OCI index or Docker manifest list.
    pub index_format: IndexFormat,
    /// Scan findings per platform, for the platform results.
    pub platform_vulnerabilities: Vec<(Platform, Vec<Vulnerability>)>,
    /// Start from the index already at the target.
    pub append: bool,
    /// Platforms to drop from it (implies `append`).
    pub remove_platforms: Vec<Platform>,
    /// Leave attestation manifests out.
    pub drop_attestations: bool,
}

impl AssembleSettings {
    /// Resolves the `--assemble-index` flags.
    pub fn new(args: &AssembleArgs) -> Result<Self> {
        let platform_vulnerabilities = args
            .platform_vulnerabilities
            .iter()
            .map(|v| {
                let (platform, found) = v.split_once('=').ok_or_else(|| {
                    Error::Usage(format!(
                        "invalid --platform-vulnerabilities {v:?}: expected os/arch=ID:S,… (a vulnerabilities result)"
                    ))
                })?;
                Ok((Platform::parse(platform)?, report::from_result(found)?))
            })
            .collect::<Result<_>>()?;
        let remove_platforms = parse_platforms(&args.remove_platform)?;
        Ok(AssembleSettings {
            platform_images: args.platform_image.clone(),
            allow_missing: args.allow_missing,
            require_platforms: args.require_platforms.clone(),
            index_format: IndexFormat::from(args.index_format),
            platform_vulnerabilities,
            append: args.append || !remove_platforms.is_empty(),
            remove_platforms,
            drop_attestations: args.drop_attestations,
        })
    }
}

/// What an artifact holds, or which of its layers a pull writes.
#[derive(Debug, Clone)]
pub struct ArtifactSettings {
    /// The manifest's `artifactType`.
    pub artifact_type: Option<String>,
    /// `PATH[:MEDIATYPE]` of each layer, in order.
    pub files: Vec<String>,
    /// `PATH:MEDIATYPE` of the config blob.
    pub config: Option<String>,
    /// The layer media types a pull writes (all when empty).
    pub media_types: Vec<String>,
    /// `--subject`: the manifest a pushed artifact refers to.
    pub subject: Option<Target>,
    /// No `--image` was given: the artifact goes into the subject's
    /// repository, by digest.
    pub into_subject_repository: bool,
}

impl ArtifactSettings {
    /// Resolves the artifact flags; `image_given` tells whether `--image`
    /// names where the artifact goes.
    pub fn new(args: &ArtifactArgs, image_given: bool) -> Result<Self> {
        let subject = args
            .subject
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Target::parse)
            .transpose()?;
        Ok(ArtifactSettings {
            artifact_type: args.artifact_type.clone().filter(|t| !t.is_empty()),
            files: args.file.clone(),
            config: args.config.clone(),
            media_types: args.media_type.clone(),
            into_subject_repository: subject.is_some() && !image_given,
            subject,
        })
    }
}

/// Treats an empty path (an unbound Tekton workspace or an unset param) as absent.
pub fn non_empty(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.clone().filter(|p| !p.as_os_str().is_empty())
}

/// Parses `key=value` annotations into a sorted map.
pub fn parse_annotations(values: &[String]) -> Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
            _ => Err(Error::Usage(format!(
                "invalid --annotation {v:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod conversion_tests {
    use super::*;

    #[test]
    fn annotations() {
        let a = parse_annotations(&["b=2".into(), "a=x=y".into()]).unwrap();
        assert_eq!(a.get("a").map(String::as_str), Some("x=y"));
        assert!(parse_annotations(&["novalue".into()]).is_err());
    }
}
/// What `--copy` takes along.
#[derive(Debug, Clone, Default)]
pub struct CopySettings {
    /// Only these platforms of an index (and their attestations), in a new index.
    pub platforms: Vec<Platform>,
    /// Leave attestations out of that index.
    pub drop_attestations: bool,
    /// Copy referrers and cosign's tags too.
    pub referrers: bool,
}

/// Parses repeatable platform values, each possibly comma-separated;
/// empty values are dropped.
pub fn parse_platforms(values: &[String]) -> Result<Vec<Platform>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(Platform::parse)
        .collect()
}
