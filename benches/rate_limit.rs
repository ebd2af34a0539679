//! Rate limiting costs: one keyed in-memory decision, the whole layer call on a trivial
//! handler, and a flood of one million distinct keys (the memory it leaves held:
//! `cargo run --release --example rate_limit_memory --features rate-limit`).
//!
//! Side by side with tower_governor (group `vs_tower_governor`): the same quota (a burst so
//! large that every request is allowed), the client taken from axum's
//! `ConnectInfo<SocketAddr>` by both, one hot client or 10 000 rotating ones, each layer over
//! a bare `service_fn` measured in the same run (hookgate's over one answering `Full<Bytes>`,
//! tower_governor's over one answering axum's `Body`, the body it requires). The cost of a
//! layer is its time minus its bare service's.
//!
//! Run: `cargo bench --bench rate_limit --features rate-limit`
//! (just the comparison: `... -- vs_tower_governor`)

use std::{
    convert::Infallible,
    future::ready,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    time::Duration,
};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{criterion_main, Criterion, Throughput};
use hookgate::{
    client_ip::ClientIp,
    rate_limit::{MemoryStore, Rate, RateLimitLayer},
};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use tower::{service_fn, Layer, Service};
use tower_governor::{governor::GovernorConfigBuilder, GovernorLayer};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));

    // A rate so high every decision is allowed: the common path.
    let store = MemoryStore::<IpAddr>::new(Rate::per_second(nz(1_000_000_000)));
    let key = ip(0xCB00_7107);
    group.bench_function("memory_store/one_key_allowed", |b| {
        b.iter(|| black_box(store.decide(black_box(&key))))
    });

    // An exhausted key: every decision is a denial with its retry time.
    let store = MemoryStore::<IpAddr>::new(Rate::per_hour(nz(1)));
    store.decide(&key);
    group.bench_function("memory_store/one_key_denied", |b| {
        b.iter(|| black_box(store.decide(black_box(&key))))
    });

    // Baselines for comparison: governor's own keyed limiter (DashMap store, no cap, no
    // sweep, no snapshot) and one reading of governor's default clock.
    let raw = governor::RateLimiter::<IpAddr, _, _>::dashmap(governor::Quota::per_second(nz(
        1_000_000_000,
    )));
    group.bench_function("baseline/governor_check_key", |b| {
        b.iter(|| black_box(raw.check_key(black_box(&key))))
    });
    let clock = governor::clock::DefaultClock::default();
    group.bench_function("baseline/default_clock_now", |b| {
        b.iter(|| black_box(governor::clock::Clock::now(&clock)))
    });

    // 10 000 tracked keys, visited in turn.
    let store = MemoryStore::<IpAddr>::new(Rate::per_second(nz(1_000_000)));
    let keys: Vec<IpAddr> = (0..10_000).map(ip).collect();
    for key in &keys {
        store.decide(key);
    }
    let mut i = 0;
    group.bench_function("memory_store/10k_keys_round_robin", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(store.decide(&keys[i]))
        })
    });
    group.finish();
}

fn request(peer: SocketAddr) -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    request.extensions_mut().insert(peer);
    request
}

fn layer_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Elements(1));
    let peer = SocketAddr::from(([203, 0, 113, 7], 40_000));
    let handler = || {
        service_fn(|_req: Request<Empty<Bytes>>| {
            ready(Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())))
        })
    };

    let mut bare = handler();
    group.bench_function("trivial_handler_alone", |b| {
        b.to_async(&rt).iter(|| bare.call(request(peer)))
    });

    let mut limited =
        RateLimitLayer::per_client(Rate::per_second(nz(1_000_000_000)), ClientIp::peer())
            .layer(handler());
    group.bench_function("per_client_allowed_with_headers", |b| {
        b.to_async(&rt).iter(|| limited.call(request(peer)))
    });

    let mut rejecting =
        RateLimitLayer::per_client(Rate::per_hour(nz(1)), ClientIp::peer()).layer(handler());
    group.bench_function("per_client_rejected_429", |b| {
        b.to_async(&rt).iter(|| rejecting.call(request(peer)))
    });

    let mut shadow =
        RateLimitLayer::per_client(Rate::per_second(nz(1_000_000_000)), ClientIp::peer())
            .shadow()
            .layer(handler());
    group.bench_function("per_client_shadow_allowed", |b| {
        b.to_async(&rt).iter(|| shadow.call(request(peer)))
    });

    // The same with a handler that sets one header, as real handlers do (the header map then
    // exists before the layer adds its two headers).
    let typed = || {
        service_fn(|_req: Request<Empty<Bytes>>| {
            let mut response = Response::new(Full::<Bytes>::default());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            ready(Ok::<_, Infallible>(response))
        })
    };
    let mut bare_typed = typed();
    group.bench_function("json_handler_alone", |b| {
        b.to_async(&rt).iter(|| bare_typed.call(request(peer)))
    });
    let mut limited_typed =
        RateLimitLayer::per_client(Rate::per_second(nz(1_000_000_000)), ClientIp::peer())
            .layer(typed());
    group.bench_function("per_client_allowed_with_headers_json_handler", |b| {
        b.to_async(&rt).iter(|| limited_typed.call(request(peer)))
    });
    group.finish();
}

