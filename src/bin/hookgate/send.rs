//! `hookgate send` (in progress).

use std::process::ExitCode;

use crate::cli::SendArgs;

pub(crate) async fn run(_args: SendArgs) -> ExitCode {
    eprintln!("hookgate send: not available yet");
    ExitCode::FAILURE
}
