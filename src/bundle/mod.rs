//! Source bundles: the bundle format (a deterministic tar layer with its
//! config and manifest), the fingerprint of a packed tree, and the push:
//! walking, packing while uploading, and the packing thread's end of that
//! stream.

pub mod fingerprint;
pub mod format;
mod pack_streaming;
pub(crate) mod push;
pub mod stream_feed;
