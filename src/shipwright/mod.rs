//! What it takes to stand in for Shipwright's `bundle` and
//! `image-processing` binaries: their boolean syntax, their environment,
//! and the image size their result files hold. The flags themselves live in
//! the CLI; this module holds the rules that turn Shipwright's values into
//! ocistep's.

pub mod size;

/// Parses a boolean as Shipwright's flags do (Go's `strconv.ParseBool`):
/// `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_bool(value: &str) -> std::result::Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!(
            "{other:?} is not a boolean; use true or false (also 1/0, t/f, TRUE/FALSE)"
        )),
    }
}

/// The environment variable with which Shipwright turns the bundle
/// listing on or off.
pub const SHOW_LISTING_ENV: &str = "BUNDLE_SHOW_LISTING";

/// Whether a bundle pull lists what it extracted: `BUNDLE_SHOW_LISTING`,
/// when set, decides over `--show-listing` (a value that is not a boolean
/// counts as false), as in Shipwright's bundle puller.
pub fn show_listing(flag: bool, env: Option<&str>) -> bool {
    match env {
        Some(value) => parse_bool(value).unwrap_or(false),
        None => flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_go_parses_them() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", " true"] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_environment_decides_over_the_flag() {
        assert!(show_listing(true, None));
        assert!(!show_listing(false, None));
        assert!(show_listing(false, Some("true")));
        assert!(!show_listing(true, Some("false")));
        assert!(!show_listing(true, Some("maybe")));
    }
}
