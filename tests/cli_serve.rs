//! `hookgate serve`'s command line as a user types it: a bare port, human sizes and durations,
//! short flags, and what the startup log says about them.
#![cfg(feature = "cli")]

mod common;

use std::time::Duration;

use common::{
    gateway::{post, sign, transcript, Gateway},
    hookgate, texts,
};
use http::StatusCode;

const LOG_WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_bare_port_listens_on_loopback_and_says_how_to_expose_it() {
    let gateway = Gateway::spawn(&["--listen", "0", "--admin-listen", "0"]);
    assert!(gateway.addr.ip().is_loopback(), "{}", gateway.addr);
    assert!(gateway.admin.unwrap().ip().is_loopback());
    let listening = format!("listening on {}", gateway.addr);
    assert!(
        gateway.wait_for_log(&[&listening], LOG_WAIT).is_some(),
        "{:#?}",
        gateway.logs()
    );
    let hint = gateway
        .wait_for_log(&["is loopback: only this machine can reach it"], LOG_WAIT)
        .unwrap_or_else(|| panic!("{:#?}", gateway.logs()));
    assert!(
        hint.contains(&format!("--listen 0.0.0.0:{}", gateway.addr.port())),
        "{hint}"
    );
}

#[test]
fn short_flags_and_localhost_work_too() {
    // Built by hand: the shared command adds --listen and --admin-listen unless it sees them.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args([
            "serve",
            "-l",
            "localhost:0",
            "-a",
            "0",
            "-d",
            "sink",
            "-w",
            "1",
        ])
        .arg("--ready-file")
        .arg(common::scratch_dir().join("ready.json"))
        .current_dir(common::scratch_dir())
        .env("ELEVENLABS_WEBHOOK_SECRET", common::gateway::SECRET)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let gateway = Gateway::try_spawn(command).unwrap_or_else(|logs| panic!("{logs:#?}"));
    assert!(gateway.admin.unwrap().ip().is_loopback());
    assert!(gateway.addr.ip().is_loopback(), "{}", gateway.addr);
    assert!(gateway.wait_for_log(&["is loopback"], LOG_WAIT).is_some());
}

#[tokio::test]
async fn sizes_and_durations_in_human_units_take_effect_and_are_logged_so() {
    let gateway = Gateway::spawn(&[
        "--max-body-bytes",
        "1KiB",
        "--tolerance",
        "1h",
        "--body-timeout",
        "1m30s",
        "--idle-timeout",
        "2m",
        "--failure-cooldown",
        "90s",
    ]);
    let summary = gateway
        .wait_for_log(&["limits: "], LOG_WAIT)
        .unwrap_or_else(|| panic!("{:#?}", gateway.logs()));
    for part in [
        "bodies up to 1 KiB within 1m 30s",
        "signatures up to 1h old",
        "idle connections closed after 2m",
        "shutdown grace 5s",
        "failing clients blocked for 1m 30s",
    ] {
        assert!(summary.contains(part), "{part}: {summary}");
    }
    // 1KiB is 1024 bytes: a signed body over it is refused as too large, one under it accepted.
    let big = format!("{}{}", transcript("big"), " ".repeat(1024));
    let answer = post(&gateway.url(), sign(big.as_bytes()), big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let small = transcript("small");
    let answer = post(&gateway.url(), sign(small.as_bytes()), small).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[test]
fn plain_numbers_keep_their_old_units() {
    let gateway = Gateway::spawn(&[
        "--max-body-bytes",
        "2048",
        "--tolerance",
        "1800",
        "--body-timeout",
        "0.5",
        "--listen",
        "127.0.0.1:0",
    ]);
    let summary = gateway
        .wait_for_log(&["limits: "], LOG_WAIT)
        .unwrap_or_else(|| panic!("{:#?}", gateway.logs()));
    assert!(
        summary.contains("bodies up to 2 KiB within 500ms, signatures up to 30m old"),
        "{summary}"
    );
}

#[test]
fn unclear_or_bad_values_are_usage_errors_naming_the_accepted_forms() {
    for (args, expected) in [
        (&["serve", "--listen", ":8080"][..], "0.0.0.0:8080"),
        (&["serve", "--listen", "70000"], "not a port"),
        (&["serve", "--max-body-bytes", "64 parsecs"], "KiB/MiB/GiB"),
        (
            &["serve", "--max-body-bytes", "99999999999EiB"],
            "expected a size",
        ),
        (&["serve", "--tolerance=-1s"], "cannot be negative"),
        (
            &["serve", "--dedupe-ttl", "1e99s"],
            "expected a duration such as",
        ),
        (&["serve", "--body-timeout", ""], "empty"),
        (
            &["serve", "--shutdown-grace", "99999999999999999999999"],
            "too long",
        ),
        (&["send", "--timeout", "0s"], "more than 0"),
    ] {
        let output = hookgate(Some("secret")).args(args).output().unwrap();
        let (_, stderr) = texts(&output, &["secret"]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_environment_takes_the_same_forms() {
    let gateway = Gateway::try_spawn({
        let mut command = Gateway::command(&common::scratch_dir(), &[]);
        // Deduplication is on in upstream mode (nothing listens on the discard port: the
        // gateway starts all the same).
        command
            .env("HOOKGATE_MAX_BODY_BYTES", "32MiB")
            .env("HOOKGATE_DEDUPE_TTL", "48h")
            .env("HOOKGATE_UPSTREAM", "http://127.0.0.1:9/hook")
            .env("HOOKGATE_UPSTREAM_TIMEOUT", "1500ms");
        command
    })
    .unwrap_or_else(|logs| panic!("{logs:#?}"));
    let summary = gateway
        .wait_for_log(&["limits: "], LOG_WAIT)
        .unwrap_or_else(|| panic!("{:#?}", gateway.logs()));
    assert!(summary.contains("bodies up to 32 MiB"), "{summary}");
    assert!(summary.contains("deduplication for 2d"), "{summary}");
    assert!(
        summary.contains("upstream connect within 2s and answer within 1.5s"),
        "{summary}"
    );
}
