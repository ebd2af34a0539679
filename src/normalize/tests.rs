//! Tests of the layer around scripted inner services: one test per row of the module docs'
//! table, errors, panics and the handler deadline (on a paused clock). The contract value's own
//! tests are in `contract.rs`.

use std::{
    convert::Infallible,
    error::Error as StdError,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

use super::*;
use crate::problem::{Problem, ProblemCode};

type Reply = Response<Full<Bytes>>;

fn inner_response(status: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"handler body")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("x-handler", HeaderValue::from_static("yes"));
    response
}

/// Calls `layer` around a handler that answers `make()`.
async fn answer_with<F>(layer: NormalizeStatusLayer, make: F) -> Reply
where
    F: Fn() -> Response<Full<Bytes>> + Clone + Send + 'static,
{
    let handler = service_fn(move |_req: Request<Full<Bytes>>| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    });
    layer
        .layer(handler)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap()
}

async fn answer_status(status: u16) -> Reply {
    answer_with(NormalizeStatusLayer::elevenlabs(), move || {
        inner_response(status)
    })
    .await
}

async fn answer_error(error: BoxError) -> Reply {
    let error = Arc::new(std::sync::Mutex::new(Some(error)));
    let handler = service_fn(move |_req: Request<Full<Bytes>>| {
        let error = error.lock().unwrap().take().unwrap();
        async move { Err::<Response<Full<Bytes>>, BoxError>(error) }
    });
    NormalizeStatusLayer::elevenlabs()
        .layer(handler)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap()
}

async fn body_text(response: Reply) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn normalized(response: &Reply) -> Option<(Option<u16>, NormalizeCause)> {
    response
        .extensions()
        .get::<Normalized>()
        .map(|n| (n.original.map(|s| s.as_u16()), n.cause))
}

/// Asserts a problem+json answer with `status`, `code`, and the extension, and returns the body.
async fn assert_problem(
    response: Reply,
    status: u16,
    code: ProblemCode,
    original: Option<u16>,
    cause: NormalizeCause,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        crate::problem::PROBLEM_JSON
    );
    assert!(response.headers().get("x-handler").is_none());
    assert_eq!(response.extensions().get::<ProblemCode>(), Some(&code));
    assert_eq!(normalized(&response), Some((original, cause)));
    let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(json["code"], code.as_str());
    assert_eq!(json["status"], status);
    json
}

// --- the table, one test per row ---

#[tokio::test]
async fn ok_passes_through_untouched() {
    let response = answer_status(200).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-handler"], "yes");
    assert_eq!(normalized(&response), None);
    assert_eq!(body_text(response).await, "handler body");
}

#[tokio::test]
async fn other_2xx_becomes_exactly_200_keeping_headers_and_body() {
    for status in [201, 202, 204, 226, 299] {
        let response = answer_status(status).await;
        assert_eq!(response.status(), StatusCode::OK, "{status}");
        assert_eq!(response.headers()["x-handler"], "yes");
        assert_eq!(
            normalized(&response),
            Some((Some(status), NormalizeCause::SuccessStatus))
        );
        assert_eq!(body_text(response).await, "handler body");
    }
}

#[tokio::test]
async fn redirect_becomes_500_problem_without_location() {
    for status in [301, 302, 303, 304, 307, 308] {
        let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
            let mut r = inner_response(status);
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/elsewhere"));
            r
        })
        .await;
        assert!(response.headers().get(header::LOCATION).is_none());
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_problem(
            response,
            500,
            ProblemCode::HANDLER_REDIRECTED,
            Some(status),
            NormalizeCause::Redirect,
        )
        .await;
    }
}

#[tokio::test]
async fn retry_later_statuses_become_503_keeping_the_inner_retry_after() {
    for status in [408, 425, 429] {
        let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
            let mut r = inner_response(status);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
            r
        })
        .await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let json = assert_problem(
            response,
            503,
            ProblemCode::HANDLER_THROTTLED,
            Some(status),
            NormalizeCause::RetryLaterStatus,
        )
        .await;
        assert_eq!(json["retry_after"], 7);
    }
}

