//! Command-line flags, as clap parses them; [`crate::settings`] turns them
//! into what the modes take and [`crate::run`] runs the mode they select.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, ValueEnum};

use crate::compress::Compression;
use crate::logging::LogFormat;
use crate::oci::index::IndexFormat;
use crate::settings::StreamUpload;

const EXAMPLES: &str = "\
Examples:
  Push a source tree as a bundle and record its digest:
    ocistep --push-source-bundle ./src --image registry.example.com/app:v1-src \\
            --result-file-image-digest digest.txt

  Pull it on a build node, verified and extracted into ./work:
    ocistep --pull-source-bundle ./work --image registry.example.com/app@sha256:... \\
            --result-file-source-timestamp ts.txt --prune

  No registry at all: an OCI image layout on disk:
    ocistep --push-source-bundle ./src --image oci:./bundles:v1
    ocistep --pull-source-bundle ./work --image oci:./bundles:v1

  Push files as a generic OCI artifact with their own media types, then pull
  it (the linux/arm64 child, when it is an index) into ./app:
    ocistep --push-artifact --image registry.example.com/app:v1 \\
            --artifact-type application/vnd.example.app.v1 \\
            --file app.wasm:application/vnd.wasm.content.layer.v1+wasm --file static
    ocistep --pull-artifact ./app --image registry.example.com/app:v1 --platform linux/arm64

  Stitch per-platform images into one multi-platform image:
    ocistep --assemble-index --image registry.example.com/app:v1 \
            --platform-image linux/amd64=registry.example.com/app:v1-linux-amd64 \
            --platform-image linux/arm64=registry.example.com/app:v1-linux-arm64

  Push what a builder wrote (an OCI layout or a docker/OCI tarball):
    ocistep --push-image ./image --image registry.example.com/app:v1-linux-arm64

  Copy an index with all its children into a layout, and on to a mirror:
    ocistep --copy registry.example.com/app:v1 oci:./mirror:v1
    ocistep --copy oci:./mirror:v1 mirror.example.com/app:v1

Exit codes: 0 ok, 1 internal, 2 usage, 3 auth, 4 not found, 5 digest mismatch,
6 unsafe archive, 7 platform not found, 8 registry unreachable, 9 invalid input,
10 target conflict, 11 unusable registry content, 12 some inputs missing,
22 vulnerabilities found (failOnFinding), 100 no --image to process.

Shipwright's invocations work as they are (--image REF --target DIR; --push DIR;
--image REF alone): see docs/shipwright.md.";

/// What `--version` prints after the name: the version and the commit the
/// binary was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OCISTEP_COMMIT"),
    ")"
);

/// ocistep: move source bundles and images through OCI registries for native
/// multi-architecture builds.
#[derive(Debug, Parser)]
#[command(name = "ocistep", version = VERSION, about, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    /// The mode of this run (exactly one).
    #[command(flatten)]
    pub mode: ModeArgs,

    /// Image reference: `registry/repo[:tag][@digest]` or `oci:PATH[:tag]` (an OCI layout on disk).
    #[arg(long, value_name = "REF", alias = "source-bundle-image")]
    pub image: Option<String>,

    /// How to reach registries.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Platform to pull from an index: `os/arch[/variant]` or `os-arch` (default: this machine's).
    /// With --copy, repeatable: only these platforms (and their attestations) are copied, in a new index.
    #[arg(long, value_name = "PLATFORM", global = true)]
    pub platform: Vec<String>,

    /// Manifest (or index) annotation `key=value` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", global = true)]
    pub annotation: Vec<String>,

    /// Flags of the pushing modes.
    #[command(flatten)]
    pub push: PushArgs,

    /// Flags of `--assemble-index`.
    #[command(flatten)]
    pub assemble: AssembleArgs,

    /// Flags of `--push-image`.
    #[command(flatten)]
    pub push_image_args: PushImageArgs,

    /// Flags of the pulling modes.
    #[command(flatten)]
    pub pull: PullArgs,

    /// Flags of the artifact modes.
    #[command(flatten)]
    pub artifact: ArtifactArgs,

    /// Where results are written.
    #[command(flatten)]
    pub results: ResultArgs,

    /// Logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// At most one of these selects what the run does; with none, `--image`
