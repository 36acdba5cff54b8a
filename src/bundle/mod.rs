//! Source bundles: the bundle format (a deterministic tar layer with its
//! config and manifest), the fingerprint of a packed tree, and the packing
//! thread's end of a layer uploaded while it is packed.

pub mod fingerprint;
pub mod format;
pub mod stream_feed;
