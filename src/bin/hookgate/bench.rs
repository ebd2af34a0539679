//! `hookgate bench` (in progress).

use std::process::ExitCode;

use crate::cli::BenchArgs;

pub(crate) fn run(_args: BenchArgs) -> ExitCode {
    eprintln!("hookgate bench: not available yet");
    ExitCode::FAILURE
}