/// is processed as Shipwright's image-processing step does.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct ModeArgs {
    /// Pack DIR into a source bundle and push it to --image.
    #[arg(long, value_name = "DIR", help_heading = "Modes")]
    pub push_source_bundle: Option<PathBuf>,
    /// Pull the source bundle --image, verify it and extract it into DIR.
    #[arg(long, value_name = "DIR", help_heading = "Modes")]
    pub pull_source_bundle: Option<PathBuf>,
    /// Build an image index at --image from the --platform-image entries and push it.
    #[arg(long, help_heading = "Modes")]
    pub assemble_index: bool,
    /// Push the image in DIR (an OCI image layout, or a docker/OCI tarball inside DIR) to --image.
    #[arg(long, value_name = "DIR", help_heading = "Modes")]
    pub push_image: Option<PathBuf>,
    /// Copy an image or index with all its children from SRC to DST (registry or oci: layout, either way).
    #[arg(long, num_args = 2, value_names = ["SRC", "DST"], help_heading = "Modes")]
    pub copy: Option<Vec<String>>,
    /// Push the --file values (and --config) as a generic OCI artifact to --image.
    #[arg(long, help_heading = "Modes")]
    pub push_artifact: bool,
    /// Pull the artifact --image (for --platform, if it is an index) and write its titled layers into DIR.
    #[arg(long, value_name = "DIR", help_heading = "Modes")]
    pub pull_artifact: Option<PathBuf>,
    /// List the referrers of --image (signatures, SBOMs, attestations) as an OCI index on stdout.
    #[arg(long, help_heading = "Modes")]
    pub discover: bool,
    /// Shipwright's bundle puller: pull the bundle --image into DIR, as --pull-source-bundle does.
    #[arg(long, value_name = "DIR", help_heading = "Shipwright")]
    pub target: Option<PathBuf>,
    /// Shipwright's image-processing: push the image in DIR as --push-image does, with the
    /// size result as Shipwright computes it (config plus layers; none for an index).
    #[arg(long, value_name = "DIR", help_heading = "Shipwright")]
    pub push: Option<PathBuf>,
}

impl ModeArgs {
    /// True when no mode flag was given.
    pub fn is_empty(&self) -> bool {
        self.push_source_bundle.is_none()
            && self.pull_source_bundle.is_none()
            && !self.assemble_index
            && self.push_image.is_none()
            && self.copy.is_none()
            && !self.push_artifact
            && self.pull_artifact.is_none()
            && !self.discover
            && self.target.is_none()
            && self.push.is_none()
    }
}

/// How to reach registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Directory with `.dockerconfigjson` or `config.json` (an empty value means none).
    #[arg(long, value_parser = path_allowing_empty, value_name = "DIR", help_heading = "Registry")]
    pub secret_path: Option<PathBuf>,
    /// Allow plain HTTP and self-signed certificates for every registry (`--insecure=false` too).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Registry")]
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Registry")]
    pub ca_file: Option<PathBuf>,
    /// Keep pulled manifests and blobs in an OCI layout here, shared between runs and modes.
    #[arg(long, value_name = "DIR", env = "OCISTEP_CACHE_DIR", value_parser = path_allowing_empty, help_heading = "Registry")]
    pub cache_dir: Option<PathBuf>,
    /// Resolve tags from --cache-dir instead of asking the registry.
    #[arg(long, requires = "cache_dir", help_heading = "Registry")]
    pub offline: bool,
    /// Attempts per request for transient faults (429, 5xx, resets).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20), help_heading = "Registry")]
    pub retries: u32,
    /// Seconds a registry may stay silent in the middle of a request (taking
    /// none of its body, not answering) before the request counts as failed
    /// (and is retried like a reset); a transfer that keeps moving may take longer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = "Registry")]
    pub timeout: u64,
    /// Slowest transfer accepted either way, in bytes per second (suffixes K, M),
    /// averaged over --timeout seconds of waiting; slower counts as a stall. 0: no minimum.
    // The default, 60 KiB in the default 60 s window, would take 28 hours
    // over a 100 MB layer; real registries, even across continents or
    // behind a busy proxy, send orders of magnitude faster.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value = "1K", value_parser = parse_size, help_heading = "Registry")]
    pub min_rate: u64,
    /// Longest the whole run may take (90s, 15m, 2h); past it the run stops with exit code 8.
    #[arg(long, value_name = "DURATION", value_parser = crate::deadline::parse, help_heading = "Registry")]
    pub deadline: Option<Duration>,
    /// Blobs moved at the same time per registry (copy, assemble-index, push-image, pull-artifact).
    #[arg(long, value_name = "N", default_value_t = crate::registry::DEFAULT_MAX_TRANSFERS as u64, value_parser = clap::value_parser!(u64).range(1..=32), help_heading = "Registry")]
    pub max_transfers: u64,
}

