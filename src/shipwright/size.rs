//! The image size Shipwright's image-processing step reports: the config
//! and the layers of an image (its compressed size), and nothing for an
//! index.

use crate::error::Result;
use crate::oci::manifest::FetchedManifest;

/// The size Shipwright writes for `manifest`: `None` for an index, which
/// gets no size file.
pub fn image_size(manifest: &FetchedManifest) -> Result<Option<u64>> {
    if manifest.is_index() {
        return Ok(None);
    }
    let image = manifest.image_manifest()?;
    Ok(Some(
        image.config.size + image.layers.iter().map(|l| l.size).sum::<u64>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{OCI_INDEX, OCI_MANIFEST};

    #[test]
    fn config_plus_layers_and_none_for_an_index() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"c","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":7},
            "layers":[{"mediaType":"l","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},
                      {"mediaType":"l","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":20}]}"#;
        let m = FetchedManifest::new(image.to_vec(), Some(OCI_MANIFEST.to_string()));
        assert_eq!(image_size(&m).unwrap(), Some(127));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let i = FetchedManifest::new(index.to_vec(), Some(OCI_INDEX.to_string()));
        assert_eq!(image_size(&i).unwrap(), None);
    }
}
