//! What `NormalizeStatusLayer` adds to a trivial handler.
//!
//! Run with `cargo bench --bench normalize --features normalize`.
//!
//! Every iteration clones the service (as axum does per request), builds a request, drives
//! `ready` + `call` + the response future on a current-thread runtime, and drops the response.
//! `bare` is the handler alone; the other cases differ from it only by the layer.

use std::{convert::Infallible, hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{criterion_main, Criterion};
use hookgate::normalize::NormalizeStatusLayer;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};

fn handler(
    status: StatusCode,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| async move {
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    })
}

fn failing_handler() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = tower::BoxError,
    Future = impl Send,
> + Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(
            tower::BoxError::from(tower::timeout::error::Elapsed::new()),
        )
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("normalize");

    macro_rules! case {
        ($name:expr, $service:expr) => {{
            let service = $service;
            group.bench_function($name, |b| {
                b.to_async(&rt).iter(|| {
                    let service = service.clone();
                    async move {
                        let response = service
                            .oneshot(black_box(Request::new(Full::default())))
                            .await;
                        black_box(response.map(|r| r.status()))
                    }
                })
            });
        }};
    }

    case!("bare handler, 200", handler(StatusCode::OK));
    case!(
        "layer, handler 200 (pass-through)",
        NormalizeStatusLayer::elevenlabs().layer(handler(StatusCode::OK))
    );
    case!(
        "layer, handler 201 (rewritten to 200)",
        NormalizeStatusLayer::elevenlabs().layer(handler(StatusCode::CREATED))
    );
    case!(
        "layer + handler deadline, handler 200",
        NormalizeStatusLayer::elevenlabs()
            .handler_deadline(Duration::from_secs(10))
            .layer(handler(StatusCode::OK))
    );
    case!(
        "layer, handler 429 (problem+json 503)",
        NormalizeStatusLayer::elevenlabs().layer(handler(StatusCode::TOO_MANY_REQUESTS))
    );
    case!(
        "layer, inner Elapsed error (problem+json 503)",
        NormalizeStatusLayer::elevenlabs().layer(failing_handler())
    );
    group.finish();
}

mod group {
    //! The criterion group (its generated function has no docs of its own).
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
