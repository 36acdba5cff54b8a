//! The ocistep binary: parse flags, run, map errors to exit codes.

use clap::Parser;

fn main() {
    few_malloc_arenas();
    // Before any other thread starts, so that all of them leave the stop
    // signals to the thread that waits for them.
    if let Err(e) = ocistep::signals::watch() {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code() as i32);
    }
    let cli = ocistep::cli::Cli::parse();
    let json = cli.output.log_format == ocistep::cli::LogFormatArg::Json;
    if let Err(e) = ocistep::run::run(cli) {
        let message = e.to_string();
        let message = ocistep::redact::redact(&message);
        if json {
            tracing::error!(exit_code = e.exit_code() as i32, "{message}");
        } else {
            eprintln!("error: {message}");
        }
        std::process::exit(e.exit_code() as i32);
    }
}

/// glibc gives every thread that allocates an arena of its own (up to 8 per
/// core) and keeps freed memory there. Buffers handed from thread to thread
/// (downloads, compressed blocks, inflated members, file contents on their
/// way to the writers) then leave several MiB behind in each arena. A single
/// arena, though, makes the threads that walk a tree (many small
/// allocations each) wait on its lock. Four arenas, one per walking thread,
/// keep the walk fast and the memory of a large pull small (see
/// docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn few_malloc_arenas() {
    // SAFETY: mallopt only changes allocator settings, and runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// The most malloc arenas glibc may create: see [`few_malloc_arenas`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: i32 = 4;

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn few_malloc_arenas() {}
