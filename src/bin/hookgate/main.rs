//! `hookgate`: the gateway in front of any webhook handler, and the tools to test one.
//!
//! ```text
//! hookgate serve     receive ElevenLabs deliveries, verify them, hand them to a sink or upstream
//! hookgate send      play ElevenLabs: sign a sample transcript and POST it, retrying as it does
//! hookgate sign      print the ElevenLabs-Signature value for the body on stdin
//! hookgate verify    check a signature header against the body on stdin, and say why it fails
//! hookgate bench     measure what verification costs on this machine
//! ```
//!
//! Settings come from flags, then the environment (`HOOKGATE_*`), then a `.env` file in the
//! working directory. Secrets never come from flags: `ELEVENLABS_WEBHOOK_SECRET` (comma-separated
//! for rotation) or a `--secret-file`.

mod bench;
mod cli;
mod metrics;
mod secrets;
mod send;
mod serve;
mod sign;
mod sink;
mod stack;
mod tls;
mod upstream;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            eprintln!("hookgate: ignoring .env: {error}");
        }
    }
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookgate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Sign(args) => sign::sign(args),
            Command::Verify(args) => sign::verify(args),
            Command::Bench(args) => bench::run(args),
        }
    })
}
