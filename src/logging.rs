//! Logs on stderr, as text or JSON lines; stdout is left to results that a
//! user asked to see (`--show-listing`). Every record passes through
//! [`crate::redact`] on its way out, whatever it quotes.

use tracing_subscriber::{fmt, EnvFilter};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Sets up logging: `verbosity` 0 is info, each `-v` adds a level, `quiet`
/// keeps warnings and errors only. `OCISTEP_LOG` (env-filter syntax) wins.
pub fn init(format: LogFormat, verbosity: u8, quiet: bool) {
    let level = match (quiet, verbosity) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("OCISTEP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,ocistep={level}")));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::redact::RedactingWriter(std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .fmt_fields(message_only())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .with_level(true)
            .try_init(),
    };
}

/// Text lines show a record's message only; its other fields (the
/// outcome of a run, the figures of a progress line) are for JSON.
fn message_only() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            Ok(())
        }
    })
}
