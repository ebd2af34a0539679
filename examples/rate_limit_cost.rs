//! What a rate limiter adds to one allowed request, hookgate's against tower_governor's, with
//! the same quota (a burst so large that every request is allowed) and the client read from
//! axum's `ConnectInfo<SocketAddr>` by both. The companion of `benches/rate_limit.rs`
//! (group `vs_tower_governor`), for machines too loaded for wall-clock benchmarks:
//!
//! - `cargo run --release --example rate_limit_cost --features rate-limit` runs every variant
//!   in interleaved rounds of short batches and prints, per variant, the median and the
//!   fastest batch (ns per request) and the cost over its bare service.
//! - `... -- VARIANT CLIENTS N` runs one variant N times (or `hookgate_refused`: every request
//!   over a rate of one an hour, answered 429 with its problem body; or
//!   `hookgate_headers_varying`: a `RateLimit` value that differs at every answer; or, built
//!   with hookgate's `axum` feature, `hookgate_decision_axum`: the decision over
//!   tower_governor's bare service) (CLIENTS: `one` or `10k`), for an
//!   instruction count: under `valgrind --tool=callgrind`, the difference between N = 200 000
//!   and N = 100 000 divided by 100 000 is the instructions per request, free of start-up.

use std::{
    convert::Infallible,
    future::{ready, Future},
    hint::black_box,
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Instant,
};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hookgate::{
    client_ip::ClientIp,
    rate_limit::{Rate, RateLimitLayer},
};
use http::{HeaderValue, Request, Response};
use http_body_util::{Empty, Full};
use tower::{service_fn, Layer, Service};
use tower_governor::{governor::GovernorConfigBuilder, GovernorLayer};

const VARIANTS: [&str; 8] = [
    "bare_full",
    "hookgate_decision",
    "hookgate_headers",
    "bare_json",
    "hookgate_headers_json",
    "bare_axum",
    "tower_governor",
    "tower_governor_headers",
];

/// Which bare service a variant's cost is measured over.
fn bare_of(variant: &str) -> &'static str {
    match variant {
        v if v.ends_with("_json") => "bare_json",
        v if v.starts_with("tower_governor") || v.ends_with("_axum") => "bare_axum",
        _ => "bare_full",
    }
}

/// Requests from one client, or from 10 000 in turn.
fn requests(rotating: bool) -> impl FnMut() -> Request<Empty<Bytes>> {
    let peers: Vec<SocketAddr> = (0..10_000u32)
        .map(|n| SocketAddr::from((Ipv4Addr::from(0x0A00_0000 + n), 40_000)))
        .collect();
    let mut i = 0;
    move || {
        if rotating {
            i = (i + 1) % peers.len();
        }
        let mut request = Request::new(Empty::new());
        request.extensions_mut().insert(ConnectInfo(peers[i]));
        request
    }
}

/// Calls `service` `n` times, each answer polled to completion at once.
fn drive<S, B>(service: &mut S, next: &mut impl FnMut() -> Request<Empty<Bytes>>, n: u64)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let mut future = pin!(service.call(next()));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(response) => drop(black_box(response.unwrap())),
            Poll::Pending => unreachable!("every service here answers at once"),
        }
    }
}

type Runner = Box<dyn FnMut(u64)>;

fn runner(variant: &str, rotating: bool) -> Runner {
    let mut next = requests(rotating);
    let full = || {
        service_fn(|_req: Request<Empty<Bytes>>| {
            ready(Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())))
        })
    };
    let json = || {
        service_fn(|_req: Request<Empty<Bytes>>| {
            let mut response = Response::new(Full::<Bytes>::default());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            ready(Ok::<_, Infallible>(response))
        })
    };
    let axum_body = || {
        service_fn(|_req: Request<Empty<Bytes>>| {
            ready(Ok::<_, Infallible>(
                Response::new(axum::body::Body::empty()),
            ))
        })
    };
    let rate = || Rate::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let client_ip = || {
        ClientIp::peer().peer_addr_with(|extensions| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
        })
    };
    match variant {
        "bare_full" => {
            let mut s = full();
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "hookgate_decision" => {
            let mut s = RateLimitLayer::per_client(rate(), client_ip())
                .shadow()
                .layer(full());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "hookgate_refused" => {
            // One request an hour: every request after the first is refused (429, problem body).
            let once = Rate::per_hour(NonZeroU32::new(1).unwrap());
            let mut s = RateLimitLayer::per_client(once, client_ip()).layer(full());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "hookgate_headers" => {
            let mut s = RateLimitLayer::per_client(rate(), client_ip()).layer(full());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "hookgate_headers_varying" => {
            // One request a second with a burst of a billion: every request takes one more of
            // the burst, so no two answers carry the same `RateLimit` value (`r` counts down,
            // `t` grows), unlike the variants above where every answer finds the burst full.
            let slow = Rate::per_second(NonZeroU32::new(1).unwrap())
                .burst(NonZeroU32::new(1_000_000_000).unwrap());
            let mut s = RateLimitLayer::per_client(slow, client_ip()).layer(full());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "bare_json" => {
            let mut s = json();
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "hookgate_headers_json" => {
            let mut s = RateLimitLayer::per_client(rate(), client_ip()).layer(json());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        #[cfg(feature = "axum")]
        "hookgate_decision_axum" => {
            // The decision over tower_governor's bare service (axum's `Body`, a smaller
            // response, moved without a `memcpy` call): needs hookgate's `axum` feature.
            let mut s = RateLimitLayer::per_client(rate(), client_ip())
                .shadow()
                .layer(axum_body());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "bare_axum" => {
            let mut s = axum_body();
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .finish()
                .unwrap();
            let mut s = GovernorLayer::new(config).layer(axum_body());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        "tower_governor_headers" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .use_headers()
                .finish()
                .unwrap();
            let mut s = GovernorLayer::new(config).layer(axum_body());
            Box::new(move |n| drive(&mut s, &mut next, n))
        }
        other => panic!("unknown variant {other:?}; one of {VARIANTS:?}"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [variant, clients, n] = args.as_slice() {
        let mut run = runner(variant, clients == "10k");
        run(n.parse().expect("N: a number of requests"));
        return;
    }
    const ROUNDS: usize = 41;
    const BATCH: u64 = 20_000;
    for (clients, rotating) in [("one client", false), ("10k clients", true)] {
        let mut runners: Vec<Runner> = VARIANTS.iter().map(|v| runner(v, rotating)).collect();
        let mut samples = vec![Vec::with_capacity(ROUNDS); VARIANTS.len()];
        for run in &mut runners {
            run(BATCH); // warm up: every key tracked, caches filled
        }
        for _ in 0..ROUNDS {
            for (run, samples) in runners.iter_mut().zip(&mut samples) {
                let start = Instant::now();
                run(BATCH);
                samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
            }
        }
        let stats: Vec<(f64, f64)> = samples
            .iter_mut()
            .map(|s| {
                let min = s.iter().copied().fold(f64::INFINITY, f64::min);
                (median(s), min)
            })
            .collect();
        let of = |name: &str| stats[VARIANTS.iter().position(|v| *v == name).unwrap()];
        println!("{clients}: ns per request, median of {ROUNDS} batches (fastest batch); over its bare service");
        for (variant, (median, min)) in VARIANTS.iter().zip(&stats) {
            let (bare_median, bare_min) = of(bare_of(variant));
            println!(
                "  {variant:<24} {median:>7.1} ({min:>7.1})   +{:>6.1} (+{:>6.1})",
                median - bare_median,
                min - bare_min
            );
        }
    }
}
