//! VerifySignatureLayer under a plain hyper server on a real loopback socket: streamed bodies,
//! HTTP/2, and what a client sees on the wire when it is refused before uploading.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, Verified, VerifySignatureLayer};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::ServiceBuilder;

const SECRET: &str = "hyper-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Echoes the verified body back, with the matched secret's index in a header.
async fn echo(request: Request<VerifiedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let index = request
        .extensions()
        .get::<Verified>()
        .unwrap()
        .secret_index();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert("x-secret-index", index.into());
    Ok(response)
}

async fn serve(layer: VerifySignatureLayer<ElevenLabs>) -> SocketAddr {
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn layer() -> VerifySignatureLayer<ElevenLabs> {
    VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap())
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 256) as u8).collect()
}

#[tokio::test]
async fn one_mebibyte_streamed_in_16_kib_chunks_verifies_and_arrives_intact() {
    let addr = serve(layer()).await;
    let body = payload(1 << 20);
    let signature = ElevenLabs::new(SECRET).unwrap().sign(now(), &body);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    // No Content-Length: sent with chunked transfer encoding.
    let stream = StreamBody::new(futures_util::stream::iter(frames));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{addr}/"))
        .header("elevenlabs-signature", signature)
        .body(stream)
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the handler saw exactly the bytes sent");
}

#[tokio::test]
async fn http2_requests_verify_and_rotation_reports_the_secret() {
    let addr = serve(VerifySignatureLayer::new(
        ElevenLabs::new("new-secret")
            .unwrap()
            .with_secret(SECRET)
            .unwrap(),
    ))
    .await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let body = payload(70_000);
    let request = Request::post(format!("http://{addr}/"))
        .header(
            "elevenlabs-signature",
            ElevenLabs::new(SECRET).unwrap().sign(now(), &body),
        )
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-secret-index"], "1");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        body
    );
}

/// Sends raw request head bytes and reads what comes back within a second.
async fn raw_exchange(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server answers without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn unsigned_upload_is_refused_before_100_continue() {
    let addr = serve(layer()).await;
    let answer = raw_exchange(
        addr,
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("missing_signature"), "{answer}");
}

#[tokio::test]
async fn declared_oversize_is_413_without_sending_the_body() {
    let addr = serve(layer().max_body_size(1000)).await;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1001\r\nelevenlabs-signature: {}\r\n\r\n",
        ElevenLabs::new(SECRET).unwrap().sign(now(), b"irrelevant")
    );
    let answer = raw_exchange(addr, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

#[tokio::test]
async fn stalled_upload_is_408_at_the_body_deadline() {
    let addr = serve(layer().body_timeout(Duration::from_millis(300))).await;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nelevenlabs-signature: {}\r\n\r\nonly part of it",
        ElevenLabs::new(SECRET).unwrap().sign(now(), b"irrelevant")
    );
    let started = std::time::Instant::now();
    let answer = raw_exchange(addr, &head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}