#[tokio::test]
async fn retry_later_status_without_retry_after_gets_the_layer_default() {
    let response = answer_status(429).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");

    let layer = NormalizeStatusLayer::elevenlabs().retry_after(Duration::from_millis(4500));
    let response = answer_with(layer, || inner_response(408)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn retry_after_as_http_date_is_copied_verbatim() {
    const DATE: &str = "Wed, 21 Oct 2037 07:28:00 GMT";
    let response = answer_with(NormalizeStatusLayer::elevenlabs(), || {
        let mut r = inner_response(429);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(DATE));
        r
    })
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], DATE);
}

#[tokio::test]
async fn a_retry_after_that_is_neither_seconds_nor_a_date_gets_the_layer_default() {
    for garbage in ["1.5", "-1", "", "soon", "Wed, 99 Oct 2037 07:28:00 GMT"] {
        let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
            let mut r = inner_response(429);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(garbage));
            r
        })
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30", "{garbage:?}");
    }
}

#[tokio::test]
async fn other_4xx_are_kept_with_the_handlers_body() {
    for status in [400, 401, 403, 404, 409, 410, 413, 415, 422, 451, 499] {
        let response = answer_status(status).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["x-handler"], "yes");
        assert_eq!(normalized(&response), None);
        assert_eq!(body_text(response).await, "handler body");
    }
}

#[tokio::test]
async fn server_errors_are_kept_with_their_retry_after() {
    for status in [500, 501, 502, 503, 504, 599] {
        let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
            let mut r = inner_response(status);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
            r
        })
        .await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(normalized(&response), None);
        assert_eq!(body_text(response).await, "handler body");
    }
}

#[tokio::test]
async fn grpc_responses_are_untouched() {
    for content_type in [
        "application/grpc",
        "application/grpc+proto",
        "Application/GRPC-Web",
    ] {
        for status in [201, 302, 429, 600] {
            let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                let mut r = inner_response(status);
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r
            })
            .await;
            assert_eq!(response.status().as_u16(), status, "{content_type}");
            assert_eq!(normalized(&response), None);
            assert_eq!(body_text(response).await, "handler body");
        }
    }
}

#[tokio::test]
async fn statuses_outside_200_to_599_become_500() {
    for status in [100, 103, 600, 999] {
        let response = answer_status(status).await;
        assert_problem(
            response,
            500,
            ProblemCode::HANDLER_ERROR,
            Some(status),
            NormalizeCause::UnexpectedStatus,
        )
        .await;
    }
}

async fn hookgate_rejection(
    layer: NormalizeStatusLayer,
    status: StatusCode,
    code: ProblemCode,
) -> Reply {
    answer_with(layer, move || {
        let problem = Problem::new(status, code)
            .with_detail("from an inner hookgate layer")
            .with_retry_after(Duration::from_secs(2))
            .into_response::<Full<Bytes>>();
        let (mut parts, body) = problem.into_parts();
        parts
            .headers
            .insert("ratelimit", HeaderValue::from_static("\"client\";r=0;t=2"));
        Response::from_parts(parts, Full::new(futures_body(body)))
    })
    .await
}

#[tokio::test]
async fn hookgate_retry_later_4xx_becomes_503_under_elevenlabs_keeping_code_and_headers() {
    for (status, code) in [
        (StatusCode::TOO_MANY_REQUESTS, ProblemCode::RATE_LIMITED),
        (StatusCode::TOO_MANY_REQUESTS, ProblemCode::CLIENT_BLOCKED),
        (StatusCode::REQUEST_TIMEOUT, ProblemCode::BODY_TIMEOUT),
    ] {
        let response = hookgate_rejection(NormalizeStatusLayer::elevenlabs(), status, code).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert_eq!(
            SenderContract::elevenlabs().action_for(response.status()),
            SenderAction::Retry
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()["ratelimit"], "\"client\";r=0;t=2");
        assert_eq!(response.extensions().get::<ProblemCode>(), Some(&code));
        assert_eq!(
            normalized(&response),
            Some((Some(status.as_u16()), NormalizeCause::RetryLaterStatus))
        );
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["code"], code.as_str());
        assert_eq!(body["detail"], "from an inner hookgate layer");
    }
}

