//! `hookgate sign` and `hookgate verify` (in progress).

use std::process::ExitCode;

use crate::cli::{SignArgs, VerifyArgs};

pub(crate) fn sign(_args: SignArgs) -> ExitCode {
    eprintln!("hookgate sign: not available yet");
    ExitCode::FAILURE
}

pub(crate) fn verify(_args: VerifyArgs) -> ExitCode {
    eprintln!("hookgate verify: not available yet");
    ExitCode::FAILURE
}
