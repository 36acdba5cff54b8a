//! ocistep: move source bundles and images through OCI registries for native
//! multi-architecture builds.
//!
//! The binary in `main.rs` is a thin wrapper around [`cli::run`]; everything
//! else lives in this library so the tests use the same code.

#![deny(missing_docs)]

pub mod archive;
pub mod artifact;
pub mod bundle;
pub mod cli;
pub mod compress;
pub mod deadline;
pub mod error;
pub mod image;
pub mod logging;
pub mod modes;
pub mod oci;
pub mod progress;
pub mod read_into;
pub mod redact;
pub mod registry;
pub mod results;
pub mod settings;
pub mod shared_file;
pub mod signals;
pub mod store;
pub mod timestamp;

pub use error::{Error, ExitCode, Result};
