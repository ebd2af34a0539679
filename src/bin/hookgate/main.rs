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
//! working directory (never a parent directory's) or the file `--env-file` names; `serve` logs
//! where each came from. Secrets never come from flags: `ELEVENLABS_WEBHOOK_SECRET`
//! (comma-separated for rotation) or a `--secret-file`.
//!
//! Sizes and durations take units (`64MiB`, `10MB`, `250ms`, `30s`, `1h30m`) or plain numbers
//! in the flag's own unit (bytes, seconds), and are printed in human units (`3m 12s`); a bare
//! `--listen` port means loopback (see `units`).

mod bench;
mod cli;
mod json_fields;
mod secrets;
mod send;
mod serve;
mod sign;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::cli::{Cli, Command, EnvFile};

fn main() -> ExitCode {
    // Which settings file to read is itself a flag: a first parse finds it (and answers --help,
    // --version and usage errors); the file is loaded (before any thread starts); the second
    // parse sees the variables it set.
    let env_file = match Cli::try_parse() {
        Ok(cli) => cli.env_file,
        Err(error) => error.exit(),
    };
    let loaded = match EnvFile::load(env_file.as_deref()) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("hookgate: {message}");
            return ExitCode::FAILURE;
        }
    };
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .unwrap_or_else(|error| error.format(&mut Cli::command()).exit());
    cli::init_logging(cli.log_format, cli.verbose, cli.quiet);
    if matches!(cli.command, Command::Serve(_)) {
        loaded.log_sources(&matches);
    }
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
