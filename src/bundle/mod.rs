//! Source bundles: packing a directory into one deterministic tar layer and
//! extracting such a layer safely.

pub mod extract;
pub mod fingerprint;
pub mod format;
pub mod install;
pub mod pack;
pub mod pargz;
pub mod walk;

/// Compression of a tar layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (the default, what every runtime understands).
    Gzip,
}
