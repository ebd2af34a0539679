//! hookgate's layers compose the tower way: a layer's response has the handler's own body
//! type, so `ServiceBuilder::option_layer` and `tower::util::Either` take them like any other
//! layer, and every layer answers a gRPC client in gRPC form.
#![cfg(all(feature = "rate-limit", feature = "client-checks"))]

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    time::Duration,
};

use bytes::Bytes;
use hookgate::{
    client_checks::{AllowIpLayer, RequireHttpsLayer},
    client_ip::ClientIp,
    problem::ProblemCode,
    rate_limit::{FailurePolicy, MemoryStore, Rate},
    FailureLimitLayer, RateLimitLayer,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, util::Either, Layer, Service, ServiceBuilder, ServiceExt};

fn handler(
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::from("handled")))
    })
}

fn from(peer: [u8; 4]) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhooks/elevenlabs")
        .body(Full::default())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from((peer, 40_000)));
    request
}

fn grpc_from(peer: [u8; 4]) -> Request<Full<Bytes>> {
    let mut request = from(peer);
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    request
}

/// One request a second per client, no burst.
fn one_per_second() -> RateLimitLayer<ClientIp, MemoryStore<IpAddr>> {
    RateLimitLayer::per_client(Rate::per_second(NonZeroU32::MIN), ClientIp::peer())
}

async fn text(response: Response<Full<Bytes>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn option_layer_applies_a_hookgate_layer_only_when_configured() {
    for configured in [true, false] {
        let service = ServiceBuilder::new()
            .option_layer(configured.then(one_per_second))
            .service(handler());
        let first = service.clone().oneshot(from([192, 0, 2, 1])).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(text(first).await, "handled");
        let second = service.clone().oneshot(from([192, 0, 2, 1])).await.unwrap();
        if configured {
            assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                second.extensions().get::<ProblemCode>(),
                Some(&ProblemCode::RATE_LIMITED)
            );
            assert!(text(second).await.contains("\"code\":\"rate_limited\""));
        } else {
            assert_eq!(second.status(), StatusCode::OK, "no limit when left out");
            assert_eq!(text(second).await, "handled");
        }
    }
}

#[tokio::test]
async fn either_chooses_between_two_hookgate_layers() {
    let allow: Either<AllowIpLayer, RequireHttpsLayer> =
        Either::Left(AllowIpLayer::new(["192.0.2.0/24"], ClientIp::peer()).unwrap());
    let https: Either<AllowIpLayer, RequireHttpsLayer> =
        Either::Right(RequireHttpsLayer::new(ClientIp::peer()));

    let service = allow.layer(handler());
    let inside = service.clone().oneshot(from([192, 0, 2, 7])).await.unwrap();
    assert_eq!(inside.status(), StatusCode::OK);
    let outside = service.oneshot(from([198, 51, 100, 7])).await.unwrap();
    assert_eq!(outside.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        outside.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::CLIENT_NOT_ALLOWED)
    );

    let plain_http = https.layer(handler()).oneshot(from([192, 0, 2, 7])).await;
    let plain_http = plain_http.unwrap();
    assert_eq!(plain_http.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        plain_http.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::HTTPS_REQUIRED)
    );
}

/// Asserts a gRPC trailers-only answer: HTTP 200, the gRPC status, no JSON body.
async fn assert_grpc(response: Response<Full<Bytes>>, grpc_status: &str, code: ProblemCode) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], grpc_status);
    assert_eq!(response.extensions().get::<ProblemCode>(), Some(&code));
    assert_eq!(
        text(response).await,
        "",
        "no problem+json for a gRPC client"
    );
}

#[tokio::test]
async fn the_rate_limiter_answers_grpc_clients_in_grpc_form() {
    let service = one_per_second().layer(handler());
    let first = service.clone().oneshot(grpc_from([192, 0, 2, 1])).await;
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    let limited = service.oneshot(grpc_from([192, 0, 2, 1])).await.unwrap();
    // 429 maps to UNAVAILABLE (14): a gRPC client retries it.
    assert_grpc(limited, "14", ProblemCode::RATE_LIMITED).await;
}

#[tokio::test]
async fn the_failure_limiter_answers_grpc_clients_in_grpc_form() {
    let allowed = Rate::per_minute(NonZeroU32::MIN).burst(NonZeroU32::MIN);
    let policy = FailurePolicy::block_for(Duration::from_secs(60)).unwrap();
    // The handler stands for a verification layer refusing every request.
    let refuse = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            hookgate::problem::Problem::new(
                StatusCode::UNAUTHORIZED,
                ProblemCode::SIGNATURE_MISMATCH,
            )
            .into_response::<Full<Bytes>>(),
        )
    });
    let service = FailureLimitLayer::new(allowed, policy, ClientIp::peer()).layer(refuse);
    for _ in 0..2 {
        let failed = service.clone().oneshot(grpc_from([192, 0, 2, 9])).await;
        assert_eq!(failed.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = service.oneshot(grpc_from([192, 0, 2, 9])).await.unwrap();
    assert_grpc(blocked, "14", ProblemCode::CLIENT_BLOCKED).await;
}

#[tokio::test]
async fn the_client_checks_answer_grpc_clients_in_grpc_form() {
    let service = AllowIpLayer::new(["192.0.2.0/24"], ClientIp::peer())
        .unwrap()
        .layer(handler());
    let refused = service.oneshot(grpc_from([198, 51, 100, 7])).await.unwrap();
    // 403 maps to PERMISSION_DENIED (7).
    assert_grpc(refused, "7", ProblemCode::CLIENT_NOT_ALLOWED).await;
}
