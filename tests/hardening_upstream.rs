//! End to end: upstream mode answers the sender only once the upstream's whole answer has
//! arrived. An upstream that sends its head and then dies, stalls, never ends its chunked body
//! or answers too much reaches the sender as a retryable 502/504 problem, never as a `200` with
//! a truncated or stalled body. Each upstream here is raw TCP, so the bytes are exactly these.
#![cfg(feature = "cli")]

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::gateway::{exchange, post, sign, transcript, Answer, Gateway};
use hookgate::gateway::{GatewayBuilder, Upstream};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The gateway's cap on the upstream's answer body.
const CAP: usize = 1 << 20;

/// What the raw upstream does after writing its answer.
#[derive(Clone, Copy)]
enum Then {
    /// Closes the connection.
    Close,
    /// Keeps the connection open and writes nothing more.
    Stall,
    /// Reads the next request on the same connection.
    KeepAlive,
}

/// Reads one request off `stream`: its body (per `Content-Length`), or `None` at its end.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    Some(seen[head_end..head_end + length].to_vec())
}

/// A raw upstream on loopback: for each request, writes `answer(request body)` byte for byte,
/// then does `then`. Returns its URL and the count of connections it accepted.
async fn raw_upstream(
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    then: Then,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Some(body) = read_request(&mut stream).await {
                    if stream.write_all(&answer(&body)).await.is_err() {
                        return;
                    }
                    match then {
                        Then::Close => return,
                        Then::Stall => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        Then::KeepAlive => {}
                    }
                }
            });
        }
    });
    (url, connections)
}

/// The gateway in upstream mode, 1 s response timeout, with `settings` applied.
async fn gateway_to(url: &str, settings: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Gateway {
    let upstream = Upstream::builder(url).response_timeout(Duration::from_secs(1));
    Gateway::start(|gateway| settings(gateway.upstream(upstream))).await
}

/// A signed transcript delivered to `gateway`, and how long the answer took.
async fn deliver(gateway: &Gateway, request_id: &str) -> (Answer, Duration) {
    let body = transcript(request_id);
    let started = Instant::now();
    let answer = post(&gateway.url(), sign(body.as_bytes()), body).await;
    (answer, started.elapsed())
}

fn assert_problem(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        answer.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.code(), code);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn an_upstream_dying_mid_body_is_502_not_a_truncated_200() {
    let (url, connections) = raw_upstream(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
        Then::Close,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let (answer, _) = deliver(&gateway, "req_mid_body_1").await;
    assert_problem(&answer, StatusCode::BAD_GATEWAY, "upstream_failed");

    // The broken connection is not reused: the next delivery opens another.
    let (answer, _) = deliver(&gateway, "req_mid_body_2").await;
    assert_problem(&answer, StatusCode::BAD_GATEWAY, "upstream_failed");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_stalling_mid_body_is_504_within_the_response_timeout() {
    let (url, _) = raw_upstream(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
        Then::Stall,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let (answer, waited) =
        tokio::time::timeout(Duration::from_secs(5), deliver(&gateway, "req_stall"))
            .await
            .expect("an answer within 5 s of a 1 s upstream timeout");
    assert_problem(&answer, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}, before the 1 s timeout"
    );
}

#[tokio::test]
async fn an_upstream_never_ending_its_chunked_body_is_504() {
    let (url, _) = raw_upstream(
        |_| {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n wor".to_vec()
        },
        Then::Stall,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let (answer, waited) = tokio::time::timeout(
        Duration::from_secs(5),
        deliver(&gateway, "req_chunked_stall"),
    )
    .await
    .expect("an answer within 5 s of a 1 s upstream timeout");
    assert_problem(&answer, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[tokio::test]
async fn an_upstream_answer_over_the_cap_is_502() {
    // Declared over the cap: refused without waiting for the body.
    let (url, _) = raw_upstream(
        |_| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nxxxx", CAP + 1).into_bytes(),
        Then::Stall,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let (answer, waited) = deliver(&gateway, "req_declared_too_large").await;
    assert_problem(&answer, StatusCode::BAD_GATEWAY, "upstream_failed");
    assert!(waited < Duration::from_millis(900), "{waited:?}");

    // Chunked, so only known too large once more than the cap has arrived.
    let (url, _) = raw_upstream(
        |_| {
            let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..CAP / 65_536 + 1 {
                answer.extend_from_slice(b"10000\r\n");
                answer.resize(answer.len() + 65_536, b'x');
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            answer
        },
        Then::Close,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let (answer, _) = deliver(&gateway, "req_chunked_too_large").await;
    assert_problem(&answer, StatusCode::BAD_GATEWAY, "upstream_failed");
}

#[tokio::test]
async fn a_whole_upstream_answer_is_passed_on_intact_with_its_exact_length() {
    // An echo, with the length declared; the connection is kept alive and reused.
    let (url, connections) = raw_upstream(
        |body| {
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Handler: echo\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(body);
            answer
        },
        Then::KeepAlive,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway.workers(1)).await;
    for id in ["req_whole_1", "req_whole_2"] {
        let body = transcript(id);
        let answer = post(&gateway.url(), sign(body.as_bytes()), body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, body.as_bytes(), "the upstream's body, intact");
        assert_eq!(answer.headers["x-handler"], "echo");
        assert_eq!(answer.headers["content-type"], "application/json");
        assert_eq!(
            answer.headers["content-length"],
            body.len().to_string().as_str()
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a whole answer leaves its connection reusable"
    );

    // Chunked upstream answer of 4 KiB: sent on whole, with an exact Content-Length.
    let (url, _) = raw_upstream(
        |_| {
            let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..4 {
                answer.extend_from_slice(b"400\r\n");
                answer.resize(answer.len() + 1024, b'k');
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            answer
        },
        Then::KeepAlive,
    )
    .await;
    let gateway = gateway_to(&url, |gateway| gateway).await;
    let body = transcript("req_whole_chunked");
    let request = Request::post(gateway.url())
        .header("elevenlabs-signature", sign(body.as_bytes()).unwrap())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let answer = exchange(request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, vec![b'k'; 4096]);
    assert_eq!(answer.headers["content-length"], "4096");
    assert!(answer.headers.get("transfer-encoding").is_none());
}