#[tokio::test]
async fn hookgate_retry_later_4xx_without_a_wait_gets_the_layers_retry_after() {
    let layer = NormalizeStatusLayer::elevenlabs().retry_after(Duration::from_secs(7));
    let response = answer_with(layer, || {
        let problem = Problem::new(StatusCode::REQUEST_TIMEOUT, ProblemCode::BODY_TIMEOUT)
            .into_response::<Full<Bytes>>();
        let (parts, body) = problem.into_parts();
        Response::from_parts(parts, Full::new(futures_body(body)))
    })
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(body["retry_after"], 7);
    assert_eq!(body["code"], "body_timeout");
}

#[tokio::test]
async fn hookgate_retry_later_4xx_is_kept_where_the_contract_retries_it() {
    let response = hookgate_rejection(
        NormalizeStatusLayer::standard_webhooks(),
        StatusCode::TOO_MANY_REQUESTS,
        ProblemCode::RATE_LIMITED,
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    assert_eq!(normalized(&response), None);
}

#[tokio::test]
async fn hookgate_final_4xx_rejections_pass_through() {
    let response = hookgate_rejection(
        NormalizeStatusLayer::elevenlabs(),
        StatusCode::UNAUTHORIZED,
        ProblemCode::SIGNATURE_MISMATCH,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::SIGNATURE_MISMATCH)
    );
    assert_eq!(normalized(&response), None);
}

/// The bytes of a problem body, synchronously (a problem body is one ready frame).
fn futures_body(body: Full<Bytes>) -> Bytes {
    let mut body = std::pin::pin!(body);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match body.as_mut().poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        _ => panic!("a problem body is one ready data frame"),
    }
}

#[tokio::test]
async fn server_error_the_contract_does_not_retry_becomes_the_failure_status() {
    let contract = SenderContract::builder("picky")
        .on([200], SenderAction::Success)
        .on([500, 503], SenderAction::Retry)
        .build()
        .unwrap();
    let response = answer_with(NormalizeStatusLayer::new(contract), || inner_response(501)).await;
    assert_problem(
        response,
        500,
        ProblemCode::HANDLER_ERROR,
        Some(501),
        NormalizeCause::UnexpectedStatus,
    )
    .await;
}

// --- errors ---

#[tokio::test]
async fn elapsed_error_becomes_503_with_retry_after() {
    let response = answer_error(Box::new(tower::timeout::error::Elapsed::new())).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    assert_problem(
        response,
        503,
        ProblemCode::HANDLER_TIMEOUT,
        None,
        NormalizeCause::Timeout,
    )
    .await;
}

#[tokio::test]
async fn overloaded_error_becomes_503_with_retry_after() {
    let response = answer_error(Box::new(tower::load_shed::error::Overloaded::new())).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    assert_problem(
        response,
        503,
        ProblemCode::HANDLER_OVERLOADED,
        None,
        NormalizeCause::Overloaded,
    )
    .await;
}

#[derive(Debug)]
struct Wrapper(tower::timeout::error::Elapsed);

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream call failed")
    }
}

impl StdError for Wrapper {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn elapsed_found_in_the_source_chain_is_a_timeout() {
    let error = Wrapper(tower::timeout::error::Elapsed::new());
    let response = answer_error(Box::new(error)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(normalized(&response), Some((None, NormalizeCause::Timeout)));
}

#[tokio::test]
async fn other_error_becomes_500_without_leaking_its_text() {
    let response = answer_error("connection to postgres://admin:hunter2@db failed".into()).await;
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
    let json = assert_problem(
        response,
        500,
        ProblemCode::HANDLER_ERROR,
        None,
        NormalizeCause::Error,
    )
    .await;
    let text = json.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("postgres"),
        "{text}"
    );
}

/// A service whose `poll_ready` is never ready: `LoadShed` sheds every request.
#[derive(Clone, Debug)]
struct NeverReady;

impl Service<Request<Full<Bytes>>> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }

    fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn real_load_shed_becomes_503() {
    let service = ServiceBuilder::new()
        .layer(NormalizeStatusLayer::elevenlabs())
        .load_shed()
        .service(NeverReady);
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        normalized(&response),
        Some((None, NormalizeCause::Overloaded))
    );
}

/// A service whose `poll_ready` fails or panics once, counting calls.
#[derive(Clone, Debug)]
struct FailingReady {
    panic: bool,
    failed: bool,
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for FailingReady {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.failed {
            return Poll::Ready(Ok(()));
        }
        self.failed = true;
        if self.panic {
            panic!("poll_ready exploded");
        }
        Poll::Ready(Err(Box::new(tower::load_shed::error::Overloaded::new())))
    }

    fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(inner_response(200)))
    }
}

#[tokio::test]
async fn poll_ready_failures_are_answered_without_calling_the_inner_service() {
    for (panic, status, cause) in [
        (false, 503, NormalizeCause::Overloaded),
        (true, 500, NormalizeCause::Panic),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = NormalizeStatusLayer::elevenlabs().layer(FailingReady {
            panic,
            failed: false,
            calls: calls.clone(),
        });
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(normalized(&response), Some((None, cause)));
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // The next request reaches the (now ready) inner service.
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

// --- panics ---

#[derive(Clone, Debug)]
struct PanicsInCall;

impl Service<Request<Full<Bytes>>> for PanicsInCall {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
        panic!("call exploded: secret=hunter2")
    }
}

#[tokio::test]
async fn panic_in_call_becomes_500() {
    let response = NormalizeStatusLayer::elevenlabs()
        .layer(PanicsInCall)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    let json = assert_problem(
        response,
        500,
        ProblemCode::HANDLER_PANICKED,
        None,
        NormalizeCause::Panic,
    )
    .await;
    assert!(!json.to_string().contains("hunter2"));
}

#[tokio::test]
async fn panic_while_polling_the_future_becomes_500() {
    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        tokio::task::yield_now().await;
        if true {
            panic!("{}", String::from("future exploded: secret=hunter2"));
        }
        Ok::<_, Infallible>(inner_response(200))
    });
    let response = NormalizeStatusLayer::elevenlabs()
        .layer(handler)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    let json = assert_problem(
        response,
        500,
        ProblemCode::HANDLER_PANICKED,
        None,
        NormalizeCause::Panic,
    )
    .await;
    assert!(!json.to_string().contains("hunter2"));
}

// --- the handler deadline (paused clock) ---

fn sleeping_handler(
    wait: Duration,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| async move {
        tokio::time::sleep(wait).await;
        Ok::<_, Infallible>(inner_response(201))
    })
}

#[tokio::test(start_paused = true)]
async fn deadline_answers_503_before_a_slow_handler() {
    let layer = NormalizeStatusLayer::elevenlabs()
        .handler_deadline(Duration::from_secs(10))
        .retry_after(Duration::from_secs(60));
    let start = tokio::time::Instant::now();
    let response = layer
        .layer(sleeping_handler(Duration::from_secs(3600)))
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(response.headers()[header::RETRY_AFTER], "60");
    assert_problem(
        response,
        503,
        ProblemCode::HANDLER_TIMEOUT,
        None,
        NormalizeCause::Deadline,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn handler_answering_before_the_deadline_is_normalized_as_usual() {
    let layer = NormalizeStatusLayer::elevenlabs().handler_deadline(Duration::from_secs(10));
    let start = tokio::time::Instant::now();
    let response = layer
        .layer(sleeping_handler(Duration::from_secs(9)))
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(9));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        normalized(&response),
        Some((Some(201), NormalizeCause::SuccessStatus))
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_a_slow_handler_is_awaited() {
    let start = tokio::time::Instant::now();
    let response = NormalizeStatusLayer::elevenlabs()
        .layer(sleeping_handler(Duration::from_secs(3600)))
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
    assert_eq!(response.status(), StatusCode::OK);
}

// --- other contracts ---

#[tokio::test]
async fn standard_webhooks_keeps_what_the_sender_already_reads_right() {
    for (inner, answer) in [
        (201, 201),
        (204, 204),
        (429, 429),
        (408, 408),
        (410, 410),
        (502, 502),
        (302, 500),
    ] {
        let response = answer_with(NormalizeStatusLayer::standard_webhooks(), move || {
            inner_response(inner)
        })
        .await;
        assert_eq!(response.status().as_u16(), answer, "inner {inner}");
    }
}

#[test]
fn service_error_type_is_infallible() {
    fn assert_infallible<S: Service<Request<Full<Bytes>>, Error = Infallible>>(_: &S) {}
    let timeout = tower::timeout::Timeout::new(
        sleeping_handler(Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    assert_infallible(&NormalizeStatusLayer::elevenlabs().layer(timeout));
}
