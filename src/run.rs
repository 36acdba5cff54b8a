//! One run: the flags turned into a registry client and result files,
//! logging set up, and the mode they select run to its end, a signal or
//! `--deadline`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::Cli;
use crate::error::{Error, Result};
use crate::logging::{self, LogFormat};
use crate::modes::{self, Context};
use crate::oci::platform::Platform;
use crate::oci::reference::Target;
use crate::registry::{credentials, retry::RetryPolicy, ClientOptions, RegistryClient};
use crate::settings::{
    non_empty, parse_annotations, parse_platforms, ArtifactSettings, AssembleSettings,
    CopySettings, ImageSettings, PullSettings, PushSettings,
};
use crate::signals;
use crate::store::cache::Cache;
use crate::store::remote::Remote;

/// What the flags describe beyond each mode's own settings.
impl Cli {
    /// The registry client these flags describe, with the cache in front.
    pub fn remote(&self) -> Result<Remote> {
        let cache = non_empty(&self.registry.cache_dir)
            .map(|dir| Cache::open(&dir, self.registry.offline))
            .transpose()?;
        Ok(Remote::new(self.registry_client()?, cache))
    }

    /// The registry client these flags describe.
    fn registry_client(&self) -> Result<RegistryClient> {
        let secret_path = non_empty(&self.registry.secret_path);
        if let Some(p) = &secret_path {
            credentials::validate_secret_path(p)?;
        }
        RegistryClient::new(ClientOptions {
            insecure: self.registry.insecure,
            ca_file: non_empty(&self.registry.ca_file),
            credential_files: credentials::config_files(secret_path.as_deref()),
            read_timeout: Some(Duration::from_secs(self.registry.timeout)),
            min_rate: self.registry.min_rate,
            max_transfers: usize::try_from(self.registry.max_transfers).unwrap_or(1),
            retry: RetryPolicy {
                max_attempts: self.registry.retries,
                ..RetryPolicy::default()
            },
        })
    }

    /// True when the flags are Shipwright's image-processing ones (an image,
    /// a directory to push, changes or a scan), so that a missing
    /// `--image` gets Shipwright's exit code.
    fn names_image_processing(&self) -> bool {
        let args = &self.push_image_args;
        self.image.is_some()
            || self.mode.push.is_some()
            || !self.annotation.is_empty()
            || !args.label.is_empty()
            || args.image_timestamp.is_some()
            || args.image_timestamp_file.is_some()
            || args.vuln_settings.is_some()
    }

    /// What happens to an image pushed or processed; `shipwright_size`
    /// for Shipwright's forms.
    fn image_settings(
        &self,
        annotations: &BTreeMap<String, String>,
        shipwright_size: bool,
    ) -> Result<ImageSettings> {
        ImageSettings::new(
            &self.push_image_args,
            annotations,
            shipwright_size,
            credentials::config_files(non_empty(&self.registry.secret_path).as_deref()),
            self.registry.insecure,
        )
    }

    /// Result file paths, with empty values dropped.
    pub fn result_files(&self) -> modes::ResultFiles {
        modes::ResultFiles {
            digest: non_empty(&self.results.result_file_image_digest),
            size: non_empty(&self.results.result_file_image_size),
            reference: non_empty(&self.results.result_file_image_ref),
            source_timestamp: non_empty(&self.results.result_file_source_timestamp),
            platform_results: non_empty(&self.results.result_file_platform_results),
            vulnerabilities: non_empty(&self.results.result_file_image_vulnerabilities),
            dotenv: non_empty(&self.results.dotenv_file),
            referrers: non_empty(&self.results.result_file_referrers),
        }
    }
}

