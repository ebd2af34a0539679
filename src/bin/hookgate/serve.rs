//! `hookgate serve` (in progress).

use std::process::ExitCode;

use crate::cli::ServeArgs;

pub(crate) async fn run(_args: ServeArgs) -> ExitCode {
    eprintln!("hookgate serve: not available yet");
    ExitCode::FAILURE
}
