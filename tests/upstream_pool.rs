//! The upstream's connection pool, watched from the upstream's side: an idle connection is
//! closed once it has been idle for the pool's idle timeout, and after a burst no more than the
//! pool's cap stay open.
#![cfg(feature = "gateway")]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hookgate::{
    gateway::{Upstream, UpstreamBuilder},
    signature::VerifiedBody,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tower::{Service, ServiceExt};

/// Connections an upstream accepted, and how many of them the gateway side has closed.
#[derive(Default)]
struct Seen {
    opened: AtomicUsize,
    closed: AtomicUsize,
}

impl Seen {
    fn open(&self) -> usize {
        self.opened.load(Ordering::SeqCst) - self.closed.load(Ordering::SeqCst)
    }
}

/// A loopback HTTP/1.1 upstream answering `200` after `delay`, keeping connections alive for as
/// long as the client wants; counts connections opened and closed by the client.
async fn upstream(delay: Duration) -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.opened.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<_>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Empty::<bytes::Bytes>::new()))
                });
                // Ends when the client closes the connection.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                counter.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

fn builder(addr: SocketAddr) -> UpstreamBuilder {
    Upstream::builder(format!("http://{addr}/hook"))
}

/// Forwards one delivery; its status, once the answer has been read whole.
async fn deliver(upstream: Upstream) -> StatusCode {
    let request = Request::post("/webhooks/elevenlabs")
        .body(VerifiedBody::from_bytes(&b"{}"[..]))
        .unwrap();
    let response = upstream.oneshot(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// Waits up to `within` for `done`; how long it took.
async fn until(within: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn an_idle_pooled_connection_is_closed_after_the_idle_timeout() {
    let (addr, seen) = upstream(Duration::ZERO).await;
    let upstream = builder(addr)
        .pool_idle_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    assert_eq!(deliver(upstream.clone()).await, StatusCode::OK);
    let idle_since = Instant::now();
    assert_eq!(seen.opened.load(Ordering::SeqCst), 1);

    // Reused while younger than the timeout, which starts over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deliver(upstream.clone()).await, StatusCode::OK);
    let idle_since_again = Instant::now();
    assert_eq!(
        seen.opened.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        seen.closed.load(Ordering::SeqCst),
        0,
        "still open {:?} after its first use, {:?} after its last",
        idle_since.elapsed(),
        idle_since_again.elapsed()
    );

    until(Duration::from_secs(5), || {
        seen.closed.load(Ordering::SeqCst) == 1
    })
    .await
    .expect("the upstream sees the idle connection closed");
    let idle = idle_since_again.elapsed();
    assert!(
        idle >= Duration::from_millis(380),
        "closed after {idle:?} idle, before the 400 ms timeout"
    );

    // The next delivery opens a new connection.
    assert_eq!(deliver(upstream).await, StatusCode::OK);
    assert_eq!(seen.opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn after_a_burst_no_more_than_the_cap_stay_idle() {
    let (addr, seen) = upstream(Duration::from_millis(300)).await;
    let upstream = builder(addr)
        .pool_max_idle(2)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let burst: Vec<_> = (0..8)
        .map(|_| tokio::spawn(deliver(upstream.clone())))
        .collect();
    for delivery in burst {
        assert_eq!(delivery.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        seen.opened.load(Ordering::SeqCst),
        8,
        "a connection per concurrent delivery"
    );
    until(Duration::from_secs(5), || seen.open() == 2)
        .await
        .unwrap_or_else(|| panic!("{} connections left open, not 2", seen.open()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.open(), 2, "the two kept stay open");

    // The two kept carry the next deliveries.
    let mut upstream = upstream;
    for _ in 0..3 {
        let request = Request::post("/webhooks/elevenlabs")
            .body(VerifiedBody::from_bytes(&b"{}"[..]))
            .unwrap();
        let response = upstream.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(seen.opened.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_zero_idle_timeout_keeps_no_connection() {
    let (addr, seen) = upstream(Duration::ZERO).await;
    let upstream = builder(addr)
        .pool_idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(deliver(upstream.clone()).await, StatusCode::OK);
    }
    assert_eq!(seen.opened.load(Ordering::SeqCst), 2);
    until(Duration::from_secs(5), || seen.open() == 0)
        .await
        .expect("no connection is kept");
}
