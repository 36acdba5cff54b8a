//! The platform results of an index: each image's platform, digest, size
//! and pinned reference (and scan findings, when given), as JSON.
//! Attestation manifests are not platforms and are left out.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::index::IndexChild;
use crate::oci::platform::Platform;
use crate::scan::Vulnerability;
use crate::store::Store;

/// One line of the platform results file.
#[derive(Serialize)]
struct PlatformResult<'a> {
    platform: String,
    digest: String,
    size: u64,
    reference: String,
    /// What a scan found, when `--platform-vulnerabilities` gave a result
    /// for the platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    vulnerabilities: Option<&'a [Vulnerability]>,
}

/// The platform results of `children` as stored in `dst`.
pub fn platform_results(
    dst: &Store,
    children: &[IndexChild],
    vulnerabilities: &[(Platform, Vec<Vulnerability>)],
) -> Result<String> {
    let lines = children
        .iter()
        .filter(|c| !c.is_attestation() && !c.platform.is_unknown())
        .map(|c| {
            Ok(PlatformResult {
                platform: c.platform.short(),
                digest: c.descriptor.digest.clone(),
                size: c.descriptor.size,
                reference: dst.pinned(&c.descriptor.parsed_digest()?),
                vulnerabilities: vulnerabilities
                    .iter()
                    .find(|(p, _)| p.same_as(&c.platform))
                    .map(|(_, found)| found.as_slice()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    serde_json::to_string(&lines).map_err(|e| Error::Internal(e.to_string()))
}
