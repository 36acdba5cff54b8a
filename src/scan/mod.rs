//! Vulnerability scanning as Shipwright's image-processing step does it:
//! `trivy` from `PATH`, run with Shipwright's arguments, its JSON report
//! reduced to the `ID:S,…` result Shipwright's controller reads.

pub mod report;
pub mod settings;
pub mod trivy;

pub use report::Vulnerability;
pub use settings::ScanSettings;