/// When a source bundle's layer is uploaded while it is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamUploadArg {
    /// All of it into a new repository (which cannot have the layer); into
    /// an existing one while the registry keeps up with the packing, the
    /// rest after a HEAD shows the registry lacks the layer.
    Auto,
    /// All of it, whatever the repository holds (an unchanged tree is sent
    /// again: its digest is known only at the end).
    Always,
    /// None: packed first, then a HEAD, then the upload.
    Never,
}

impl From<StreamUploadArg> for StreamUpload {
    fn from(arg: StreamUploadArg) -> Self {
        match arg {
            StreamUploadArg::Auto => StreamUpload::Auto,
            StreamUploadArg::Always => StreamUpload::Always,
            StreamUploadArg::Never => StreamUpload::Never,
        }
    }
}

/// Layer compression of the pushing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// tar+gzip, read by every runtime (Tekton bundles and older runtimes need it).
    Gzip,
    /// tar+zstd, for registries and runtimes that accept it.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Self {
        match arg {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Which kind of index `--assemble-index` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexFormatArg {
    /// `application/vnd.oci.image.index.v1+json` (the default).
    Oci,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`, for old clients.
    Docker,
}

impl From<IndexFormatArg> for IndexFormat {
    fn from(arg: IndexFormatArg) -> Self {
        match arg {
            IndexFormatArg::Oci => IndexFormat::Oci,
            IndexFormatArg::Docker => IndexFormat::Docker,
        }
    }
}

/// The log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// Flags of the pushing modes.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Source timestamp (seconds since the epoch or RFC 3339); sets every mtime and the `created` annotation.
    #[arg(
        long,
        value_name = "TIME",
        env = "SOURCE_DATE_EPOCH",
        help_heading = "Push"
    )]
    pub source_timestamp: Option<String>,
    /// Extra ignore file (gitignore syntax); `.shpignore` in DIR is always read.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Push")]
    pub ignore_file: Vec<PathBuf>,
    /// Leave out paths matching PATTERN (gitignore syntax, repeatable).
    #[arg(long, value_name = "PATTERN", help_heading = "Push")]
    pub exclude: Vec<String>,
    /// Store symlinks that leave the tree as the files they point to, instead of failing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Push")]
    pub dereference_symlinks: bool,
    /// When a bundle's layer is uploaded while it is packed (a chunked PATCH) rather than
    /// after; `--stream-upload` alone means `always`.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = StreamUploadArg::Auto,
        default_missing_value = "always",
        help_heading = "Push"
    )]
    pub stream_upload: StreamUploadArg,
    /// Layer compression of the pushed layers (pulls read both).
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = CompressionArg::Gzip, help_heading = "Push")]
    pub compression: CompressionArg,
    /// Compression level: gzip 1 (fast) to 9 (small), default 6; zstd 1 to 19, default 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32), help_heading = "Push")]
    pub compression_level: Option<u32>,
}

/// Flags of `--assemble-index`.
#[derive(Debug, Args)]
pub struct AssembleArgs {
    /// A per-platform image: `os/arch[/variant]=REF`, or `REF` (platform read from its config).
    /// Repeatable, and may be followed by several values (a Tekton array param expands so);
    /// one value may also hold several entries separated by commas or newlines, or a JSON array.
    #[arg(long, value_name = "ENTRY", num_args = 1.., help_heading = "Assemble index")]
    pub platform_image: Vec<String>,
    /// Build the index from the images that exist, leaving out (and naming) the others.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Assemble index")]
    pub allow_missing: bool,
    /// Fail unless the index covers these platforms (comma-separated).
    #[arg(long, value_name = "PLATFORMS", help_heading = "Assemble index")]
    pub require_platforms: Option<String>,
    /// Index format.
    #[arg(long, value_enum, default_value_t = IndexFormatArg::Oci, help_heading = "Assemble index")]
    pub index_format: IndexFormatArg,
    /// A platform's scan result, `os/arch[/variant]=ID:S,…` (a vulnerabilities result), added to
    /// that platform's entry in the platform results (repeatable).
    #[arg(long, value_name = "PLATFORM=RESULT", help_heading = "Assemble index")]
    pub platform_vulnerabilities: Vec<String>,
    /// Edit the index at --image instead of replacing it: a platform given again replaces its
    /// entry (and attestation), the other entries and the index annotations stay.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Assemble index")]
    pub append: bool,
    /// Drop this platform's entry (and its attestation) from the index at --image (repeatable;
    /// implies --append).
    #[arg(long, value_name = "PLATFORM", help_heading = "Assemble index")]
    pub remove_platform: Vec<String>,
    /// Leave out the attestation manifests (provenance, SBOM) that per-platform indexes carry
    /// (--assemble-index, --copy --platform).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Assemble index")]
    pub drop_attestations: bool,
}

/// Flags of `--push-image`.
#[derive(Debug, Args)]
pub struct PushImageArgs {
    /// Image config label `key=value` (repeatable); changes the image digest.
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Push image")]
    pub label: Vec<String>,
    /// Creation time for the image config and history (seconds since the epoch or RFC 3339).
    #[arg(long, value_name = "TIME", help_heading = "Push image")]
    pub image_timestamp: Option<String>,
    /// Read the creation time from FILE (e.g. a source-timestamp result); not with --image-timestamp.
    #[arg(long, value_name = "FILE", value_parser = path_allowing_empty, help_heading = "Push image")]
    pub image_timestamp_file: Option<PathBuf>,
    /// Scan the image with trivy first, as Shipwright does: `{"enabled":true,"failOnFinding":true,
    /// "ignore":{"id":[…],"severity":"low|medium|high","unfixed":true}}`.
    #[arg(long, value_name = "JSON", help_heading = "Push image")]
    pub vuln_settings: Option<String>,
    /// The most vulnerabilities the result holds, the most severe first.
    #[arg(long, value_name = "N", default_value_t = crate::scan::settings::DEFAULT_COUNT_LIMIT, help_heading = "Push image")]
    pub vuln_count_limit: usize,
}

/// Flags of the pulling modes.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Delete the bundle from the registry after a successful pull.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Pull")]
    pub prune: bool,
    /// Print every extracted entry to stdout (for a bundle, `BUNDLE_SHOW_LISTING`, when set, decides).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Pull")]
    pub show_listing: bool,
    /// Replace entries of DIR that the bundle also holds (otherwise they are a conflict).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = "Pull")]
    pub overwrite: bool,
    /// Refuse bundles that expand to more than SIZE (bytes, or with K/M/G/T suffix).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Pull")]
    pub max_extract_size: Option<u64>,
    /// Refuse bundles with more than N entries.
    #[arg(long, value_name = "N", help_heading = "Pull")]
    pub max_entries: Option<u64>,
}

/// Flags of `--push-artifact` and `--pull-artifact`.
#[derive(Debug, Args)]
pub struct ArtifactArgs {
    /// The manifest's `artifactType` (required with the empty config).
    #[arg(
        long,
        value_name = "TYPE",
        conflicts_with = "pull_artifact",
        help_heading = "Artifacts"
    )]
    pub artifact_type: Option<String>,
    /// A file or directory to push as one layer titled with its base name (repeatable, in order).
    /// Files default to `application/octet-stream`; a directory becomes a tar+gzip layer unpacked on pull.
    #[arg(
        long,
        value_name = "PATH[:MEDIATYPE]",
        conflicts_with = "pull_artifact",
        help_heading = "Artifacts"
    )]
    pub file: Vec<String>,
    /// The config blob and its media type (default: the OCI empty config `{}`).
    #[arg(
        long,
        value_name = "PATH:MEDIATYPE",
        conflicts_with = "pull_artifact",
        help_heading = "Artifacts"
    )]
    pub config: Option<String>,
    /// Make the pushed artifact a referrer of REF (its manifest names REF's as `subject`); it goes
    /// into REF's repository by digest unless --image names where.
    #[arg(
        long,
        value_name = "REF",
        conflicts_with = "pull_artifact",
        help_heading = "Artifacts"
    )]
    pub subject: Option<String>,
    /// With --copy: copy the referrers of the image and of each child (recursively) and cosign's
    /// `<alg>-<hex>.sig`, `.att`, `.sbom` tags too.
    #[arg(long, help_heading = "Artifacts")]
    pub referrers: bool,
    /// Pull only layers with this media type (repeatable).
    #[arg(
        long,
        value_name = "TYPE",
        conflicts_with = "push_artifact",
        help_heading = "Artifacts"
    )]
    pub media_type: Vec<String>,
}

