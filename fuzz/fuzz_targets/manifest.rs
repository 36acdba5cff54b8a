//! Manifests and indexes as a registry or a layout may serve them:
//! `FetchedManifest::new` + `image_manifest`, `index::index_children`,
//! `index::child_platform` and `bundle::format::inspect` never panic; a
//! fetched manifest always has a media type; only a JSON object is accepted
//! as a manifest; and a manifest that parses serialises back to the same
//! value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ocistep::bundle::format;
use ocistep::oci::manifest::{
    FetchedManifest, ImageManifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use ocistep::oci::index;

/// The `Content-Type` the registry answered with (first byte of the input).
fn media_type(selector: u8) -> Option<String> {
    let known = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        "application/json",
        "text/plain",
        "",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ];
    match selector as usize % (known.len() + 1) {
        0 => None,
        i => Some(known[i - 1].to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let fetched = FetchedManifest::new(bytes.to_vec(), media_type(selector));
    assert!(!fetched.media_type.is_empty());
    let descriptor = fetched.descriptor();
    assert_eq!(descriptor.size, bytes.len() as u64);
    assert_eq!(descriptor.parsed_digest().unwrap(), fetched.digest);

    if let Ok(children) = index::index_children(&fetched) {
        for child in &children {
            let _ = child.parsed_digest();
            if let Some(p) = index::child_platform(child) {
                let _ = (p.short(), p.compatible());
            }
        }
    }

    match fetched.image_manifest() {
        Ok(manifest) => {
            assert!(!fetched.is_index());
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            assert_eq!(first, Some(&b'{'), "a manifest that is not a JSON object");
            let bytes = manifest.to_bytes();
            let back: ImageManifest = serde_json::from_slice(&bytes).expect("re-parses");
            assert_eq!(back, manifest);
            for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let _ = d.parsed_digest();
            }
            if let Ok(info) = format::inspect(&manifest, "fuzzed manifest") {
                assert_eq!(manifest.layers.len(), 1);
                assert!(info.layer.parsed_digest().is_ok());
            }
        }
        Err(e) => {
            assert_eq!(e.exit_code(), ocistep::ExitCode::BadContent, "{e}");
        }
    }
});
