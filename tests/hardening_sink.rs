//! End to end: the sink keeps transcripts private, stores an event whatever sits at its name,
//! and `/healthz` says when it cannot write. In-process through `hookgate::gateway`, except
//! where the binary's own umask is the point.
#![cfg(feature = "cli")]

mod common;

use std::{
    os::unix::fs::{symlink, PermissionsExt},
    path::Path,
    process::Command,
    time::Duration,
};

use bytes::Bytes;
use common::{
    gateway::{exchange, post, sign, transcript, Answer, Gateway},
    scratch_dir,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};

/// How long an answer may take before the test calls it hung.
const PROMPT: Duration = Duration::from_secs(5);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `command` run through `sh` with the process umask set first (no `unsafe` `pre_exec`): the
/// same program, arguments, environment, directory and standard streams.
fn with_umask(command: &Command, umask: &str) -> Command {
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg(format!(r#"umask {umask} && exec "$0" "$@""#))
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    wrapped
}

/// Signs and posts `body`, failing the test if no answer comes promptly.
async fn deliver(gateway: &Gateway, body: &str) -> Answer {
    let url = gateway.url();
    let answer = post(&url, sign(body.as_bytes()), body.to_owned());
    tokio::time::timeout(PROMPT, answer)
        .await
        .unwrap_or_else(|_| panic!("no answer within {PROMPT:?} from {url}"))
}

/// The name an event whose id name is taken is stored under.
fn digest_name(id: &str, body: &str) -> String {
    format!("{id}.{}.json", hex::encode(Sha256::digest(body.as_bytes())))
}

#[tokio::test]
async fn transcripts_are_private_whatever_the_umask() {
    let dir = scratch_dir();
    let command = with_umask(&Gateway::command(&dir, &[]), "000");
    let mut gateway = Gateway::try_spawn(command).unwrap_or_else(|seen| panic!("{seen:#?}"));
    // The gateway itself runs with umask 000 (`sh` exec'd it: same process).
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.child().id())).unwrap();
    assert!(
        status.lines().any(|line| line == "Umask:\t0000"),
        "{status}"
    );

    let body = transcript("req_private");
    let answer = deliver(&gateway, &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let stored = gateway.events().join("req_private.json");
    assert_eq!(std::fs::read(&stored).unwrap(), body.as_bytes());
    assert_eq!(mode(&stored), 0o600, "event file");
    assert_eq!(
        mode(&gateway.events()),
        0o700,
        "the events directory it created"
    );
}

/// Each obstacle is made at `at` (the event's predicted name), with `outside` a directory
/// outside the sink and `bytes` the event's body.
type Obstacle = fn(at: &Path, outside: &Path, bytes: &[u8]);

#[tokio::test]
async fn obstacles_at_an_events_name_neither_hang_nor_lose_it() {
    let gateway = Gateway::start(|gateway| gateway).await;
    let outside = scratch_dir();
    let obstacles: [(&str, Obstacle); 5] = [
        ("req_dangling", |at, outside, _| {
            symlink(outside.join("dangling-target.json"), at).unwrap()
        }),
        ("req_dev_zero", |at, _, _| symlink("/dev/zero", at).unwrap()),
        ("req_directory", |at, _, _| std::fs::create_dir(at).unwrap()),
        ("req_fifo", |at, _, _| {
            let made = Command::new("mkfifo").arg(at).status().unwrap();
            assert!(made.success(), "mkfifo");
        }),
        ("req_same_outside", |at, outside, bytes| {
            std::fs::write(outside.join("same.json"), bytes).unwrap();
            symlink(outside.join("same.json"), at).unwrap();
        }),
    ];
    let mut bodies = Vec::new();
    for (id, obstacle) in obstacles {
        let body = transcript(id);
        bodies.push(body.clone());
        let at = gateway.events().join(format!("{id}.json"));
        obstacle(&at, &outside, body.as_bytes());
        let digested = digest_name(id, &body);

        let answer = deliver(&gateway, &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{id}: {:?}", answer.body);
        let said: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(said["stored"], digested.as_str(), "{id}");
        assert_eq!(said["duplicate"], false, "{id}: stored now, not found");
        let stored = gateway.events().join(&digested);
        assert!(
            std::fs::symlink_metadata(&stored).unwrap().is_file(),
            "{id}: a regular file of the sink's own"
        );
        assert_eq!(std::fs::read(&stored).unwrap(), body.as_bytes(), "{id}");

        // A redelivery meets that copy.
        let again = deliver(&gateway, &body).await;
        assert_eq!(again.status, StatusCode::OK, "{id}");
        let said: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
        assert_eq!(
            (said["stored"].as_str(), said["duplicate"].as_bool()),
            (Some(digested.as_str()), Some(true)),
            "{id}"
        );
        // The obstacle is left as it was.
        assert!(!std::fs::symlink_metadata(&at).unwrap().is_file(), "{id}");
    }

    // Nothing was written outside the sink, through a symlink or otherwise.
    let mut outside_names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    outside_names.sort();
    assert_eq!(outside_names, ["same.json"]);
    assert_eq!(
        std::fs::read(outside.join("same.json")).unwrap(),
        bodies[4].as_bytes(),
        "the file a symlink pointed to is untouched"
    );
    let directory = gateway.events().join("req_directory.json");
    assert_eq!(std::fs::read_dir(directory).unwrap().count(), 0);
}

/// `GET /healthz` on the admin port: status and text.
async fn healthz(gateway: &Gateway) -> (StatusCode, String) {
    let admin = gateway.admin.expect("admin address announced");
    let request = Request::get(format!("http://{admin}/healthz"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = tokio::time::timeout(PROMPT, exchange(request))
        .await
        .expect("/healthz answers promptly");
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

#[tokio::test]
async fn healthz_is_unhealthy_while_the_sink_cannot_write_and_recovers() {
    let gateway = Gateway::start(|gateway| gateway).await;
    let events = gateway.events();
    assert_eq!(healthz(&gateway).await, (StatusCode::OK, "ok\n".into()));

    // Removed (tests run as root, where permissions would not stop a write).
    std::fs::remove_dir_all(&events).unwrap();
    let (status, cause) = healthz(&gateway).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{cause}");
    assert!(
        cause.contains("sink directory") && cause.contains("events"),
        "{cause}"
    );
    let refused = deliver(&gateway, &transcript("req_while_gone")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "sink_unavailable");

    // Back: healthy again, and the sender's retry is stored.
    std::fs::create_dir(&events).unwrap();
    assert_eq!(healthz(&gateway).await, (StatusCode::OK, "ok\n".into()));
    let body = transcript("req_while_gone");
    assert_eq!(deliver(&gateway, &body).await.status, StatusCode::OK);
    assert_eq!(
        std::fs::read(events.join("req_while_gone.json")).unwrap(),
        body.as_bytes()
    );

    // Replaced by a file.
    std::fs::remove_dir_all(&events).unwrap();
    std::fs::write(&events, b"not a directory").unwrap();
    let (status, cause) = healthz(&gateway).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{cause}");
    assert!(cause.contains("sink directory"), "{cause}");
    std::fs::remove_file(&events).unwrap();
    std::fs::create_dir(&events).unwrap();
    assert_eq!(healthz(&gateway).await, (StatusCode::OK, "ok\n".into()));
}
