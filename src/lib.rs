//! ocistep: move source bundles and images through OCI registries for native
//! multi-architecture builds.
//!
//! The binary in `main.rs` is a thin wrapper around [`run::run`]. The public
//! modules are the core the integration tests and fuzz targets exercise
//! directly (OCI types, archives, compression, stores, bundle format); the
//! modes, the registry protocol and the formats' push and pull stay inside.

#![deny(missing_docs)]

pub mod archive;
mod artifact;
mod assemble;
pub mod bundle;
pub mod cli;
pub mod compress;
mod deadline;
pub mod error;
mod image;
mod logging;
mod modes;
pub mod oci;
mod progress;
mod read_into;
pub mod redact;
mod referrers;
mod registry;
mod results;
pub mod run;
mod scan;
mod settings;
mod shared_file;
mod shipwright;
pub mod signals;
pub mod store;
mod timestamp;

pub use error::{Error, ExitCode, Result};
