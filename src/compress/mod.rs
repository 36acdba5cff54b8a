//! Compression of tar layers: a parallel gzip writer and reader (one valid
//! gzip stream, split into members that decompress on several threads),
//! the thread pool they share, and the decoders a pull reads layers with.

pub mod decompress;
pub mod gzip_member;
pub mod job_threads;
pub mod pargunzip;
pub mod pargz;

/// Compression of a tar layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar (read on pull; never chosen for a push).
    None,
    /// tar+gzip, read by every runtime (Tekton bundles and older runtimes need it).
    #[default]
    Gzip,
    /// tar+zstd, for registries and runtimes that accept it.
    Zstd,
}

impl Compression {
    /// The name used in flags and messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The valid compression levels, fastest first.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::None => 0..=0,
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=19,
        }
    }

    /// The level used when none is given.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }

    /// `level`, or the default one, checked against [`levels`](Self::levels);
    /// out of range is a usage error that names the valid range.
    pub fn level(self, level: Option<u32>) -> crate::error::Result<u32> {
        let level = level.unwrap_or_else(|| self.default_level());
        let valid = self.levels();
        if valid.contains(&level) {
            Ok(level)
        } else {
            Err(crate::error::Error::Usage(format!(
                "compression level {level} is out of range for {}: use {} (fastest) to {} (smallest)",
                self.name(),
                valid.start(),
                valid.end()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_depend_on_the_algorithm() {
        assert_eq!(Compression::Gzip.level(None).unwrap(), 6);
        assert_eq!(Compression::Zstd.level(None).unwrap(), 3);
        assert_eq!(Compression::Zstd.level(Some(19)).unwrap(), 19);
        assert_eq!(Compression::Gzip.level(Some(1)).unwrap(), 1);
        for (c, bad) in [
            (Compression::Gzip, 0),
            (Compression::Gzip, 10),
            (Compression::Zstd, 0),
            (Compression::Zstd, 20),
        ] {
            match c.level(Some(bad)) {
                Err(crate::error::Error::Usage(msg)) => {
                    assert!(msg.contains(c.name()), "{msg}");
                    let range = format!("use 1 (fastest) to {}", c.levels().end());
                    assert!(msg.contains(&range), "{msg}");
                }
                other => panic!("{c:?} {bad}: {other:?}"),
            }
        }
    }
}
