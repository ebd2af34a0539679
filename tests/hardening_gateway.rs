//! End to end: cheap attacks and accidents that must not cost a genuine delivery. The gateway
//! on loopback (in-process through `hookgate::gateway`; the `hookgate serve` binary where the
//! process's limits or its logs are the point), attacked and used by real sockets; genuine
//! deliveries come from another loopback address (127.0.0.2) where an attack would otherwise hit
//! them too.
#![cfg(feature = "cli")]

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

mod common;

use bytes::Bytes;
use common::{
    gateway::{post, sign, transcript, Answer, Gateway},
    scratch_dir,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((IpAddr::from(from), 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// A signed delivery of `body` to the gateway, from the loopback address `from`.
async fn deliver_from(from: [u8; 4], gateway: &Gateway, body: &str) -> Answer {
    let stream = connect_from(from, gateway.addr).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post(gateway.url())
        .header("host", gateway.addr.to_string())
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    Answer::read(sender.send_request(request).await.unwrap()).await
}

/// Reads until the peer closes (or `within` passes); what was read, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut read = Vec::new();
    let result = tokio::time::timeout(within, async {
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (read, result.is_ok())
}

#[tokio::test]
async fn declared_but_unsent_bodies_reserve_no_buffer_budget() {
    // The budget is 256 MiB: eight forged requests declaring 32 MiB each and sending one byte
    // reserved all of it until their 408 (30 s later), and attacked again at once.
    let gateway = Gateway::start(|gateway| gateway.max_connections_per_client(200)).await;
    let mut held = Vec::new();
    for n in 0..80 {
        // Ten times the eight that used to exhaust the budget.
        let mut stream = connect_from([127, 0, 0, 1], gateway.addr).await;
        let body = transcript(&format!("forged_{n}"));
        let head = format!(
            "POST /webhooks/elevenlabs HTTP/1.1\r\nhost: x\r\nelevenlabs-signature: {}\r\n\
             content-length: {}\r\n\r\n{{",
            sign(body.as_bytes()).unwrap(),
            32 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // Give the gateway time to parse all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for from in [[127, 0, 0, 2], [127, 0, 0, 1]] {
        let body = transcript(&format!("genuine_{}", from[3]));
        let answer = deliver_from(from, &gateway, &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.code());
    }
    drop(held);
}

#[tokio::test]
async fn connections_that_say_nothing_are_closed_before_their_first_request() {
    let gateway =
        Gateway::start(|gateway| gateway.request_head_timeout(Duration::from_secs(1))).await;
    let started = Instant::now();
    let mut silent = connect_from([127, 0, 0, 1], gateway.addr).await;
    let mut preface = connect_from([127, 0, 0, 1], gateway.addr).await;
    // 23 of the 24 bytes of the HTTP/2 preface: protocol detection waits for the last one.
    preface
        .write_all(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..23])
        .await
        .unwrap();
    let mut head = connect_from([127, 0, 0, 1], gateway.addr).await;
    head.write_all(b"POST /webhooks/elevenlabs HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    for stream in [&mut silent, &mut preface, &mut head] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed, "still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn keep_alive_connections_are_closed_when_idle_and_served_while_busy() {
    let gateway = Gateway::start(|gateway| gateway.idle_timeout(Duration::from_secs(1))).await;
    let stream = connect_from([127, 0, 0, 1], gateway.addr).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    for n in 0..3 {
        let body = transcript(&format!("keep_alive_{n}"));
        let request = Request::post(gateway.url())
            .header("host", "x")
            .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let _ = response.into_body().collect().await;
        // Less than the idle timeout between requests: the connection stays.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the gateway closes an idle keep-alive connection")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let gateway = Gateway::start(|gateway| gateway.idle_timeout(Duration::from_secs(1))).await;
    let stream = connect_from([127, 0, 0, 1], gateway.addr).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let body = transcript("h2_idle");
    let request = Request::post(gateway.url())
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the gateway closes an idle HTTP/2 connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_over_the_per_client_cap_get_a_polite_503_and_others_are_served() {
    let gateway = Gateway::start(|gateway| gateway.max_connections_per_client(4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 1], gateway.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = connect_from([127, 0, 0, 1], gateway.addr).await;
    over.write_all(b"POST /webhooks/elevenlabs HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );

    let body = transcript("other_client");
    assert_eq!(
        deliver_from([127, 0, 0, 2], &gateway, &body).await.status,
        StatusCode::OK
    );
    // A slot comes back when a connection ends.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = transcript("same_client_again");
    assert_eq!(
        deliver_from([127, 0, 0, 1], &gateway, &body).await.status,
        StatusCode::OK
    );
}

/// The gateway under `ulimit -n limit`, with `args`.
fn gateway_with_descriptor_limit(limit: u32, args: &[&str]) -> Gateway {
    let dir = scratch_dir();
    let command = Gateway::command(&dir, args);
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    Gateway::try_spawn(shell).expect("the gateway starts")
}

/// Opens up to `count` connections from 127.0.0.1 (fewer if connecting stalls).
async fn flood(gateway: &Gateway, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        match tokio::time::timeout(
            Duration::from_secs(2),
            connect_from([127, 0, 0, 1], gateway.addr),
        )
        .await
        {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    held
}

/// Delivers from 127.0.0.2 until it is answered 200 (within 10 s).
async fn delivered_eventually(gateway: &Gateway) {
    let started = Instant::now();
    loop {
        let stream = tokio::time::timeout(
            Duration::from_secs(2),
            connect_from([127, 0, 0, 2], gateway.addr),
        );
        if stream.await.is_ok() {
            let body = transcript("after_siege");
            if deliver_from([127, 0, 0, 2], gateway, &body).await.status == StatusCode::OK {
                return;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_connection_cap_follows_the_descriptor_limit_so_a_flood_is_refused_politely() {
    // One client opens more sockets than the open-file limit allows (1,100 against 1,024 took
    // the gateway offline). With no --max-connections the gateway sizes its cap to the limit:
    // 400 - 64 reserved - 256 for refusals = 80.
    let gateway = gateway_with_descriptor_limit(400, &["--max-connections-per-client", "1000"]);
    assert!(
        gateway
            .wait_for_log(
                &["connection limits", "max_connections=80"],
                Duration::from_secs(2)
            )
            .is_some(),
        "{:#?}",
        gateway.logs()
    );
    let held = flood(&gateway, 450).await;
    // Over the cap: refused politely and retryably, never by running out of descriptors.
    let body = transcript("under_siege");
    let answer = deliver_from([127, 0, 0, 2], &gateway, &body).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.code(), "too_many_connections");
    assert!(!gateway
        .logs()
        .iter()
        .any(|line| line.contains("accepting connections fails")));
    drop(held);
    delivered_eventually(&gateway).await;
}

#[tokio::test]
async fn out_of_descriptors_the_gateway_backs_off_logs_once_and_recovers() {
    // A cap set above the open-file limit: accepting does run out of descriptors.
    let gateway = gateway_with_descriptor_limit(
        200,
        &[
            "--max-connections",
            "1000",
            "--max-connections-per-client",
            "1000",
        ],
    );
    let held = flood(&gateway, 450).await;
    let failures = gateway
        .logs()
        .iter()
        .filter(|line| line.contains("accepting connections fails"))
        .count();
    assert_eq!(failures, 1, "one line per interval, not one per failure");
    drop(held);
    delivered_eventually(&gateway).await;
}

#[tokio::test]
async fn a_second_process_cannot_join_the_listening_address() {
    let first = Gateway::start(|gateway| gateway).await;
    let dir = scratch_dir();
    let listen = first.addr.to_string();
    let command = Gateway::command(&dir, &["--listen", &listen]);
    let seen = match Gateway::try_spawn(command) {
        Ok(_) => panic!("a second gateway started on {listen}"),
        Err(seen) => seen,
    };
    assert!(
        seen.iter().any(|line| line.contains("already in use")),
        "{seen:#?}"
    );
    // The first one still receives everything.
    let body = transcript("still_first");
    let answer = post(&first.url(), sign(body.as_bytes()), body).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn an_early_413_reaches_a_client_still_sending_its_body() {
    let gateway = Gateway::start(|gateway| gateway.max_body_bytes(1000)).await;
    let body = vec![b' '; 4 << 20];
    let mut stream = connect_from([127, 0, 0, 1], gateway.addr).await;
    let head = format!(
        "POST /webhooks/elevenlabs HTTP/1.1\r\nhost: x\r\nelevenlabs-signature: {}\r\n\
         content-length: {}\r\n\r\n",
        sign(&body).unwrap(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Like a simple client: the whole body first, then the answer. Without a lingering close
    // the gateway's close resets the connection while the body is still in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body).await.expect("the body is taken");
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

#[tokio::test]
async fn a_sender_blocked_or_limited_by_address_gets_a_retryable_503() {
    let gateway = Gateway::start(|gateway| {
        gateway
            .max_failures_per_minute(3)
            .client_rate(1)
            .client_burst(8)
            .elevenlabs_known_senders(false)
    })
    .await;
    // Another customer of the sender, or an attacker, fails verification from the address.
    for n in 0..5 {
        let body = transcript(&format!("forged_{n}"));
        let answer = post(&gateway.url(), Some("t=1,v0=00".into()), body).await;
        assert!(
            answer.status.is_client_error() || answer.code() == "client_blocked",
            "{}",
            answer.code()
        );
    }
    let body = transcript("genuine_after_forgeries");
    let answer = post(&gateway.url(), sign(body.as_bytes()), body).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.code(), "client_blocked");
    assert!(answer.headers.contains_key("retry-after"));

    // A burst over the per-client rate from another address.
    let mut statuses = Vec::new();
    for n in 0..12 {
        let body = transcript(&format!("burst_{n}"));
        let answer = deliver_from([127, 0, 0, 2], &gateway, &body).await;
        statuses.push((answer.status, answer.code()));
    }
    assert!(statuses.iter().any(|(s, _)| *s == StatusCode::OK));
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .collect();
    assert!(!limited.is_empty(), "the burst was never limited");
    for (status, code) in limited {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "rate_limited");
    }
}

#[tokio::test]
async fn known_senders_are_never_blocked_or_limited_before_verification() {
    let gateway = Gateway::start(|gateway| {
        gateway
            .max_failures_per_minute(3)
            .client_rate(1)
            .client_burst(2)
            .known_senders(["127.0.0.1"])
    })
    .await;
    for n in 0..10 {
        let body = transcript(&format!("forged_{n}"));
        let answer = post(&gateway.url(), Some("t=1,v0=00".into()), body).await;
        assert!(answer.status.is_client_error());
        assert_ne!(answer.code(), "client_blocked");
        assert_ne!(answer.code(), "rate_limited");
    }
    for n in 0..5 {
        let body = transcript(&format!("known_{n}"));
        let answer = post(&gateway.url(), sign(body.as_bytes()), body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.code());
    }
    // Another address is still limited.
    let mut limited = false;
    for n in 0..5 {
        let body = transcript(&format!("unknown_{n}"));
        limited |= deliver_from([127, 0, 0, 2], &gateway, &body).await.code() == "rate_limited";
    }
    assert!(limited);
}

#[tokio::test]
async fn a_body_too_slow_for_its_deadline_gets_a_retryable_503() {
    let gateway = Gateway::start(|gateway| gateway.body_timeout(Duration::from_secs(1))).await;
    let body = transcript("slow_body");
    let mut stream = connect_from([127, 0, 0, 1], gateway.addr).await;
    let head = format!(
        "POST /webhooks/elevenlabs HTTP/1.1\r\nhost: x\r\nelevenlabs-signature: {}\r\n\
         content-length: {}\r\n\r\n",
        sign(body.as_bytes()).unwrap(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    // A slow network is no reason to drop a genuine delivery: 503, not 408, under ElevenLabs.
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );
}

#[tokio::test]
async fn a_tls_session_that_goes_quiet_after_its_handshake_is_closed() {
    use std::sync::Arc;

    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = scratch_dir();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let gateway = Gateway::start_in(&dir, |gateway| {
        gateway
            .tls(dir.join("cert.pem"), dir.join("key.pem"))
            .request_head_timeout(Duration::from_secs(1))
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(certified.cert.pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect_from([127, 0, 0, 1], gateway.addr).await;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake succeeds");
    let started = Instant::now();
    let mut buf = [0_u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trusted_proxy_without_a_forwarding_header_is_served_as_itself_and_warned_about_once() {
    let gateway = Gateway::spawn(&["--trusted-proxy", "127.0.0.1"]);
    for n in 0..20 {
        // No X-Forwarded-For: a health check, or a proxy configured without it.
        let body = transcript(&format!("via_proxy_{n}"));
        let answer = post(&gateway.url(), sign(body.as_bytes()), body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.code());
    }
    let warnings = gateway
        .logs()
        .iter()
        .filter(|line| line.contains("nearest trusted hop"))
        .count();
    assert_eq!(warnings, 1, "{:#?}", gateway.logs());
}
