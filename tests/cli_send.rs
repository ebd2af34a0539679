//! `hookgate send` against real receivers on loopback: the retry schedule, permanent refusals,
//! nothing listening, load generation, TLS with a certificate made here, and secrets kept out of
//! argv and output.
#![cfg(feature = "cli")]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
    Extension, Router,
};
use common::{hookgate_async, now, texts, SECRET};
use hookgate::{
    scheme::{ElevenLabs, Scheme as _},
    Verified, VerifySignatureLayer,
};

/// How long any one `hookgate send` run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What the receiver saw of one delivery attempt (after VerifySignatureLayer let it through).
#[derive(Clone, Debug)]
struct Seen {
    header: String,
    body: Bytes,
    verified: Verified,
}

/// The receiver's script: the status (and delay) of each answer in turn; the last repeats.
#[derive(Clone)]
struct Receiver {
    script: Arc<Vec<(u16, Duration)>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn receive(
    State(receiver): State<Receiver>,
    Extension(verified): Extension<Verified>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, delay) = {
        let mut seen = receiver.seen.lock().unwrap();
        seen.push(Seen {
            header: headers["elevenlabs-signature"].to_str().unwrap().to_owned(),
            body,
            verified,
        });
        let index = (seen.len() - 1).min(receiver.script.len() - 1);
        receiver.script[index]
    };
    tokio::time::sleep(delay).await;
    let status = StatusCode::from_u16(status).unwrap();
    if status.is_success() {
        return Response::new(Body::empty());
    }
    let code = if status.is_server_error() {
        "throttled"
    } else {
        "unsupported_event"
    };
    let problem = serde_json::json!({
        "type": format!("urn:test:{code}"), "status": status.as_u16(), "code": code,
        "detail": format!("scripted {}", status.as_u16()),
    });
    let mut response = Response::builder().status(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // As a receiver that is briefly unavailable says it (`send` keeps the ElevenLabs
        // schedule all the same).
        response = response.header("retry-after", "1");
    }
    response
        .header("content-type", "application/problem+json")
        .body(Body::from(problem.to_string()))
        .unwrap()
}

fn router(script: Vec<(u16, Duration)>) -> (Router, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver {
        script: Arc::new(script),
        seen: seen.clone(),
    };
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(receive))
        .with_state(receiver)
        .layer(VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap()));
    (app, seen)
}

