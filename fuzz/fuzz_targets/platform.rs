//! Platforms: `Platform::parse` on any text never panics; normalising is
//! idempotent; a parsed platform prints (`short`) as text that parses back
//! to it; `compatible` starts with the platform itself; `select` picks an
//! item of the list or none, also from platforms read out of index JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ocistep::oci::platform::Platform;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the platform asked for; the other lines are the
    // platforms on offer, as `os/arch[/variant]` text or index JSON.
    let mut lines = text.lines();
    let wanted = lines.next().unwrap_or_default();
    let offered: Vec<Platform> = lines
        .filter_map(|line| {
            Platform::parse(line)
                .ok()
                .or_else(|| serde_json::from_str::<Platform>(line).ok())
        })
        .collect();
    for p in &offered {
        let n = p.clone().normalized();
        assert_eq!(n.clone().normalized(), n, "normalising {p:?} twice");
        assert!(p.same_as(&n));
        let _ = (n.short(), n.dashed(), n.to_string(), n.is_unknown());
    }
    let Ok(want) = Platform::parse(wanted) else {
        return;
    };
    assert_eq!(want.clone().normalized(), want, "{wanted:?}");
    let short = want.short();
    let again = Platform::parse(&short)
        .unwrap_or_else(|e| panic!("{short:?} (from {wanted:?}) does not parse: {e}"));
    assert!(again.same_as(&want), "{wanted:?} -> {short:?} -> {again:?}");
    let _ = want.dashed();
    let compatible = want.compatible();
    assert_eq!(compatible.first(), Some(&want), "{wanted:?}");
    if let Some(pick) = want.select(&offered, |p| Some(p.clone())) {
        assert!(offered.contains(pick));
        assert!(compatible.iter().any(|c| c.same_as(pick)));
    }
    let _ = want.select(&offered, |_| None::<Platform>);
});
