//! Image references: `Target::parse` on any text never panics, and what it
//! accepts prints as a reference that parses back to the same value (result
//! files and logs hand these strings to the next step).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ocistep::oci::digest::Digest;
use ocistep::oci::reference::{is_valid_tag, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = is_valid_tag(s);
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s);
        assert_eq!(d.hex().len(), 64);
    }
    let Ok(target) = Target::parse(s) else {
        return;
    };
    let _ = target.tag();
    if let Target::Registry(r) = &target {
        let _ = (r.manifest_reference(), r.name(), r.api_host());
        let _ = r.with_tag_suffix("-linux-arm64").to_string();
        if let Some(d) = &r.digest {
            let pinned = r.with_digest(d);
            let again = Target::parse(&pinned)
                .unwrap_or_else(|e| panic!("pinned {pinned:?} (from {s:?}) does not parse: {e}"));
            assert!(matches!(again, Target::Registry(_)), "{pinned:?}");
        }
    }
    let shown = target.to_string();
    let again = Target::parse(&shown)
        .unwrap_or_else(|e| panic!("{shown:?} (printed from {s:?}) does not parse: {e}"));
    assert_eq!(again, target, "{s:?} printed as {shown:?}");
});
