//! The error type of ocistep and the exit code each kind of failure maps to.
//!
//! Every error names what failed and, where possible, what the user can do
//! about it. Errors never carry credentials: registry messages are reduced to
//! their status line and error codes before they are wrapped here.

use std::path::PathBuf;

use crate::signals::Signal;

/// Process exit codes, documented in the README. Each kind of failure a
/// pipeline may want to react to has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An unexpected failure (a bug, or an I/O error with no better class).
    Internal = 1,
    /// Bad flags or a malformed reference (clap uses 2 as well).
    Usage = 2,
    /// The registry refused the credentials (401/403) or none were found.
    Auth = 3,
    /// Repository, tag, manifest or blob does not exist.
    NotFound = 4,
    /// Content did not match its digest or size.
    DigestMismatch = 5,
    /// An archive entry was refused (path escape, device node, limits).
    UnsafeArchive = 6,
    /// No manifest for the requested platform.
    PlatformNotFound = 7,
    /// The registry could not be reached, or kept failing after retries.
    Unreachable = 8,
    /// The local input cannot be packed (escaping symlink, unreadable file).
    InvalidInput = 9,
    /// The target directory holds entries the pull would overwrite.
    TargetConflict = 10,
    /// The registry answered something ocistep cannot use (bad manifest,
    /// unexpected media type, protocol error).
    BadContent = 11,
    /// Some of several inputs (the children of an index) are missing or
    /// unreadable; the message lists each one.
    MissingInputs = 12,
    /// A vulnerability scan found what `failOnFinding` forbids (Shipwright's
    /// code for it).
    Vulnerable = 22,
    /// The image-processing form was given no (or an empty) `--image`
    /// (Shipwright's code for it).
    ImageMissing = 100,
    /// Stopped by SIGHUP (128 + 1).
    SigHup = 129,
    /// Stopped by SIGINT (128 + 2).
    SigInt = 130,
    /// Stopped by SIGTERM (128 + 15).
    SigTerm = 143,
}

/// Everything that can go wrong in ocistep.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or values.
    #[error("{0}")]
    Usage(String),
    /// Credentials missing or rejected.
    #[error("{0}")]
    Auth(String),
    /// Something named by the user does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Content failed verification.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was verified (manifest, blob and where it came from).
        what: String,
        /// The digest or size that was asked for.
        expected: String,
        /// What the content really hashed to.
        actual: String,
    },
    /// An archive entry was refused.
    #[error("unsafe archive: {0}")]
    UnsafeArchive(String),
    /// No platform matched.
    #[error("{0}")]
    PlatformNotFound(String),
    /// Network-level failure, or retries exhausted.
    #[error("{0}")]
    Unreachable(String),
    /// A transfer cut short after it started (body reset or truncated);
    /// worth starting over, unlike an [`Error::Unreachable`] whose retries
    /// are already spent.
    #[error("{0}")]
    Interrupted(String),
    /// A source tree that cannot be packed.
    #[error("{0}")]
    InvalidInput(String),
    /// The pull target has conflicting entries.
    #[error("{0}")]
    TargetConflict(String),
    /// Unusable registry or layout content.
    #[error("{0}")]
    BadContent(String),
    /// Several inputs are missing or unreadable.
    #[error("{0}")]
    MissingInputs(String),
    /// A vulnerability scan found what the settings forbid.
    #[error("{0}")]
    Vulnerable(String),
    /// No image to process was named.
    #[error("{0}")]
    ImageMissing(String),
    /// A local I/O error, with the path it concerns.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A stop signal ended the run before it finished (what it had
    /// started was cleaned up).
    #[error("stopped by {}", .0.name())]
    Stopped(crate::signals::Signal),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Auth(_) => ExitCode::Auth,
            Error::NotFound(_) => ExitCode::NotFound,
            Error::DigestMismatch { .. } => ExitCode::DigestMismatch,
            Error::UnsafeArchive(_) => ExitCode::UnsafeArchive,
            Error::PlatformNotFound(_) => ExitCode::PlatformNotFound,
            Error::Unreachable(_) | Error::Interrupted(_) => ExitCode::Unreachable,
            Error::InvalidInput(_) => ExitCode::InvalidInput,
            Error::TargetConflict(_) => ExitCode::TargetConflict,
            Error::BadContent(_) => ExitCode::BadContent,
            Error::MissingInputs(_) => ExitCode::MissingInputs,
            Error::Vulnerable(_) => ExitCode::Vulnerable,
            Error::ImageMissing(_) => ExitCode::ImageMissing,
            Error::Stopped(signal) => match signal {
                Signal::Term => ExitCode::SigTerm,
                Signal::Int => ExitCode::SigInt,
                Signal::Hup => ExitCode::SigHup,
            },
            Error::Io { .. } | Error::Internal(_) => ExitCode::Internal,
        }
    }

    /// The error with `what` (the input it concerns) put before its
    /// message, for errors that do not name their input themselves (a blob
    /// not found, a registry unreachable).
    pub fn in_context(self, what: &str) -> Self {
        match self {
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::Unreachable(m) => Error::Unreachable(format!("{what}: {m}")),
            other => other,
        }
    }

    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results in ocistep.
pub type Result<T, E = Error> = std::result::Result<T, E>;
