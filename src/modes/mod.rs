//! One file per mode; each composes library calls and writes its results.

pub mod assemble_index;
pub mod copy;
pub mod pull_artifact;
pub mod pull_source_bundle;
pub mod push_artifact;
pub mod push_image;
pub mod push_source_bundle;

use std::sync::Arc;

use crate::registry::RegistryClient;

/// What every mode shares in one run.
pub struct Context {
    /// The registry client (unused for `oci:` layouts).
    pub client: Arc<RegistryClient>,
    /// Show progress bars (only ever on a terminal).
    pub progress: bool,
    /// Where to write results.
    pub results: ResultFiles,
}

pub use crate::results::ResultFiles;
