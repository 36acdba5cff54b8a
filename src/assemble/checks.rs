//! What a set of resolved children must satisfy before an index is built
//! from them: one image per platform, and the platforms required.

use std::collections::BTreeMap;

use crate::assemble::resolve::Resolved;
use crate::error::{Error, Result};
use crate::oci::index::IndexChild;
use crate::oci::platform::Platform;

/// Refuses two children for one platform (a client could not choose).
pub fn check_duplicates(resolved: &[Resolved]) -> Result<()> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for r in resolved
        .iter()
        .filter(|r| !r.is_attestation() && !r.child.platform.is_unknown())
    {
        let key = r.child.platform.to_string();
        if let Some(first) = seen.insert(key.clone(), &r.label) {
            return Err(Error::Usage(format!(
                "two images for {key}: {first} and {}; give one image per platform",
                r.label
            )));
        }
    }
    Ok(())
}

/// `--require-platforms`: every platform listed must be among the images
/// of the index (attestations are not platforms).
pub fn check_required(children: &[IndexChild], required: &str) -> Result<()> {
    let have: Vec<&Platform> = children
        .iter()
        .filter(|c| !c.is_attestation() && !c.platform.is_unknown())
        .map(|c| &c.platform)
        .collect();
    let mut missing = Vec::new();
    for want in required
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let want = Platform::parse(want)?;
        if !have.iter().any(|p| p.same_as(&want)) {
            missing.push(want.short());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let present: Vec<String> = have.iter().map(|p| p.short()).collect();
    Err(Error::PlatformNotFound(format!(
        "--require-platforms: missing {}; the index would have {}",
        missing.join(", "),
        present.join(", ")
    )))
}
