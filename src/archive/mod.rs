//! Trees and tar archives on disk: walking a source tree with its ignore
//! rules, packing it into a tar layer, extracting a layer safely into a
//! staging directory and moving it into place, all beneath open directory
//! handles.

pub mod beneath;
pub mod extract;
pub mod ignore_rules;
pub mod pack;
pub mod retime;
pub mod secrets;
pub mod staging;
pub mod walk;
