//! Images a build wrote to disk, pushed to a registry or a layout: OCI
//! image layouts, OCI archives and docker archives (`docker save`, kaniko
//! `--tar-path`), optionally with labels, annotations and one time (config,
//! history, every file in the layers) applied first.

pub mod archive;
pub mod docker;
pub mod layer_time;
pub mod mutate;
pub mod push;
pub mod source;