/// Where to write results (bare values, no trailing newline).
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Write the manifest digest (`sha256:…`) here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_image_digest: Option<PathBuf>,
    /// Write the total size in bytes (manifest, config and layers) here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_image_size: Option<PathBuf>,
    /// Write the pinned reference (`registry/repo@sha256:…`) here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_image_ref: Option<PathBuf>,
    /// Write a JSON array of `{platform, digest, size, reference}` for the index's children here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_platform_results: Option<PathBuf>,
    /// Also write every result as `OCISTEP_*=value` lines here (GitLab `artifacts: reports: dotenv`).
    /// Results also go to `$GITHUB_OUTPUT` when it is set.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub dotenv_file: Option<PathBuf>,
    /// Write the scan's findings (`ID:S,…`, S the severity's initial) here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_image_vulnerabilities: Option<PathBuf>,
    /// Write the referrers --discover found (an OCI index) here.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_referrers: Option<PathBuf>,
    /// Write the bundle's source timestamp (seconds since the epoch) here: its own, else the newest
    /// file mtime in its layer; not written when it has neither.
    #[arg(long, value_parser = path_allowing_empty, value_name = "FILE", help_heading = "Results")]
    pub result_file_source_timestamp: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text, help_heading = "Output")]
    pub log_format: LogFormatArg,
    /// More detail (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
    /// Warnings and errors only.
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,
}