/// Parses the command line, sets up logging and runs the selected mode.
pub fn run(cli: Cli) -> Result<()> {
    let log_format = LogFormat::from(cli.output.log_format);
    logging::init(log_format, cli.output.verbose, cli.output.quiet);
    let subject = cli.artifact.subject.as_deref().filter(|s| !s.is_empty());
    // Shipwright's image-processing step: `--push DIR`, or no mode at all.
    let processing = cli.mode.push.is_some() || cli.mode.is_empty();
    let target =
        match cli.image.as_deref().filter(|i| !i.is_empty()) {
            Some(image) => Target::parse(image)?,
            None if cli.mode.copy.is_some() => Target::parse("oci:.")?,
            None if cli.mode.push_artifact && subject.is_some() => {
                Target::parse(subject.unwrap_or_default())?
            }
            None if processing && cli.names_image_processing() => return Err(Error::ImageMissing(
                "the 'image' argument must not be empty: give --image REF, the image to process"
                    .to_string(),
            )),
            None if cli.mode.is_empty() => return Err(Error::Usage(
                "no mode given; see --help (or --image REF to process an image as Shipwright does)"
                    .to_string(),
            )),
            None => {
                return Err(Error::Usage(
                    "--image is required for this mode: give an image reference (registry/repository:tag) or oci:PATH".to_string(),
                ))
            }
        };
    let image_given = cli.image.as_deref().is_some_and(|i| !i.is_empty());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let ctx = Context {
        remote: cli.remote()?,
        progress: !cli.output.quiet && log_format == LogFormat::Text,
        results: cli.result_files(),
        started: std::time::Instant::now(),
    };
    let annotations = parse_annotations(&cli.annotation)?;
    let platforms = parse_platforms(&cli.platform)?;
    let platform = match platforms.as_slice() {
        [] => Platform::host(),
        [one] => one.clone(),
        _ if cli.mode.copy.is_some() => Platform::host(),
        _ => {
            return Err(Error::Usage(
                "--platform is given more than once; only --copy takes several".to_string(),
            ))
        }
    };
    let mode = async {
        if let Some(dir) = &cli.mode.push_source_bundle {
            let push = PushSettings::new(&cli.push)?;
            modes::push_source_bundle::run(&ctx, dir, &target, &push, &annotations).await
        } else if let Some(dir) = cli
            .mode
            .pull_source_bundle
            .as_ref()
            .or(cli.mode.target.as_ref())
        {
            let pull = PullSettings::for_bundle(&cli.pull);
            modes::pull_source_bundle::run(&ctx, dir, &target, &pull, &platform).await
        } else if cli.mode.assemble_index {
            let assemble = AssembleSettings::new(&cli.assemble)?;
            modes::assemble_index::run(&ctx, &target, &assemble, &annotations).await
        } else if let Some([src, dst]) = cli.mode.copy.as_deref() {
            let copy = CopySettings {
                platforms: platforms.clone(),
                drop_attestations: cli.assemble.drop_attestations,
                referrers: cli.artifact.referrers,
            };
            modes::copy::run(&ctx, &Target::parse(src)?, &Target::parse(dst)?, &copy).await
        } else if cli.mode.discover {
            let artifact_type = cli
                .artifact
                .artifact_type
                .as_deref()
                .filter(|t| !t.is_empty());
            modes::discover::run(&ctx, &target, artifact_type).await
        } else if let Some(dir) = cli.mode.push_image.as_ref().or(cli.mode.push.as_ref()) {
            let image = cli.image_settings(&annotations, cli.mode.push.is_some())?;
            modes::push_image::run(&ctx, dir, &target, &image).await
        } else if processing {
            let image = cli.image_settings(&annotations, true)?;
            modes::process_image::run(&ctx, &target, &image).await
        } else if cli.mode.push_artifact {
            let artifact = ArtifactSettings::new(&cli.artifact, image_given)?;
            let push = PushSettings::new(&cli.push)?;
            modes::push_artifact::run(&ctx, &target, &artifact, &push, &annotations).await
        } else if let Some(dir) = &cli.mode.pull_artifact {
            let artifact = ArtifactSettings::new(&cli.artifact, image_given)?;
            let pull = PullSettings::new(&cli.pull);
            modes::pull_artifact::run(&ctx, dir, &target, &artifact, &pull, &platform).await
        } else {
            Err(Error::Usage("no mode given; see --help".to_string()))
        }
    };
    // A push gets time to cancel its upload session; everything else is
    // dropped at once, which removes what it staged.
    let grace = if cli.mode.push_source_bundle.is_some() {
        signals::PUSH_GRACE
    } else {
        Duration::ZERO
    };
    let mode = crate::deadline::within(cli.registry.deadline, mode);
    let result = runtime.block_on(signals::run_until_stopped(mode, grace));
    match &result {
        // Threads still packing or walking are not waited for.
        Err(Error::Stopped(_)) => runtime.shutdown_timeout(Duration::from_millis(100)),
        // Past a deadline, they get a moment to see that the run is over.
        Err(_) => runtime.shutdown_timeout(crate::deadline::GRACE),
        Ok(_) => {}
    }
    result
}
