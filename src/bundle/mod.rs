//! Source bundles: the bundle format (a deterministic tar layer with its
//! config and manifest) and the fingerprint of a packed tree.

pub mod fingerprint;
pub mod format;
