#![allow(missing_docs)] // criterion_group! generates undocumented items
//! What verification costs: the whole `VerifySignatureLayer` call against the raw HMAC-SHA256 of
//! the same bytes (the floor any verifier pays), and the latency it adds after the last byte;
//! with feature `standard-webhooks`, Standard Webhooks' symmetric `v1` against its ed25519 `v1a`
//! (a fixed cost per signature, then a SHA-512 pass per KiB).
//!
//! ```text
//! cargo bench --bench verify
//! HOOKGATE_BENCH_CLOCK=cpu cargo bench --bench verify -- verify_cpu   # thread CPU time
//! cargo bench --bench verify --features standard-webhooks -- standard_webhooks
//! ```

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main,
    measurement::{Measurement, ValueFormatter, WallTime},
    BenchmarkId, Criterion, Throughput,
};
use hmac::{Hmac, Mac};
use hookgate::{
    scheme::{ElevenLabs, Scheme},
    signature::VerifiedBody,
    VerifySignatureLayer,
};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

const SECRET: &str = "bench-secret";
const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];
const FRAME: usize = 16 << 10;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A body handing out prepared frames; optionally yielding `Pending` between frames (paced, as
/// from a socket) and recording when its last frame was handed out.
struct Frames {
    frames: VecDeque<Bytes>,
    paced: bool,
    yielded: bool,
    last_frame_at: Option<Arc<Mutex<Option<Instant>>>>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.paced && !self.yielded && !self.frames.is_empty() {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        let frame = self.frames.pop_front();
        if frame.is_some() && self.frames.is_empty() {
            if let Some(at) = &self.last_frame_at {
                *at.lock().unwrap() = Some(Instant::now());
            }
        }
        Poll::Ready(frame.map(|f| Ok(Frame::data(f))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.iter().map(|f| f.len() as u64).sum())
    }
}

fn split(body: &Bytes) -> VecDeque<Bytes> {
    (0..body.len())
        .step_by(FRAME)
        .map(|start| body.slice(start..(start + FRAME).min(body.len())))
        .collect()
}

async fn ok(_: Request<VerifiedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`): on a machine shared with other work, the time
/// the bench thread was preempted is not counted (`HOOKGATE_BENCH_CLOCK=cpu`).
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn verify_cpu(_: &mut Criterion) {
    if std::env::var_os("HOOKGATE_BENCH_CLOCK").is_some_and(|v| v == "cpu") {
        let mut cpu = Criterion::default()
            .with_measurement(ThreadCpu)
            .configure_from_args();
        verify_group(&mut cpu, "verify_cpu");
    }
}

fn verify(c: &mut Criterion) {
    if std::env::var_os("HOOKGATE_BENCH_CLOCK").is_some_and(|v| v == "cpu") {
        return;
    }
    verify_group(c, "verify");
}

fn verify_group<M: Measurement + 'static>(c: &mut Criterion<M>, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let service = VerifySignatureLayer::new(scheme.clone()).layer(tower::service_fn(ok));

    let mut group = c.benchmark_group(name);
    for (size, name) in SIZES {
        let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        // Fresh for the whole run: 30 min of tolerance.
        let t = now();
        let header = HeaderValue::from_str(&scheme.sign(t, &body)).unwrap();
        let t_text = t.to_string();
        group.throughput(Throughput::Bytes(size as u64));

        // The floor: key an HMAC, hash "t." and the body, finalize.
        group.bench_function(BenchmarkId::new("hmac_floor", name), |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(t_text.as_bytes());
                mac.update(b".");
                mac.update(&body);
                mac.finalize().into_bytes()
            })
        });

        // The scheme alone: header parse, freshness, MAC, constant-time compare.
        let mut headers = http::HeaderMap::new();
        headers.insert("elevenlabs-signature", header.clone());
        group.bench_function(BenchmarkId::new("scheme_only", name), |b| {
            b.iter(|| scheme.verify(&headers, &body, SystemTime::now()).unwrap())
        });

        // The same request through the inner service alone: what the layer is compared with.
        group.bench_function(BenchmarkId::new("bare_handler", name), |b| {
            b.to_async(&rt).iter(|| {
                let request = Request::post("/")
                    .header("elevenlabs-signature", header.clone())
                    .body(VerifiedBody::from_bytes(body.clone()))
                    .unwrap();
                tower::service_fn(ok).oneshot(request)
            })
        });

        group.bench_function(BenchmarkId::new("layer_contiguous", name), |b| {
            b.to_async(&rt).iter(|| {
                let request = Request::post("/")
                    .header("elevenlabs-signature", header.clone())
                    .body(Full::new(body.clone()))
                    .unwrap();
                service.clone().oneshot(request)
            })
        });

        let frames = split(&body);
        group.bench_function(BenchmarkId::new("layer_16KiB_frames", name), |b| {
            b.to_async(&rt).iter(|| {
                let request = Request::post("/")
                    .header("elevenlabs-signature", header.clone())
                    .body(Frames {
                        frames: frames.clone(),
                        paced: false,
                        yielded: false,
                        last_frame_at: None,
                    })
                    .unwrap();
                service.clone().oneshot(request)
            })
        });
    }
    group.finish();
}

/// Time from the last frame of a paced 1 MiB body to the answer: hookgate's layer, which has
/// hashed the body while it arrived, against collect-then-verify.
fn after_last_byte(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let body = Bytes::from((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let header = HeaderValue::from_str(&scheme.sign(now(), &body)).unwrap();
    let frames = split(&body);
    let layered = VerifySignatureLayer::new(scheme.clone()).layer(tower::service_fn(ok));

    let paced = |at: &Arc<Mutex<Option<Instant>>>| Frames {
        frames: frames.clone(),
        paced: true,
        yielded: false,
        last_frame_at: Some(at.clone()),
    };

    let mut group = c.benchmark_group("after_last_byte_1MiB");
    group.bench_function("layer", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let layered = layered.clone();
            let header = header.clone();
            let paced = &paced;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let at = Arc::new(Mutex::new(None));
                    let request = Request::post("/")
                        .header("elevenlabs-signature", header.clone())
                        .body(paced(&at))
                        .unwrap();
                    let mut svc = layered.clone();
                    let response = ServiceExt::<Request<Frames>>::ready(&mut svc)
                        .await
                        .unwrap()
                        .call(request)
                        .await
                        .unwrap();
                    let done = Instant::now();
                    assert!(response.status().is_success());
                    total += done - at.lock().unwrap().unwrap();
                }
                total
            }
        })
    });
    group.bench_function("collect_then_verify", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let header = header.clone();
            let scheme = scheme.clone();
            let paced = &paced;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let at = Arc::new(Mutex::new(None));
                    let mut headers = http::HeaderMap::new();
                    headers.insert("elevenlabs-signature", header.clone());
                    let collected = paced(&at).collect().await.unwrap().to_bytes();
                    scheme
                        .verify(&headers, &collected, SystemTime::now())
                        .unwrap();
                    total += Instant::now() - at.lock().unwrap().unwrap();
                }
                total
            }
        })
    });
    group.finish();
}

/// A body fed through a channel, as hyper feeds one from a socket.
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(|f| Ok(Frame::data(f))))
    }
}

/// Sends `frames` from a task on the current runtime, one every `PACE` (about 330 MB/s for
/// 16 KiB frames), through a channel that closes with the last one; returns the wall-clock and
/// thread CPU time taken just before the last `send`, the moment the last byte arrives.
fn paced_sender(
    frames: VecDeque<Bytes>,
) -> (
    tokio::sync::mpsc::Receiver<Bytes>,
    tokio::task::JoinHandle<(Instant, Duration)>,
) {
    const PACE: Duration = Duration::from_micros(50);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sender = tokio::spawn(async move {
        let start = Instant::now();
        let last = frames.len() - 1;
        for (i, frame) in frames.into_iter().enumerate() {
            while Instant::now() < start + PACE * i as u32 {
                tokio::task::yield_now().await;
            }
            if i == last {
                let sent = (Instant::now(), thread_cpu());
                tx.send(frame).await.unwrap();
                return sent;
            }
            tx.send(frame).await.unwrap();
            // As a socket would: the receiver sees each frame as it is sent, never a burst
            // queued behind a late poll.
            tokio::task::yield_now().await;
        }
        unreachable!("a body of at least one frame")
    });
    (rx, sender)
}

/// The tail's distribution: a 1 MiB body arrives in 16 KiB frames from a paced sender on the same
/// runtime (`paced_sender`); the tail is the time from the last frame's arrival to the answer, so
/// it always includes hashing that frame and finishing the MAC. Each iteration runs the layer and
/// then its floor on an identical paced body: the raw HMAC-SHA256 updated frame by frame as they
/// arrive, finished and compared in constant time. Printed as p50/p99/max over every iteration,
/// in wall-clock time and in the bench thread's CPU time (the runtime has one thread, so the
/// latter leaves out the time the thread was preempted, though not what the hypervisor takes).
/// The floor's tail shows what the machine itself adds, since it has no layer to blame.
fn after_last_byte_paced(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let body = Bytes::from((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let t = now();
    let header = HeaderValue::from_str(&scheme.sign(t, &body)).unwrap();
    let expected_tag = {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&body);
        mac.finalize().into_bytes()
    };
    let frames = split(&body);
    let layered = VerifySignatureLayer::new(scheme).layer(tower::service_fn(ok));
    // Per iteration, (wall clock, thread CPU time) for the layer and for the floor.
    type Tails = Vec<[(Duration, Duration); 2]>;
    let tails = Arc::new(Mutex::new(Tails::new()));

    let mut group = c.benchmark_group("after_last_byte_1MiB");
    group.sample_size(10);
    group.bench_function("paced_channel", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let layered = layered.clone();
            let header = header.clone();
            let frames = frames.clone();
            let tails = tails.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (rx, sender) = paced_sender(frames.clone());
                    let request = Request::post("/")
                        .header("elevenlabs-signature", header.clone())
                        .body(Channel(rx))
                        .unwrap();
                    let mut svc = layered.clone();
                    let response = ServiceExt::<Request<Channel>>::ready(&mut svc)
                        .await
                        .unwrap()
                        .call(request)
                        .await
                        .unwrap();
                    let (done, done_cpu) = (Instant::now(), thread_cpu());
                    assert!(response.status().is_success());
                    let (sent, sent_cpu) = sender.await.unwrap();
                    let layer = (done - sent, done_cpu - sent_cpu);

                    let (mut rx, sender) = paced_sender(frames.clone());
                    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                    mac.update(format!("{t}.").as_bytes());
                    while let Some(frame) = rx.recv().await {
                        mac.update(&frame);
                    }
                    let valid = mac.verify(&expected_tag).is_ok();
                    let (done, done_cpu) = (Instant::now(), thread_cpu());
                    assert!(valid);
                    let (sent, sent_cpu) = sender.await.unwrap();
                    let floor = (done - sent, done_cpu - sent_cpu);

                    tails.lock().unwrap().push([layer, floor]);
                    total += layer.0;
                }
                total
            }
        })
    });
    group.finish();
    let tails = std::mem::take(&mut *tails.lock().unwrap());
    if tails.is_empty() {
        return;
    }
    for (who, i) in [("layer", 0), ("raw HMAC floor", 1)] {
        for (clock, cpu) in [("wall clock", false), ("thread CPU", true)] {
            let mut tails: Vec<Duration> = tails
                .iter()
                .map(|t| if cpu { t[i].1 } else { t[i].0 })
                .collect();
            tails.sort();
            let at = |q: f64| tails[((tails.len() - 1) as f64 * q).round() as usize];
            println!(
                "after_last_byte_1MiB/paced_channel: {} bodies, {who} tail ({clock}) p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
                tails.len(),
                at(0.5),
                at(0.9),
                at(0.99),
                tails[tails.len() - 1]
            );
        }
    }
}

/// Standard Webhooks, the scheme alone: `v1` (HMAC-SHA256) against `v1a` (ed25519, streamed),
/// from an empty body (the fixed cost: header parse, key setup, for `v1a` the double scalar
/// multiplication) to 1 MiB (the per-byte cost: SHA-256 against SHA-512).
#[cfg(feature = "standard-webhooks")]
fn standard_webhooks(c: &mut Criterion) {
    use hookgate::scheme::{StandardWebhooks, StandardWebhooksSigningKey};

    let symmetric = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let sender = StandardWebhooksSigningKey::from_seed([7; 32]);
    let asymmetric = StandardWebhooks::from_public_key(&sender.public_key()).unwrap();
    let mut group = c.benchmark_group("standard_webhooks");
    for (size, name) in [(0, "0B")].into_iter().chain(SIZES) {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let t = now();
        let headers = |signature: String| {
            let mut headers = http::HeaderMap::new();
            headers.insert("webhook-id", HeaderValue::from_static("msg_bench"));
            headers.insert("webhook-timestamp", HeaderValue::from(t));
            headers.insert("webhook-signature", signature.parse().unwrap());
            headers
        };
        let v1 = headers(symmetric.sign("msg_bench", t, &body));
        let v1a = headers(sender.sign("msg_bench", t, &body));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("v1", name), |b| {
            b.iter(|| symmetric.verify(&v1, &body, SystemTime::now()).unwrap())
        });
        group.bench_function(BenchmarkId::new("v1a", name), |b| {
            b.iter(|| asymmetric.verify(&v1a, &body, SystemTime::now()).unwrap())
        });
    }
    group.finish();
}

#[cfg(feature = "standard-webhooks")]
criterion_group!(
    benches,
    verify,
    verify_cpu,
    after_last_byte,
    after_last_byte_paced,
    standard_webhooks
);
#[cfg(not(feature = "standard-webhooks"))]
criterion_group!(
    benches,
    verify,
    verify_cpu,
    after_last_byte,
    after_last_byte_paced
);
criterion_main!(benches);
