//! A plain hyper server (no framework) whose handler only ever sees verified deliveries.
//!
//! ```text
//! cargo run --example hyper            # serves on 127.0.0.1:3001 after a self-test
//! cargo run --example hyper -- --once  # self-test only, then exit (what CI runs)
//! ```
//!
//! The secret is the one `hookgate send` and `hookgate sign` use in the same directory (see
//! `examples/common/mod.rs`); once serving, it prints the `hookgate send` and `curl` lines that
//! deliver to it.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, Verified, VerifySignatureLayer};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tower::ServiceBuilder;

async fn handle(request: Request<VerifiedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let verified = request.extensions().get::<Verified>().cloned();
    let body = request.into_body().to_bytes();
    println!(
        "verified {} bytes signed at {:?}",
        body.len(),
        verified.map(|v| v.unix_timestamp())
    );
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scheme = ElevenLabs::new(common::secret())?;
    let service = ServiceBuilder::new()
        .layer(VerifySignatureLayer::new(scheme.clone()))
        .service_fn(handle);

    let addr = if common::once() {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3001"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    common::self_test(addr, "/", &scheme).await?;
    if !common::once() {
        println!("{}", common::next_steps(&format!("http://{addr}/")));
        std::future::pending::<()>().await;
    }
    Ok(())
}
