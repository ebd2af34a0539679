//! Helpers shared by the `hookgate` binary's end-to-end tests, and Redis servers for the Redis
//! stores' tests (`redis`, feature `redis`).
#![allow(dead_code, unreachable_pub)] // each test file uses a part

use std::{
    path::PathBuf,
    process::Output,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The secret the tests configure, through the environment only.
pub const SECRET: &str = "cli-test-secret-5f2c9a";

/// The current Unix time in whole seconds, as signatures carry it.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An empty working directory of its own (no `.env`, no development secret), under cargo's
/// scratch directory for integration tests.
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "hookgate-cli-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // A process id comes back: what an earlier test process of the same id left here (a
    // ready file naming a gateway long gone) must not be read as this one's.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `hookgate` with a clean environment holding only `secrets` (comma-separated), run in a
/// scratch directory.
#[cfg(feature = "cli")]
pub fn hookgate(secrets: Option<&str>) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command.env_clear().current_dir(scratch_dir());
    if let Some(secrets) = secrets {
        command.env("ELEVENLABS_WEBHOOK_SECRET", secrets);
    }
    command
}

/// The same, for tests running receivers on a tokio runtime.
#[cfg(feature = "cli")]
pub fn hookgate_async(secrets: Option<&str>) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(hookgate(secrets));
    command.kill_on_drop(true);
    command
}

/// Stdout and stderr as text, asserting that no configured secret appears in either.
pub fn texts(output: &Output, secrets: &[&str]) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for secret in secrets {
        assert!(!stdout.contains(secret), "secret in stdout: {stdout}");
        assert!(!stderr.contains(secret), "secret in stderr: {stderr}");
    }
    (stdout, stderr)
}

#[cfg(feature = "cli")]
pub mod gateway;

#[cfg(feature = "redis")]
pub mod redis;
