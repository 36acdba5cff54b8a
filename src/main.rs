//! The ocistep binary: parse flags, run, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = ocistep::cli::Cli::parse();
    let json = cli.output.log_format == ocistep::logging::LogFormat::Json;
    if let Err(e) = ocistep::cli::run(cli) {
        if json {
            tracing::error!(exit_code = e.exit_code() as i32, "{e}");
        } else {
            eprintln!("error: {e}");
        }
        std::process::exit(e.exit_code() as i32);
    }
}