/// Parses a boolean flag value as Shipwright (Go) does.
fn go_bool(s: &str) -> std::result::Result<bool, String> {
    crate::shipwright::parse_bool(s)
}

/// Accepts any path, the empty one included (see [`non_empty`]).
fn path_allowing_empty(s: &str) -> std::result::Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

/// Parses `1024`, `512K`, `64M`, `10G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?}; use K, M, G or T")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}; expected e.g. 10G"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn exactly_one_mode() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // No mode: Shipwright's image-processing of --image.
        let c = Cli::try_parse_from(["ocistep", "--image", "x", "--insecure=false"]).unwrap();
        assert!(c.mode.is_empty() && !c.registry.insecure);
        let c = Cli::try_parse_from(["ocistep", "--image", "x", "--target", "d"]).unwrap();
        assert!(!c.mode.is_empty());
        assert!(Cli::try_parse_from(["ocistep", "--target", "d", "--push", "e"]).is_err());
        assert!(Cli::try_parse_from(["ocistep", "--insecure=yes", "--image", "x"]).is_err());
        assert!(Cli::try_parse_from([
            "ocistep",
            "--push-source-bundle",
            "a",
            "--pull-source-bundle",
            "b",
            "--image",
            "x"
        ])
        .is_err());
        let c = Cli::try_parse_from([
            "ocistep",
            "--push-source-bundle",
            "a",
            "--source-bundle-image",
            "x",
        ])
        .unwrap();
        assert_eq!(c.image.as_deref(), Some("x"));
        let c = Cli::try_parse_from([
            "ocistep",
            "--assemble-index",
            "--platform-image",
            "a",
            "b",
            "--image",
            "x",
        ])
        .unwrap();
        assert_eq!(c.assemble.platform_image, ["a", "b"]);
        let c = Cli::try_parse_from(["ocistep", "--copy", "a:1", "oci:b:1"]).unwrap();
        assert_eq!(c.mode.copy.unwrap(), ["a:1", "oci:b:1"]);
    }
}
