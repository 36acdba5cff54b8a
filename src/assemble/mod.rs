//! Assembling an image index from per-platform images: the entries given,
//! their resolution into children, and the checks the set must pass.

pub mod checks;
pub mod entries;
pub mod resolve;
