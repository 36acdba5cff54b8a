//! Assembling an image index from per-platform images: the entries given,
//! their resolution into children, the checks the set must pass, editing
//! an existing index, choosing platforms from one, and the platform results.

pub mod append;
pub mod checks;
pub mod entries;
pub mod report;
pub mod resolve;
pub mod select;