/// A verifying receiver on an ephemeral loopback port.
async fn serve(script: Vec<(u16, Duration)>) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let (app, seen) = router(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn send(args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(
        RUN_LIMIT,
        hookgate_async(Some(SECRET)).arg("send").args(args).output(),
    )
    .await
    .expect("hookgate send finished in time")
    .unwrap();
    let (stdout, stderr) = texts(&output, &[SECRET]);
    (output.status.code(), stdout, stderr, started.elapsed())
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/webhooks/elevenlabs")
}

fn signed_at(header: &str) -> u64 {
    header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn retries_503_twice_then_delivers_each_attempt_freshly_signed() {
    // The first answer comes after a second, so the second attempt is signed a second later.
    let slow = Duration::from_millis(1100);
    let (addr, seen) = serve(vec![
        (503, slow),
        (503, Duration::ZERO),
        (200, Duration::ZERO),
    ])
    .await;
    let started = now();
    let (code, stdout, stderr, elapsed) =
        send(&["--url", &url(addr), "--time-scale", "0.001"]).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    // 30 ms and 2 min * 0.001 of waits, plus the slow answer: well under the real schedule.
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let scheme = ElevenLabs::new(SECRET).unwrap();
    for attempt in &seen {
        // The same event each time, signed for the moment it was sent.
        assert_eq!(attempt.body, seen[0].body);
        let t = signed_at(&attempt.header);
        assert!(t >= started && t <= now(), "signed at {t}");
        assert_eq!(attempt.verified.unix_timestamp(), t);
        let mut headers = http::HeaderMap::new();
        headers.insert("elevenlabs-signature", attempt.header.parse().unwrap());
        scheme
            .verify(&headers, &attempt.body, SystemTime::now())
            .unwrap();
    }
    assert!(signed_at(&seen[1].header) > signed_at(&seen[0].header));
    assert_ne!(seen[1].header, seen[0].header);

    let json: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(json["type"], "speech_to_text_transcription");
    assert!(json["data"]["request_id"].is_string());
    assert!(json["data"]["transcription"]["words"].is_array());

    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("attempt"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("attempt 1/5: 503 Service Unavailable (throttled)"),
        "{stdout}"
    );
    assert!(lines[0].contains("next attempt in"), "{stdout}");
    assert!(lines[2].starts_with("attempt 3/5: 200 OK"), "{stdout}");
    assert!(lines[2].ends_with("delivered"), "{stdout}");
}

#[tokio::test]
async fn a_400_ends_at_once_after_one_attempt() {
    let (addr, seen) = serve(vec![(400, Duration::ZERO)]).await;
    let (code, stdout, stderr, _) = send(&["--url", &url(addr), "--time-scale", "0.001"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        stdout.contains("attempt 1/5: 400 Bad Request (unsupported_event) in",),
        "{stdout}"
    );
    assert!(
        stdout.contains("scripted 400; refused for good, not retried"),
        "{stdout}"
    );
    assert!(!stdout.contains("attempt 2/"), "{stdout}");
}

#[tokio::test]
async fn nothing_listening_is_retried_on_the_schedule_then_fails() {
    // A port that was free a moment ago.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, stdout, stderr, elapsed) =
        send(&["--url", &url(addr), "--time-scale", "0.0001"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let attempts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("attempt"))
        .collect();
    assert_eq!(attempts.len(), 5, "{stdout}");
    for line in &attempts[..4] {
        assert!(line.contains("no answer: cannot connect to"), "{line}");
        assert!(line.contains("next attempt in"), "{line}");
    }
    assert!(attempts[4].ends_with("giving up"), "{stdout}");
    // 30 s + 2 min + 8 min + 30 min, scaled by 0.0001 and jittered: about a quarter second.
    assert!(elapsed >= Duration::from_millis(240), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}

#[tokio::test]
async fn max_attempts_cuts_the_schedule_short() {
    let (addr, seen) = serve(vec![(503, Duration::ZERO)]).await;
    let (code, stdout, _, _) = send(&[
        "--url",
        &url(addr),
        "--time-scale",
        "0.001",
        "--max-attempts",
        "2",
    ])
    .await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(stdout.contains("attempt 2/2: 503"), "{stdout}");
    assert!(stdout.contains("giving up"), "{stdout}");
}

#[tokio::test]
async fn load_generation_delivers_distinct_events_and_summarises() {
    let (addr, seen) = serve(vec![(200, Duration::ZERO)]).await;
    let (code, stdout, stderr, _) = send(&[
        "--url",
        &url(addr),
        "--count",
        "50",
        "--concurrency",
        "8",
        "--body-bytes",
        "4096",
    ])
    .await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 50);
    let mut ids: Vec<String> = seen
        .iter()
        .map(|s| {
            assert_eq!(s.body.len(), 4096);
            let json: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            json["data"]["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every event has its own request_id");

    assert!(
        stdout.contains("50 events in")
            && stdout.contains("at concurrency 8: 50 delivered, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("throughput: "), "{stdout}");
    assert!(stdout.contains("latency: p50 "), "{stdout}");
    assert!(
        stdout.contains(", p90 ") && stdout.contains(", p99 "),
        "{stdout}"
    );
    assert!(stdout.contains("  200 OK: 50\n"), "{stdout}");
    // Not a terminal: no progress bar drawn.
    assert!(!stderr.contains("events  "), "{stderr}");
}

/// The number before `unit` in the line starting with `prefix`.
fn figure(stdout: &str, prefix: &str, unit: &str) -> f64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split(unit).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?}...{unit:?} in {stdout}"))
}

#[tokio::test]
async fn load_generation_counts_throughput_without_the_retry_waits() {
    // The first answer is a 503 with Retry-After, every other a 200: one event waits for its
    // retry (30 s scaled by 0.01: 300 to 330 ms) while nothing else is going on.
    let (addr, seen) = serve(vec![(503, Duration::ZERO), (200, Duration::ZERO)]).await;
    let (code, stdout, stderr, _) = send(&[
        "-u",
        &url(addr),
        "-n",
        "20",
        "-c",
        "1",
        "--time-scale",
        "0.01",
    ])
    .await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(seen.lock().unwrap().len(), 21);
    assert!(stdout.contains("20 events in"), "{stdout}");
    assert!(
        stdout.contains("  503 Service Unavailable (throttled): 1\n"),
        "{stdout}"
    );
    let wall = figure(&stdout, "throughput: ", "deliveries/s");
    let active = figure(&stdout, "excluding retry waits: ", "deliveries/s");
    assert!(active > wall, "{stdout}");
    let waiting = stdout
        .split("the wall time less the ")
        .nth(1)
        .and_then(|rest| {
            rest.split(" when deliveries were only waiting for a retry")
                .next()
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    // Human units: 300 to 330 ms of waiting (a little more on a busy machine).
    assert!(
        waiting.ends_with("ms") || waiting.ends_with('s'),
        "{waiting}"
    );
    assert!(stdout.contains("retry waits: 1, "), "{stdout}");
}

#[tokio::test]
async fn load_generation_counts_answers_by_status_and_fails_when_any_event_fails() {
    let (addr, _) = serve(vec![
        (200, Duration::ZERO),
        (200, Duration::ZERO),
        (400, Duration::ZERO),
    ])
    .await;
    let (code, stdout, _, _) =
        send(&["--url", &url(addr), "--count", "5", "--concurrency", "2"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("2 delivered, 3 failed"), "{stdout}");
    assert!(stdout.contains("  200 OK: 2\n"), "{stdout}");
    assert!(
        stdout.contains("  400 Bad Request (unsupported_event): 3\n"),
        "{stdout}"
    );
}

/// A verifying receiver behind rustls, with a certificate for 127.0.0.1 made here.
async fn serve_tls(
    dir: &std::path::Path,
) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>, std::path::PathBuf) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tower::ServiceExt as _;

    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let ca_path = dir.join("receiver-cert.pem");
    std::fs::write(&ca_path, certified.cert.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let (app, seen) = router(vec![(200, Duration::ZERO)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap()) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen, ca_path)
}

#[tokio::test]
async fn https_with_a_local_ca_certificate_and_a_file_body() {
    let dir = common::scratch_dir();
    let (addr, seen, ca_path) = serve_tls(&dir).await;
    // Exact bytes, not JSON, not UTF-8, with a trailing newline.
    let body: &[u8] = b"\xff\x00 exact bytes \r\n";
    let file = dir.join("event.bin");
    std::fs::write(&file, body).unwrap();
    let url = format!("https://{addr}/webhooks/elevenlabs");

    let (code, stdout, stderr, _) = send(&[
        "--url",
        &url,
        "--ca-cert",
        ca_path.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body);

    // Without the certificate, the receiver is not trusted: no answer, never a delivery.
    let (code, stdout, _, _) =
        send(&["--url", &url, "--time-scale", "0", "--max-attempts", "1"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("no answer") && (stdout.contains("TLS") || stdout.contains("CA bundle")),
        "{stdout}"
    );
}

#[tokio::test]
async fn secrets_come_only_from_the_environment_or_a_file() {
    // There is no flag for a secret.
    let output = hookgate_async(None)
        .args(["send", "--secret", SECRET, "--url", "http://127.0.0.1:9/"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument"));

    // Nothing configured: a clear refusal, no request.
    let output = hookgate_async(None)
        .args(["send", "--url", "http://127.0.0.1:9/"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (_, stderr) = texts(&output, &[]);
    assert!(stderr.contains("no webhook secret"), "{stderr}");
    assert!(stderr.contains("ELEVENLABS_WEBHOOK_SECRET"), "{stderr}");

    // A secret file works, and its contents never show.
    let (addr, seen) = serve(vec![(200, Duration::ZERO)]).await;
    let dir = common::scratch_dir();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let output = hookgate_async(None)
        .args(["send", "--url", &url(addr), "--secret-file"])
        .arg(&secret_file)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&output, &[SECRET]);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("signed with the secret file"), "{stdout}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Starts `hookgate send` with `args`, interrupts it (SIGINT, as Ctrl-C) once the receiver
/// has seen `seen_before` attempts, and returns its exit code, stdout and run time.
async fn interrupted_send(
    args: &[&str],
    seen: &Arc<Mutex<Vec<Seen>>>,
    seen_before: usize,
) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let child = hookgate_async(Some(SECRET))
        .arg("send")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while seen.lock().unwrap().len() < seen_before {
        assert!(started.elapsed() < RUN_LIMIT, "the receiver saw too little");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the attempts' answers arrive and the retry waits begin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("hookgate send stopped in time")
        .unwrap();
    let (stdout, _) = texts(&output, &[SECRET]);
    (output.status.code(), stdout, started.elapsed())
}

#[tokio::test]
async fn ctrl_c_ends_retry_waits_and_still_summarises() {
    // Every answer is retryable and the waits are the real ones (30 s): only Ctrl-C ends this.
    let (addr, seen) = serve(vec![(503, Duration::ZERO)]).await;
    let args = ["--url", &url(addr), "--count", "100", "--concurrency", "2"];
    let (code, stdout, elapsed) = interrupted_send(&args, &seen, 2).await;
    assert_eq!(code, Some(130), "{stdout}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert!(stdout.contains("0 delivered"), "{stdout}");
    assert!(
        stdout.contains("  503 Service Unavailable (throttled): 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped by Ctrl-C: 2 of 100 events handled, 2 cut short in a retry wait"),
        "{stdout}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);

    // One event: the wait before attempt 2 ends too.
    let (addr, seen) = serve(vec![(503, Duration::ZERO)]).await;
    let (code, stdout, _) = interrupted_send(&["--url", &url(addr)], &seen, 1).await;
    assert_eq!(code, Some(130), "{stdout}");
    assert!(stdout.contains("attempt 1/5: 503"), "{stdout}");
    assert!(
        stdout.contains("stopped before the next attempt: not delivered"),
        "{stdout}"
    );
}

#[tokio::test]
async fn load_generation_reconnects_when_the_receiver_closes_connections() {
    let (app, seen) = router(vec![(200, Duration::ZERO)]);
    let app = app.layer(axum::middleware::map_response(
        |mut response: Response| async {
            response
                .headers_mut()
                .insert("connection", http::HeaderValue::from_static("close"));
            response
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (code, stdout, stderr, _) = send(&[
        "--url",
        &url(addr),
        "--count",
        "20",
        "--concurrency",
        "2",
        "--time-scale",
        "0",
    ])
    .await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("  200 OK: 20\n"), "{stdout}");
    assert!(!stdout.contains("no answer"), "{stdout}");
    assert_eq!(seen.lock().unwrap().len(), 20);
}
