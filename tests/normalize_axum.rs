//! `NormalizeStatusLayer` mounted in axum: around a router, with a tower `TimeoutLayer` inside
//! and no `HandleErrorLayer`, served on a real loopback socket and called with a hyper client.
#![cfg(all(feature = "normalize", feature = "axum"))]

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect},
    routing::post,
    Router,
};
use bytes::Bytes;
use hookgate::normalize::NormalizeStatusLayer;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::sync::oneshot;
use tower::{timeout::TimeoutLayer, ServiceBuilder};

const BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("bounded by 10 s")
}

fn app() -> Router {
    Router::new()
        .route(
            "/created",
            post(|| async { (StatusCode::CREATED, "stored") }),
        )
        .route(
            "/bad",
            post(|| async { (StatusCode::BAD_REQUEST, "unknown event") }),
        )
        .route(
            "/throttled",
            post(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "9")],
                    "slow down",
                )
            }),
        )
        .route(
            "/redirect",
            post(|| async { Redirect::temporary("/elsewhere") }),
        )
        .route(
            "/panic",
            post(|| async {
                if true {
                    panic!("handler exploded: secret=hunter2");
                }
                StatusCode::OK.into_response()
            }),
        )
        .route(
            "/hang",
            post(|| async {
                std::future::pending::<()>().await;
                StatusCode::OK
            }),
        )
        // A tower stack whose inner layer fails with `BoxError`: without the outer
        // NormalizeStatusLayer this does not compile (axum needs `Error = Infallible`).
        .layer(
            ServiceBuilder::new()
                .layer(NormalizeStatusLayer::elevenlabs())
                .layer(TimeoutLayer::new(Duration::from_millis(100))),
        )
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Server { addr, stop, task }
}

impl Server {
    async fn finish(self) {
        let _ = self.stop.send(());
        bounded(self.task).await.unwrap().unwrap();
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn post_to(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Answer {
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"type\":\"speech_to_text\"}",
        )))
        .unwrap();
    let response = bounded(client.request(request)).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = bounded(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn router_with_timeout_stack_answers_the_contract_over_a_socket() {
    let server = serve(app()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let addr = server.addr;

    let created = post_to(&client, addr, "/created").await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.body, "stored");

    let bad = post_to(&client, addr, "/bad").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body, "unknown event");

    let throttled = post_to(&client, addr, "/throttled").await;
    assert_eq!(throttled.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(throttled.headers[header::RETRY_AFTER], "9");
    assert_eq!(throttled.json()["code"], "handler_throttled");

    let redirect = post_to(&client, addr, "/redirect").await;
    assert_eq!(redirect.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(redirect.headers.get(header::LOCATION).is_none());
    assert_eq!(redirect.json()["code"], "handler_redirected");

    let hang = post_to(&client, addr, "/hang").await;
    assert_eq!(hang.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hang.headers[header::RETRY_AFTER], "30");
    assert_eq!(hang.json()["code"], "handler_timeout");

    let panic = post_to(&client, addr, "/panic").await;
    assert_eq!(panic.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(panic.json()["code"], "handler_panicked");
    assert!(!String::from_utf8_lossy(&panic.body).contains("hunter2"));

    // The panic cost one answer, not the server: the next request is served as usual.
    let after = post_to(&client, addr, "/created").await;
    assert_eq!(after.status, StatusCode::OK);

    drop(client);
    server.finish().await;
}

#[tokio::test]
async fn layer_on_a_plain_router_turns_202_into_200() {
    let router: Router = Router::new()
        .route("/", post(|| async { StatusCode::ACCEPTED }))
        .layer(NormalizeStatusLayer::elevenlabs());

    let server = serve(router).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let answer = post_to(&client, server.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    drop(client);
    server.finish().await;
}
