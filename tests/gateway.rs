//! End to end: the gateway on ephemeral loopback ports, started in-process through
//! `hookgate::gateway` (and as the `hookgate serve` binary where signals and process death are
//! the point), driven by real HTTP clients, with real upstreams, real TLS, real signals.
#![cfg(feature = "cli")]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

mod common;

use bytes::Bytes;
use common::{
    gateway::{exchange, post, sign, transcript, Answer, Gateway, SECRET},
    now, scratch_dir,
};
use hookgate::{gateway::Upstream, scheme::ElevenLabs};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

#[tokio::test]
async fn sink_mode_stores_genuine_deliveries_once_and_refuses_the_rest() {
    let gateway = Gateway::start(|gateway| gateway.max_body_bytes(10_000)).await;
    let url = gateway.url();
    let body = transcript("req_e2e_1");

    let answer = post(&url, sign(body.as_bytes()), body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let stored = gateway.events().join("req_e2e_1.json");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        body.as_bytes(),
        "byte-exact"
    );

    // A redelivery (re-signed, as a sender retry is) answers 200 and leaves one file.
    let answer = post(&url, sign(body.as_bytes()), body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(gateway.event_files(), 1);

    let cases: Vec<(Option<String>, Vec<u8>, StatusCode, &str)> = vec![
        (
            None,
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
            "missing_signature",
        ),
        (
            Some("t=x,v0=1".into()),
            body.clone().into(),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(
                ElevenLabs::new(SECRET)
                    .unwrap()
                    .sign(now() - 3600, body.as_bytes()),
            ),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
            "timestamp_stale",
        ),
        (
            Some(
                ElevenLabs::new("other")
                    .unwrap()
                    .sign(now(), body.as_bytes()),
            ),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
        ),
        (
            sign(&[b' '; 10001]),
            vec![b' '; 10001],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (signature, body, status, code) in cases {
        let answer = post(&url, signature, body).await;
        assert_eq!(answer.status, status, "{code}");
        assert_eq!(answer.code(), code);
        assert_eq!(answer.headers["content-type"], "application/problem+json");
    }
    assert_eq!(gateway.event_files(), 1, "nothing refused was stored");

    let other_path = post(&url.replace("elevenlabs", "other"), sign(b"{}"), "{}").await;
    assert_eq!(other_path.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_reports_health_and_metrics() {
    let gateway = Gateway::start(|gateway| gateway).await;
    let _ = post(&gateway.url(), None, "{}").await;
    let admin = gateway.admin.expect("admin address announced");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let health = client
        .get(format!("http://{admin}/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = client
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(r#"hookgate_requests_total{outcome="missing_signature",status="401"} 1"#),
        "{text}"
    );
    assert!(text.contains("hookgate_buffer_bytes_in_use"));
}

/// A test upstream: answers per the `x-test-answer` header the test puts on the delivery (a
/// status, `slow`, or `reset`: the connection is closed without an answer), and counts what it
/// received.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let answer = request
                                .headers()
                                .get("x-test-answer")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_else(|| "200".into());
                            let forwarded_for = request.headers().get("x-forwarded-for").cloned();
                            let signature = request.headers().get("elevenlabs-signature").cloned();
                            let request_id = request.headers().get("x-request-id").cloned();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            if answer == "slow" {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            if answer == "reset" {
                                return Err(std::io::Error::other("closed without an answer"));
                            }
                            let status = answer
                                .trim_end_matches("-close")
                                .parse::<u16>()
                                .unwrap_or(200);
                            let mut response = Response::new(Full::new(body));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            if let Some(v) = forwarded_for {
                                response.headers_mut().insert("x-seen-forwarded-for", v);
                            }
                            if let Some(v) = signature {
                                response.headers_mut().insert("x-seen-signature", v);
                            }
                            if let Some(v) = request_id {
                                response.headers_mut().insert("x-seen-request-id", v);
                            }
                            Ok::<_, std::io::Error>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// A signed delivery asking the test upstream for `answer` (a status, or `slow`).
async fn post_with_answer(url: &str, answer: &str, body: &str) -> Answer {
    let request = Request::post(url)
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .header("x-test-answer", answer)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    exchange(request).await
}

#[tokio::test]
async fn upstream_mode_forwards_exact_bytes_and_maps_upstream_trouble_to_retryable_5xx() {
    let (addr, received) = upstream().await;
    let gateway = Gateway::start(|gateway| {
        gateway.upstream(
            Upstream::builder(format!("http://{addr}/hook"))
                .response_timeout(Duration::from_secs(1)),
        )
    })
    .await;
    let url = gateway.url();
    let body = transcript("req_up_1");

    let answer = post_with_answer(&url, "200", &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        body.as_bytes(),
        "the upstream got the exact bytes"
    );
    assert_eq!(answer.headers["x-seen-forwarded-for"], "127.0.0.1");
    assert!(
        answer.headers.contains_key("x-seen-signature"),
        "the signature header is forwarded"
    );
    assert_eq!(
        answer.headers["x-seen-request-id"], answer.headers["x-request-id"],
        "the request id is forwarded, and the same is echoed"
    );

    // Another event each time an answer is a 2xx: the first is handled, so its redeliveries
    // are duplicates now. A non-2xx answer leaves the event free for the retry.
    let body = transcript("req_up_2");
    let answer = post_with_answer(&url, "202", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "any 2xx is a 200");
    assert_eq!(answer.body, body.as_bytes());

    let body = transcript("req_up_3");
    let answer = post_with_answer(&url, "500", &body).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    let answer = post_with_answer(&url, "302", &body).await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a redirect is never followed by the sender: retry instead"
    );
    assert_eq!(answer.code(), "handler_redirected");
    for status in ["408", "425", "429"] {
        let answer = post_with_answer(&url, status, &body).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{status}");
        assert!(answer.headers.contains_key("retry-after"), "{status}");
    }
    let answer = post_with_answer(&url, "reset", &body).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.code(), "upstream_failed");
    let answer = post_with_answer(&url, "400", &body).await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "the handler's own permanent answer is kept"
    );

    let answer = post_with_answer(&url, "slow", &body).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.code(), "upstream_timeout");

    // Forged deliveries never reach the upstream.
    let before = received.load(Ordering::SeqCst);
    let answer = post(&url, None, body.clone()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(received.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn upstream_down_is_503_with_retry_after() {
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = Gateway::start(|gateway| {
        gateway.upstream(Upstream::builder(format!("http://127.0.0.1:{port}/")))
    })
    .await;
    let body = transcript("req_down");
    let answer = post(&gateway.url(), sign(body.as_bytes()), body).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.code(), "upstream_unavailable");
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let (addr, _) = upstream().await;
    let mut gateway = Gateway::spawn(&[
        "--upstream",
        &format!("http://{addr}/"),
        "--upstream-timeout",
        "10",
    ]);
    let url = gateway.url();
    let body = transcript("req_slow");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { post_with_answer(&url, "slow", &body).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway.signal("TERM");
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the in-flight delivery finished"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.child().wait().unwrap();
        (status, gateway)
    })
    .await
    .unwrap()
    .0;
    assert!(
        status.success(),
        "exits cleanly after the drain: {status:?}"
    );
}

#[tokio::test]
async fn shutdown_through_the_handle_lets_in_flight_requests_finish_and_stops_accepting() {
    let (addr, _) = upstream().await;
    let gateway = Gateway::start(|gateway| {
        gateway.upstream(
            Upstream::builder(format!("http://{addr}/")).response_timeout(Duration::from_secs(10)),
        )
    })
    .await;
    let (url, listening) = (gateway.url(), gateway.addr);
    let body = transcript("req_slow_in_process");
    let in_flight = tokio::spawn(async move { post_with_answer(&url, "slow", &body).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("stopped within the grace period");
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the in-flight delivery finished"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "shutdown waited for the in-flight delivery: {:?}",
        started.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(listening).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn stop_returns_at_once_and_stopped_completes_once_the_listeners_are_closed() {
    let handle = hookgate::gateway::Gateway::builder(ElevenLabs::new(SECRET).unwrap())
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .sink_dir(scratch_dir().join("events"))
        .workers(2)
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let (addr, admin) = (handle.local_addr(), handle.admin_addr().unwrap());
    assert_eq!(
        handle.url(),
        format!("http://{addr}/webhooks/elevenlabs"),
        "the port the system chose"
    );
    let body = transcript("req_before_stop");
    let answer = post(&handle.url(), sign(body.as_bytes()), body).await;
    assert_eq!(answer.status, StatusCode::OK);

    let started = std::time::Instant::now();
    handle.stop();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "stop() waits for nothing"
    );
    tokio::time::timeout(Duration::from_secs(5), handle.stopped())
        .await
        .expect("stopped with nothing in flight");
    handle.stop(); // again: nothing more happens
    handle.stopped().await;
    for listener in [addr, admin] {
        let closed = async {
            while tokio::net::TcpStream::connect(listener).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), closed)
            .await
            .unwrap_or_else(|_| panic!("{listener} still accepts"));
    }
}

#[tokio::test]
async fn settings_the_gateway_cannot_work_with_are_typed_errors() {
    use hookgate::gateway::{Error, GatewayBuilder, Setting};

    let dir = scratch_dir();
    let builder = || {
        hookgate::gateway::Gateway::builder(ElevenLabs::new(SECRET).unwrap())
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .sink_dir(dir.join("events"))
    };
    let build = |builder: GatewayBuilder| builder.build().expect_err("refused");

    let error = build(builder().path("webhooks"));
    assert!(
        matches!(&error, Error::InvalidPath { path } if path == "webhooks"),
        "{error:?}"
    );
    let error = build(builder().upstream(Upstream::builder("https://127.0.0.1:9000/")));
    assert!(matches!(error, Error::UpstreamUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("https"), "{error}");
    for (builder, setting) in [
        (
            builder().trusted_proxies(["10.0.0.0/33"]),
            Setting::TrustedProxies,
        ),
        (
            builder().known_senders(["not-an-ip"]),
            Setting::KnownSenders,
        ),
        (builder().allow_ips(["300.0.0.1"]), Setting::AllowIps),
    ] {
        let error = build(builder);
        assert!(
            matches!(error, Error::InvalidSetting { setting: s, .. } if s == setting),
            "{error:?}"
        );
        assert!(std::error::Error::source(&error).is_some());
    }
    let error = build(builder().tls(dir.join("missing-cert.pem"), dir.join("missing-key.pem")));
    assert!(matches!(error, Error::TlsCertificate { .. }), "{error:?}");
    assert!(error.to_string().contains("missing-cert.pem"), "{error}");

    // Found when serving: a sink directory that is a file, an admin address taken.
    std::fs::write(dir.join("a-file"), b"").unwrap();
    let error = builder()
        .sink_dir(dir.join("a-file"))
        .build()
        .unwrap()
        .serve()
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::SinkDirectory { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("cannot use sink directory "),
        "{error}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = builder()
        .admin_listen(taken.local_addr().unwrap())
        .build()
        .unwrap()
        .serve()
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::AdminListen { .. }), "{error:?}");
}

#[tokio::test]
async fn a_second_gateway_on_the_address_fails_with_address_in_use() {
    let first = Gateway::start(|gateway| gateway).await;
    let second = hookgate::gateway::Gateway::builder(ElevenLabs::new(SECRET).unwrap())
        .listen(first.addr)
        .sink_dir(scratch_dir().join("events"))
        .build()
        .unwrap()
        .serve()
        .await;
    match second {
        Err(error @ hookgate::gateway::Error::AddressInUse { addr }) => {
            assert_eq!(addr, first.addr);
            assert!(error.to_string().contains("already in use"), "{error}");
        }
        other => panic!("a second gateway started on {}: {other:?}", first.addr),
    }
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_event() {
    let dir = scratch_dir();
    let gateway = Gateway::spawn_in(&dir, &[]);
    let url = gateway.url();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        senders.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            for i in 0..10_000 {
                let id = format!("kill_{worker}_{i}");
                let body = transcript(&id);
                let request = Request::post(&url)
                    .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                match client.request(request).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        acknowledged.lock().unwrap().push((id, body));
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut gateway = gateway;
    gateway.child().kill().unwrap(); // SIGKILL
    gateway.child().wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.len() > 10,
        "the stream was running: {}",
        acknowledged.len()
    );
    for (id, body) in acknowledged.iter() {
        let stored = std::fs::read(gateway.events().join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("{id} was acknowledged but is not stored: {e}"));
        assert_eq!(&stored, body.as_bytes(), "{id} byte-exact");
    }
    // A restart cleans crash leftovers and answers redeliveries of stored events with 200.
    drop(gateway);
    let again = Gateway::spawn_in(&dir, &[]);
    let leftovers = std::fs::read_dir(again.events())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
    let segments = std::fs::read_dir(again.events().join(".journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(
        segments, 0,
        "the killed gateway's journal was checkpointed at restart"
    );
    let (id, body) = &acknowledged[0];
    let answer = post(&again.url(), sign(body.as_bytes()), body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&answer.body).contains("\"duplicate\":true"),
        "{id}"
    );
}

#[tokio::test]
async fn tls_with_a_certificate_made_here_serves_http2_and_http1() {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = scratch_dir();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let gateway = Gateway::start_in(&dir, |gateway| {
        gateway.tls(dir.join("cert.pem"), dir.join("key.pem"))
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(certified.cert.pem().as_bytes()).unwrap())
        .unwrap();
    for (alpn, version) in [
        ("h2", http::Version::HTTP_2),
        ("http/1.1", http::Version::HTTP_11),
    ] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("the handshake succeeds with the test's certificate");
        let body = transcript(&format!("req_tls_{}", alpn.replace(['/', '.'], "_")));
        let request = Request::post(format!("https://localhost{}", "/webhooks/elevenlabs"))
            .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = if version == http::Version::HTTP_2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(connection);
            let (mut parts, body) = request.into_parts();
            parts.headers.insert("host", "localhost".parse().unwrap());
            sender
                .send_request(Request::from_parts(parts, body))
                .await
                .unwrap()
        };
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), StatusCode::OK, "{alpn}");
    }
    assert_eq!(gateway.event_files(), 2);
}

/// An HTTP client whose connections come from `local` (any 127.0.0.0/8 address is loopback).
fn client_from(
    local: [u8; 4],
) -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(std::net::IpAddr::from(local)));
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn status_from(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    signature: Option<String>,
    body: String,
) -> StatusCode {
    let mut request = Request::post(url);
    if let Some(signature) = signature {
        request = request.header("elevenlabs-signature", signature);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn forged_floods_from_several_addresses_never_pass_and_never_crowd_out_the_sender() {
    let gateway = Gateway::start(|gateway| {
        gateway
            .client_rate(50)
            .client_burst(50)
            .max_failures_per_minute(20)
    })
    .await;
    let url = gateway.url();
    let mut attackers = Vec::new();
    for attacker in 2..6u8 {
        let url = url.clone();
        attackers.push(tokio::spawn(async move {
            let client = client_from([127, 0, 0, attacker]);
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in 0..400 {
                let body = transcript(&format!("forged_{attacker}_{i}"));
                let forged = ElevenLabs::new("guessed-secret")
                    .unwrap()
                    .sign(now(), body.as_bytes());
                let signature = if i % 2 == 0 { Some(forged) } else { None };
                let status = status_from(&client, &url, signature, body).await;
                *statuses.entry(status.as_u16()).or_default() += 1;
            }
            statuses
        }));
    }
    let sender = client_from([127, 0, 0, 1]);
    for i in 0..40 {
        let body = transcript(&format!("legit_{i}"));
        let status = status_from(&sender, &url, sign(body.as_bytes()), body).await;
        assert_eq!(status, StatusCode::OK, "legitimate delivery {i}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for attacker in attackers {
        let statuses = attacker.await.unwrap();
        assert!(
            !statuses.contains_key(&200),
            "a forged request passed: {statuses:?}"
        );
        // Cut off with the retryable 503 the ElevenLabs contract gives address-keyed limits
        // (a genuine delivery from a shared address can meet them too).
        assert!(
            statuses.keys().all(|s| [400, 401, 503].contains(s)),
            "forged requests get 401 or 503: {statuses:?}"
        );
        assert!(
            statuses.get(&503).copied().unwrap_or(0) > 300,
            "the flood was cut off: {statuses:?}"
        );
    }
    let stored = gateway.event_files();
    assert_eq!(stored, 40, "only the legitimate deliveries were stored");
}

#[tokio::test]
async fn allow_list_and_https_requirement_turn_clients_away_with_403() {
    let gateway = Gateway::start(|gateway| gateway.allow_ips(["127.0.0.2/32"])).await;
    let body = transcript("req_allowed");
    let refused = status_from(
        &client_from([127, 0, 0, 1]),
        &gateway.url(),
        sign(body.as_bytes()),
        body.clone(),
    )
    .await;
    assert_eq!(refused, StatusCode::FORBIDDEN);
    let allowed = status_from(
        &client_from([127, 0, 0, 2]),
        &gateway.url(),
        sign(body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(allowed, StatusCode::OK);

    let gateway =
        Gateway::start(|gateway| gateway.require_https(true).trusted_proxies(["127.0.0.3"])).await;
    let body = transcript("req_https");
    let plain = post(&gateway.url(), sign(body.as_bytes()), body.clone()).await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN);
    assert_eq!(plain.code(), "https_required");
    // The trusted proxy says the client used HTTPS.
    let request = Request::post(gateway.url())
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let response = client_from([127, 0, 0, 3]).request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The same claim from anyone else is not believed.
    let request = Request::post(gateway.url())
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .header("x-forwarded-proto", "https")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client_from([127, 0, 0, 4]).request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// The request id of an answer: its `X-Request-Id`, which a problem body repeats.
fn request_id_of(answer: &Answer) -> String {
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    if answer.headers["content-type"] == "application/problem+json" {
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            json["request_id"],
            id.as_str(),
            "the problem body names the request"
        );
    }
    id
}

fn is_made_here(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn post_with_id(url: &str, id: &str, signature: Option<String>, body: &str) -> Answer {
    let mut request = Request::post(url).header("x-request-id", id);
    if let Some(signature) = signature {
        request = request.header("elevenlabs-signature", signature);
    }
    exchange(
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn every_answer_names_its_request_and_problem_bodies_repeat_the_id() {
    let gateway = Gateway::start(|gateway| gateway).await;
    let url = gateway.url();
    let body = transcript("req_ids_1");

    let genuine = post(&url, sign(body.as_bytes()), body.clone()).await;
    assert_eq!(genuine.status, StatusCode::OK);
    let first = request_id_of(&genuine);
    assert!(is_made_here(&first), "{first}");

    let forged = post(
        &url,
        Some(format!("t={},v0={}", now(), "00".repeat(32))),
        body.clone(),
    )
    .await;
    assert_eq!(forged.code(), "signature_mismatch");
    let second = request_id_of(&forged);
    assert!(is_made_here(&second), "{second}");
    assert_ne!(first, second, "each request has its own id");

    let misrouted = exchange(
        Request::get(gateway.url().replace("/webhooks/elevenlabs", "/elsewhere"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(misrouted.status, StatusCode::NOT_FOUND);
    assert!(is_made_here(&request_id_of(&misrouted)));

    // A sender's own plain id is kept, echoed and repeated.
    let forged = post_with_id(&url, "sender-id_42:a.b", None, &body).await;
    assert_eq!(forged.code(), "missing_signature");
    assert_eq!(request_id_of(&forged), "sender-id_42:a.b");
    // One that is too long, or not a plain token, is replaced by one of ours.
    for unusable in [
        "x".repeat(65),
        "two words".to_owned(),
        "{\"json\":1}".to_owned(),
    ] {
        let answer = post_with_id(&url, &unusable, None, &body).await;
        let id = request_id_of(&answer);
        assert!(is_made_here(&id), "{unusable:?} became {id}");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn log_lines_of_a_request_name_its_id() {
    let gateway = Gateway::spawn(&[]);
    let forged = post_with_id(
        &gateway.url(),
        "log-line-check-7",
        Some(format!("t={},v0={}", now(), "00".repeat(32))),
        "{}",
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let line = gateway.wait_for_log(
        &["webhook rejected", "signature_mismatch"],
        Duration::from_secs(5),
    );
    let line = line.expect("the rejection is logged");
    assert!(line.contains("log-line-check-7"), "{line}");
}

#[tokio::test]
async fn the_signature_never_reaches_the_logs_even_at_trace_level() {
    let mut command = Gateway::command(&scratch_dir(), &[]);
    command.env("RUST_LOG", "trace");
    let gateway = Gateway::try_spawn(command).expect("the gateway starts");
    let body = transcript("req_trace_1");
    let signature = sign(body.as_bytes()).unwrap();
    let answer = post_with_id(
        &gateway.url(),
        "trace-check-1",
        Some(signature.clone()),
        &body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    // Whatever is logged of this request has been written once a later request's line is.
    let forged = post(
        &gateway.url(),
        Some(format!("t={},v0={}", now(), "00".repeat(32))),
        "{}",
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(gateway
        .wait_for_log(&["webhook rejected"], Duration::from_secs(5))
        .is_some());
    let mac = signature.split("v0=").nth(1).unwrap();
    let logs = gateway.logs();
    assert!(
        logs.iter().any(|line| line.contains("trace-check-1")),
        "the request was logged at trace level"
    );
    assert!(
        !logs.iter().any(|line| line.contains(mac)),
        "a log line holds the signature"
    );
}
