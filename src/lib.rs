//! ocistep: move source bundles and images through OCI registries for native
//! multi-architecture builds.
//!
//! The binary in `main.rs` is a thin wrapper around [`cli::run`]; everything
//! else lives in this library so the tests use the same code.

pub mod artifact;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod deadline;
pub mod digest;
pub mod error;
pub mod image;
pub mod index;
pub mod layout;
pub mod logging;
pub mod manifest;
pub mod modes;
pub mod platform;
pub mod progress;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod results;
pub mod shared_file;
pub mod signals;
pub mod store;
pub mod timestamp;
pub mod transfer;

pub use error::{Error, ExitCode, Result};
