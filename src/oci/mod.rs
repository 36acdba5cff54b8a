//! The OCI types every other part builds on: digests, manifests and
//! indexes, platforms, and image references.

pub mod attestation;
pub mod digest;
pub mod index;
pub mod manifest;
pub mod platform;
pub mod reference;
