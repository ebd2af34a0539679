//! gRPC responses pass through `NormalizeStatusLayer` untouched: a real tonic-health server,
//! wrapped by the layer, served on a loopback port and called with the tonic-health client.
#![cfg(all(feature = "normalize", feature = "tonic"))]

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hookgate::normalize::{NormalizeStatusLayer, SenderAction, SenderContract};
use http::StatusCode;
use tokio::sync::oneshot;
use tokio_stream_shim::next_within;
use tonic::{
    body::Body,
    transport::{server::TcpIncoming, Channel, Server},
};
use tonic_health::{
    pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest},
    server::{health_reporter, HealthReporter},
};
use tower::{util::MapResponse, ServiceExt};

const SERVICE: &str = "hookgate.test.Transcripts";
const BOUND: Duration = Duration::from_secs(10);

/// Serves tonic-health behind `layer` on 127.0.0.1; returns the address, the reporter and a
/// shutdown handle.
async fn serve(layer: NormalizeStatusLayer) -> (SocketAddr, HealthReporter, Shutdown) {
    let (reporter, health) = health_reporter();
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Server::builder().layer(layer).serve_with_incoming_shutdown(
        health,
        TcpIncoming::from(listener),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, reporter, Shutdown { stop, server })
}

struct Shutdown {
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Shutdown {
    async fn finish(self) {
        let _ = self.stop.send(());
        bounded(self.server).await.unwrap().unwrap();
    }
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("bounded by 10 s")
}

/// What the client transport saw: the HTTP status and content type of every response.
type Seen = Arc<Mutex<Vec<(StatusCode, Option<String>)>>>;

/// A tonic-health client whose transport records each response's HTTP status, so the tests can
/// assert the layer left it alone (tonic itself reads the grpc-status trailer, not the status).
async fn client(
    addr: SocketAddr,
) -> (
    HealthClient<
        MapResponse<Channel, impl FnOnce(http::Response<Body>) -> http::Response<Body> + Clone>,
    >,
    Seen,
) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(BOUND)
        .timeout(BOUND)
        .connect()
        .await
        .unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let transport = channel.map_response(move |response: http::Response<Body>| {
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        record
            .lock()
            .unwrap()
            .push((response.status(), content_type));
        response
    });
    (HealthClient::new(transport), seen)
}

/// Every response the client saw was the gRPC server's own: HTTP 200, `application/grpc`.
fn assert_untouched(seen: &Seen, expected_responses: usize) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), expected_responses, "{seen:?}");
    for (status, content_type) in seen.iter() {
        assert_eq!(*status, StatusCode::OK, "{seen:?}");
        assert!(
            content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/grpc")),
            "{seen:?}"
        );
    }
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test]
async fn unary_answers_and_grpc_errors_pass_through() {
    let (addr, _reporter, shutdown) = serve(NormalizeStatusLayer::elevenlabs()).await;
    let (mut client, seen) = client(addr).await;

    let answer = bounded(client.check(check(SERVICE))).await.unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);

    // An unknown service is a gRPC NOT_FOUND: a trailers-only response (HTTP 200,
    // `application/grpc`) whose grpc-status must survive the layer.
    let error = bounded(client.check(check("no.such.Service")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert_untouched(&seen, 2);

    drop(client);
    shutdown.finish().await;
}

#[tokio::test]
async fn server_streaming_passes_through_frame_by_frame() {
    let (addr, reporter, shutdown) = serve(NormalizeStatusLayer::elevenlabs()).await;
    let (mut client, seen) = client(addr).await;

    let mut updates = bounded(client.watch(check(SERVICE)))
        .await
        .unwrap()
        .into_inner();
    let first = next_within(&mut updates, BOUND).await;
    assert_eq!(first.status(), ServingStatus::Serving);

    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    let second = next_within(&mut updates, BOUND).await;
    assert_eq!(second.status(), ServingStatus::NotServing);
    assert_untouched(&seen, 1);

    drop(updates);
    drop(client);
    shutdown.finish().await;
}

/// Under a contract whose only success is `204`, a plain HTTP `200` would be rewritten; a gRPC
/// `200` must not be, or every call would fail.
#[tokio::test]
async fn grpc_is_exempt_even_where_the_contract_would_rewrite_200() {
    let contract = SenderContract::builder("only-204")
        .on([204], SenderAction::Success)
        .on(500..=599, SenderAction::Retry)
        .answer_success_with(StatusCode::NO_CONTENT)
        .build()
        .unwrap();
    assert_eq!(contract.action_for(StatusCode::OK), SenderAction::Drop);
    let (addr, _reporter, shutdown) = serve(NormalizeStatusLayer::new(contract)).await;
    let (mut client, seen) = client(addr).await;

    let answer = bounded(client.check(check(SERVICE))).await.unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    assert_untouched(&seen, 1);

    drop(client);
    shutdown.finish().await;
}

mod tokio_stream_shim {
    //! `Streaming::message` with a bound, without pulling in tokio-stream.
    use std::time::Duration;
    use tonic::Streaming;
    use tonic_health::pb::HealthCheckResponse;

    pub(crate) async fn next_within(
        stream: &mut Streaming<HealthCheckResponse>,
        bound: Duration,
    ) -> HealthCheckResponse {
        tokio::time::timeout(bound, stream.message())
            .await
            .expect("an update within the bound")
            .expect("no gRPC error")
            .expect("the stream is still open")
    }
}