/// A request as axum serves it with `into_make_service_with_connect_info::<SocketAddr>()`.
fn connect_info_request(peer: SocketAddr) -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// The peer as tower_governor's `PeerIpKeyExtractor` reads it: axum's `ConnectInfo` only.
/// (hookgate's own default lookup reads it too with its `axum` feature, after a plain
/// `SocketAddr`.)
fn connect_info_peer(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// hookgate and tower_governor on the same quota, the same client lookup, the same requests.
fn versus_tower_governor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let peers: Vec<SocketAddr> = (0..10_000u32)
        .map(|n| SocketAddr::from((Ipv4Addr::from(0x0A00_0000 + n), 40_000)))
        .collect();
    for (clients, rotating) in [("one_client", false), ("10k_clients", true)] {
        let mut group = c.benchmark_group(format!("vs_tower_governor/{clients}"));
        group.throughput(Throughput::Elements(1));
        let peers = &peers;
        let mut i = 0;
        let mut next = move || {
            if rotating {
                i = (i + 1) % peers.len();
            }
            connect_info_request(peers[i])
        };
        let full = || {
            service_fn(|_req: Request<Empty<Bytes>>| {
                ready(Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())))
            })
        };
        let axum_body = || {
            service_fn(|_req: Request<Empty<Bytes>>| {
                ready(Ok::<_, Infallible>(
                    Response::new(axum::body::Body::empty()),
                ))
            })
        };
        let rate = || Rate::per_second(nz(1_000_000_000));
        let client_ip = || ClientIp::peer().peer_addr_with(connect_info_peer);

        let mut bare = full();
        group.bench_function("bare_full", |b| b.to_async(&rt).iter(|| bare.call(next())));
        let mut hookgate = RateLimitLayer::per_client(rate(), client_ip()).layer(full());
        group.bench_function("hookgate_headers", |b| {
            b.to_async(&rt).iter(|| hookgate.call(next()))
        });
        let mut decision = RateLimitLayer::per_client(rate(), client_ip())
            .shadow()
            .layer(full());
        group.bench_function("hookgate_decision", |b| {
            b.to_async(&rt).iter(|| decision.call(next()))
        });

        let mut bare = axum_body();
        group.bench_function("bare_axum", |b| b.to_async(&rt).iter(|| bare.call(next())));
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000_000)
            .finish()
            .unwrap();
        let mut governor = GovernorLayer::new(config).layer(axum_body());
        group.bench_function("tower_governor", |b| {
            b.to_async(&rt).iter(|| governor.call(next()))
        });
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000_000)
            .use_headers()
            .finish()
            .unwrap();
        let mut governor = GovernorLayer::new(config).layer(axum_body());
        group.bench_function("tower_governor_headers", |b| {
            b.to_async(&rt).iter(|| governor.call(next()))
        });
        group.finish();
    }
}

/// A flood of one million distinct keys through a store with the default cap (100 000 keys).
/// The memory this leaves held is measured by `examples/rate_limit_memory.rs`, in fresh
/// processes (RSS inside a benchmark process says more about earlier benchmarks).
fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("flood_1M_distinct_keys_default_cap", |b| {
        b.iter(|| {
            let store = MemoryStore::<IpAddr>::new(Rate::per_minute(nz(60)));
            for n in 0..1_000_000u32 {
                black_box(store.decide(&ip(n)));
            }
            store.len()
        })
    });
    group.finish();
}

/// The criterion group (the macro writes an undocumented function).
#[allow(missing_docs)]
mod group {
    use super::{decision, layer_call, memory, versus_tower_governor};
    criterion::criterion_group!(benches, decision, layer_call, versus_tower_governor, memory);
}
criterion_main!(group::benches);
