//! RateLimitLayer under an axum Router served on a real loopback socket, keyed by the peer
//! address axum records with `into_make_service_with_connect_info::<SocketAddr>()`.
#![cfg(all(feature = "rate-limit", feature = "axum"))]

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use axum::{extract::ConnectInfo, routing::post, Router};
use bytes::Bytes;
use hookgate::{
    client_ip::ClientIp,
    rate_limit::{Rate, RateLimitLayer},
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on 127.0.0.1 and returns its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// One POST on a new connection: status, headers and body.
async fn post_once(addr: SocketAddr) -> (StatusCode, http::HeaderMap, Bytes) {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::post("/webhooks/elevenlabs")
            .header("host", "localhost")
            .body(Full::new(Bytes::from_static(
                b"{\"type\":\"speech_to_text\"}",
            )))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the loopback exchange finished in time")
}

fn connect_info(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

fn app(key: ClientIp) -> Router {
    Router::new()
        .route("/webhooks/elevenlabs", post(|| async { "ok" }))
        .layer(RateLimitLayer::per_client(
            Rate::per_hour(NonZeroU32::new(2).unwrap()),
            key,
        ))
}

#[tokio::test]
async fn axum_router_on_loopback_limits_per_client_with_connect_info() {
    let addr = serve(app(ClientIp::peer().peer_addr_with(connect_info))).await;

    // Every request comes on a new connection (new port, same client address), as axum clones
    // the service per connection: the limit holds across them.
    for _ in 0..2 {
        let (status, headers, body) = post_once(addr).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
        assert_eq!(headers["ratelimit-policy"], "\"client\";q=2;w=3600");
    }
    let (status, headers, body) = post_once(addr).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "rate_limited");
}

#[tokio::test]
async fn without_connect_info_the_client_is_unidentified_not_shared() {
    // `into_make_service()` records no peer: every request is answered 500, none share a bucket.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(ClientIp::peer().peer_addr_with(connect_info));
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .await
            .unwrap()
    });
    let (status, _, body) = post_once(addr).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "client_unidentified");
}

#[tokio::test]
async fn the_unidentified_answer_names_the_connect_info_fix() {
    // The classic axum mistake: `into_make_service()` instead of
    // `into_make_service_with_connect_info::<SocketAddr>()`. The answer says how to fix it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app(ClientIp::peer()).into_make_service())
            .await
            .unwrap()
    });
    let (status, _, body) = post_once(addr).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "client_unidentified");
    let detail = json["detail"].as_str().unwrap();
    assert!(
        detail.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{detail}"
    );
    assert!(detail.contains("SocketAddr"), "{detail}");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn with_the_axum_feature_connect_info_is_found_without_configuration() {
    let addr = serve(app(ClientIp::peer())).await;
    assert_eq!(post_once(addr).await.0, StatusCode::OK);
    assert_eq!(post_once(addr).await.0, StatusCode::OK);
    assert_eq!(post_once(addr).await.0, StatusCode::TOO_MANY_REQUESTS);
}
