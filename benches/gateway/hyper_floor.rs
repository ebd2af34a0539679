//! The floor under `hookgate serve --upstream`: the same HTTP stack (hyper's HTTP/1.1 server
//! and client on one single-threaded tokio runtime) forwarding each request body to the
//! upstream, with nothing in between, and then with verification added in two steps:
//!
//! ```text
//! hyper_floor --listen ADDR --upstream ADDR --mode plain   forward only
//! hyper_floor --listen ADDR --upstream ADDR --mode hmac    + HMAC-SHA256 of the body, by hand
//! hyper_floor --listen ADDR --upstream ADDR --mode layer   + VerifySignatureLayer (ElevenLabs,
//!                                                            secret from ELEVENLABS_WEBHOOK_SECRET)
//! ```
//!
//! `benches/gateway/run.sh` runs these beside nginx and the gateway, so the gateway's figures
//! read as what hyper costs, what verifying costs, and what the rest of the gateway adds. Not
//! a benchmark by itself: `cargo bench` runs it without flags, and it exits at once.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, VerifySignatureLayer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    client::conn::http1::{self as client, SendRequest},
    server::conn::http1 as server,
};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use sha2::Sha256;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Mutex,
};
use tower::{service_fn, ServiceBuilder};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Hmac,
    Layer,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let address = |flag| value(flag).and_then(|v| v.parse::<SocketAddr>().ok());
    let mode = match value("--mode").unwrap_or("plain") {
        "plain" => Mode::Plain,
        "hmac" => Mode::Hmac,
        "layer" => Mode::Layer,
        other => {
            eprintln!("hyper_floor: --mode {other}: plain, hmac or layer");
            std::process::exit(2);
        }
    };
    let (Some(listen), Some(upstream)) = (address("--listen"), address("--upstream")) else {
        eprintln!("hyper_floor: run by benches/gateway/run.sh (--listen ADDR --upstream ADDR)");
        return;
    };
    let secret = std::env::var("ELEVENLABS_WEBHOOK_SECRET").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("listen");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream, upstream, mode, secret.clone()));
        }
    });
}

/// Serves one client connection over one upstream connection of its own.
async fn serve(stream: TcpStream, upstream: SocketAddr, mode: Mode, secret: String) {
    let _ = stream.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, connection)) = client::handshake(TokioIo::new(upstream)).await else {
        return;
    };
    tokio::spawn(connection);
    let sender = Arc::new(Mutex::new(sender));
    let stream = TokioIo::new(stream);
    let result = if mode == Mode::Layer {
        let scheme = ElevenLabs::new(&secret).expect("ELEVENLABS_WEBHOOK_SECRET is set");
        let verified = ServiceBuilder::new()
            .layer(VerifySignatureLayer::new(scheme))
            .service(service_fn(move |request: Request<VerifiedBody>| {
                forward(sender.clone(), request)
            }));
        server::Builder::new()
            .serve_connection(stream, TowerToHyperService::new(verified))
            .await
    } else {
        let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let sender = sender.clone();
            let mac = mac.clone();
            async move {
                let (parts, body) = request.into_parts();
                let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                    return Ok(Response::new(Full::default()));
                };
                if mode == Mode::Hmac {
                    let mut mac = mac;
                    mac.update(b"1700000000.");
                    mac.update(&body);
                    std::hint::black_box(mac.finalize().into_bytes());
                }
                forward(
                    sender,
                    Request::from_parts(parts, VerifiedBody::from_bytes(body)),
                )
                .await
            }
        });
        server::Builder::new()
            .serve_connection(stream, service)
            .await
    };
    let _ = result;
}

async fn forward(
    sender: Arc<Mutex<SendRequest<VerifiedBody>>>,
    request: Request<VerifiedBody>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let mut forwarded = Request::new(body);
    *forwarded.method_mut() = parts.method;
    *forwarded.headers_mut() = parts.headers;
    let mut sender = sender.lock().await;
    if sender.ready().await.is_err() {
        return Ok(Response::new(Full::default()));
    }
    let Ok(answer) = sender.send_request(forwarded).await else {
        return Ok(Response::new(Full::default()));
    };
    drop(sender);
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::from_parts(parts, Full::new(body)))
}
