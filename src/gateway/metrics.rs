//! Prometheus metrics and the admin endpoints (`/healthz`, `/metrics`).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
    time::Instant,
};

use crate::{
    dedupe::DedupeOutcome,
    problem::ProblemCode,
    store::redis::{RedisStore, StoreCall},
};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use tower::{Layer, Service};

use super::rejection_log::{Client, RejectionLog};

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    /// The problem code of an answer hookgate wrote, else `accepted` (200) or `handler`.
    outcome: &'static str,
    status: u16,
}

/// Labels of a Redis call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreCallLabels {
    op: &'static str,
    outcome: &'static str,
}

/// Labels of the Redis latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOpLabels {
    op: &'static str,
}

/// Labels of the deduplication counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DedupeLabels {
    outcome: &'static str,
}

/// What the gateway counts of its Redis calls: made before the stores (which report to it),
/// registered with the other metrics.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    calls: Family<StoreCallLabels, Counter>,
    seconds: Family<StoreOpLabels, Histogram, fn() -> Histogram>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            seconds: Family::new_with_constructor(store_histogram),
        }
    }
}

/// Redis calls take from tens of microseconds (loopback) to their timeout: 50 µs up to ~1.6 s.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl StoreMetrics {
    /// `redis`, reporting every call of the stores made from it to these metrics.
    pub(crate) fn observe(&self, redis: RedisStore) -> RedisStore {
        let metrics = self.clone();
        redis.observe(move |call: StoreCall| {
            metrics
                .calls
                .get_or_create(&StoreCallLabels {
                    op: call.op,
                    outcome: call.outcome.as_str(),
                })
                .inc();
            metrics
                .seconds
                .get_or_create(&StoreOpLabels { op: call.op })
                .observe(call.elapsed.as_secs_f64());
        })
    }

    fn register(self, registry: &mut Registry) {
        registry.register(
            "store_calls",
            "Calls to the Redis stores, by operation and outcome (ok, error, timeout)",
            self.calls,
        );
        registry.register(
            "store_seconds",
            "Time a Redis store call took, by operation (until its answer, error or timeout)",
            self.seconds,
        );
    }
}

/// `/healthz` asks whether the Redis server answers a `PING` (within the store's timeout).
pub(crate) struct RedisHealth(pub(crate) RedisStore);

impl HealthCheck for RedisHealth {
    fn check(self: Arc<Self>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let ping = self.0.ping();
        Box::pin(async move {
            ping.await
                .map(|_| ())
                .map_err(|error| format!("redis unreachable: {error}"))
        })
    }
}

/// A gauge read from its source at every scrape (limiter keys, buffered bytes, ...).
pub(crate) struct GaugeSource {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) read: Box<dyn Fn() -> i64 + Send + Sync>,
}

/// Everything the gateway counts.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    /// The `accepted`/200 series of `requests`, resolved once: the common case skips the
    /// family's lock and hash.
    accepted: Counter,
    /// Deduplication's decisions, by outcome.
    dedupe: Family<DedupeLabels, Counter>,
    request_seconds: Histogram,
    verification_seconds: Histogram,
    destination_seconds: Histogram,
    gauges: Vec<(Gauge, GaugeSource)>,
    ready: AtomicBool,
    /// What `/healthz` asks besides readiness (the sink: can it write now?).
    health_checks: Mutex<Vec<Arc<dyn HealthCheck>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 25 µs up to ~13 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 20))
}

impl Metrics {
    pub(crate) fn new(sources: Vec<GaugeSource>, store: StoreMetrics) -> Arc<Self> {
        let mut registry = Registry::with_prefix("hookgate");
        store.register(&mut registry);
        let dedupe = Family::<DedupeLabels, Counter>::default();
        registry.register(
            "dedupe",
            "Deliveries seen by deduplication, by outcome (handled, duplicate, in_flight, \
             store_unavailable, released, lease_lost, settle_failed, ...)",
            dedupe.clone(),
        );
        let requests = Family::<Outcome, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by outcome (problem code, accepted, handler) and status",
            requests.clone(),
        );
        let accepted = requests
            .get_or_create(&Outcome {
                outcome: ACCEPTED,
                status: 200,
            })
            .clone();
        let request_seconds = latency_histogram();
        registry.register(
            "request_seconds",
            "Time from request arrival to the answer's head",
            request_seconds.clone(),
        );
        let verification_seconds = latency_histogram();
        registry.register(
            "verification_seconds",
            "Time from request arrival until the verified delivery is handed on (checks, body read, MAC)",
            verification_seconds.clone(),
        );
        let destination_seconds = latency_histogram();
        registry.register(
            "destination_seconds",
            "Time the sink or upstream took to answer a verified delivery",
            destination_seconds.clone(),
        );
        let gauges = sources
            .into_iter()
            .map(|source| {
                let gauge = Gauge::default();
                registry.register(source.name, source.help, gauge.clone());
                (gauge, source)
            })
            .collect();
        Arc::new(Self {
            registry,
            requests,
            accepted,
            dedupe,
            request_seconds,
            verification_seconds,
            destination_seconds,
            gauges,
            ready: AtomicBool::new(false),
            health_checks: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn encode(&self) -> String {
        for (gauge, source) in &self.gauges {
            gauge.set((source.read)());
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts and times an answer; its problem code, if it is a rejection.
    fn record<B>(&self, response: &Response<B>, started: Instant) -> Option<ProblemCode> {
        let status = response.status();
        // Static labels: counting an answer allocates nothing.
        let code = response.extensions().get::<ProblemCode>().copied();
        let dedupe = response.extensions().get::<DedupeOutcome>().copied();
        if let Some(outcome) = dedupe {
            self.dedupe
                .get_or_create(&DedupeLabels {
                    outcome: outcome.as_str(),
                })
                .inc();
        }
        match code {
            Some(code) => self.count(code.as_str(), status),
            None if dedupe == Some(DedupeOutcome::Duplicate) => self.count(DUPLICATE, status),
            None if status == StatusCode::OK => self.accepted.inc(),
            None => self.count("handler", status),
        };
        self.request_seconds
            .observe(started.elapsed().as_secs_f64());
        code
    }

    fn count(&self, outcome: &'static str, status: StatusCode) -> u64 {
        self.requests
            .get_or_create(&Outcome {
                outcome,
                status: status.as_u16(),
            })
            .inc()
    }
}

/// The outcome label of a 200 the handler (sink or upstream) gave.
const ACCEPTED: &str = "accepted";
/// The outcome label of a 200 deduplication gave for an event already handled.
const DUPLICATE: &str = "duplicate";

/// When the request arrived (a request extension set by [`Record`]).
#[derive(Clone, Copy, Debug)]
struct Arrived(Instant);

/// Counts every answer and times it, and logs rejections (aggregated); outermost.
#[derive(Clone, Debug)]
pub(crate) struct RecordLayer {
    metrics: Arc<Metrics>,
    rejections: Arc<RejectionLog>,
}

impl RecordLayer {
    pub(crate) fn new(metrics: Arc<Metrics>, rejections: Arc<RejectionLog>) -> Self {
        Self {
            metrics,
            rejections,
        }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;
    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.metrics.clone(),
            rejections: self.rejections.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Record<S> {
    inner: S,
    metrics: Arc<Metrics>,
    rejections: Arc<RejectionLog>,
}

impl<S, B, ResBody> Service<Request<B>> for Record<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let started = Instant::now();
        request.extensions_mut().insert(Arrived(started));
        // Named now, while the request is at hand; only a rejection uses it.
        let client = self.rejections.client_of(&request);
        RecordFuture {
            future: self.inner.call(request),
            metrics: self.metrics.clone(),
            rejections: self.rejections.clone(),
            started,
            client,
        }
    }
}

pin_project! {
    /// The future of [`Record`]: counts and times the answer, and logs a rejection.
    pub(crate) struct RecordFuture<F> {
        #[pin]
        future: F,
        metrics: Arc<Metrics>,
        rejections: Arc<RejectionLog>,
        started: Instant,
        client: Client,
    }
}

impl<F, ResBody> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.future.poll(cx));
        if let Some(code) = this.metrics.record(&response, *this.started) {
            this.rejections
                .record(code, response.status(), *this.client);
        }
        Poll::Ready(Ok(response))
    }
}

/// Times the destination (sink or upstream), and the time it took to get there.
#[derive(Clone, Debug)]
pub(crate) struct TimeDestinationLayer(pub(crate) Arc<Metrics>);

impl<S> Layer<S> for TimeDestinationLayer {
    type Service = TimeDestination<S>;
    fn layer(&self, inner: S) -> TimeDestination<S> {
        TimeDestination {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TimeDestination<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for TimeDestination<S>
where
    S: Service<Request<B>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = TimeDestinationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let now = Instant::now();
        if let Some(Arrived(arrived)) = request.extensions().get::<Arrived>() {
            self.metrics
                .verification_seconds
                .observe((now - *arrived).as_secs_f64());
        }
        TimeDestinationFuture {
            future: self.inner.call(request),
            metrics: self.metrics.clone(),
            started: now,
        }
    }
}

pin_project! {
    /// The future of [`TimeDestination`].
    pub(crate) struct TimeDestinationFuture<F> {
        #[pin]
        future: F,
        metrics: Arc<Metrics>,
        started: Instant,
    }
}

impl<F: Future> Future for TimeDestinationFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.future.poll(cx));
        this.metrics
            .destination_seconds
            .observe(this.started.elapsed().as_secs_f64());
        Poll::Ready(output)
    }
}

/// A part of the gateway `/healthz` asks, when asked, whether it can do its work now (the sink:
/// can it write?).
pub(crate) trait HealthCheck: Send + Sync + 'static {
    /// `Err` names the cause in a few words. Bounded in time by the check itself.
    fn check(self: Arc<Self>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

impl Metrics {
    /// Adds `check` to what `/healthz` asks.
    pub(crate) fn add_health_check(&self, check: Arc<dyn HealthCheck>) {
        self.health_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(check);
    }

    /// Runs every check; the causes of those failing, one per line.
    async fn health(&self) -> Result<(), String> {
        let checks = self
            .health_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut causes = String::new();
        for check in checks {
            if let Err(cause) = check.check().await {
                causes.push_str(&cause);
                causes.push('\n');
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(causes)
        }
    }
}

/// `/healthz` (200 once serving and every check passes, else 503 and why) and `/metrics`
/// (Prometheus text format).
pub(crate) async fn admin(
    metrics: Arc<Metrics>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" if metrics.ready.load(Ordering::Acquire) => match metrics.health().await {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            Err(causes) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", causes),
        },
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".to_owned(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_problem_code_or_status() {
        let metrics = Metrics::new(
            vec![GaugeSource {
                name: "limiter_keys",
                help: "Keys tracked",
                read: Box::new(|| 42),
            }],
            StoreMetrics::default(),
        );
        let started = Instant::now();
        metrics.record(&Response::new(()), started);
        let mut rejected = Response::new(());
        *rejected.status_mut() = StatusCode::UNAUTHORIZED;
        rejected
            .extensions_mut()
            .insert(ProblemCode::SIGNATURE_MISMATCH);
        metrics.record(&rejected, started);
        let mut teapot = Response::new(());
        *teapot.status_mut() = StatusCode::IM_A_TEAPOT;
        metrics.record(&teapot, started);
        let text = metrics.encode();
        assert!(
            text.contains(r#"hookgate_requests_total{outcome="accepted",status="200"} 1"#),
            "{text}"
        );
        assert!(text
            .contains(r#"hookgate_requests_total{outcome="signature_mismatch",status="401"} 1"#));
        assert!(text.contains(r#"hookgate_requests_total{outcome="handler",status="418"} 1"#));
        assert!(text.contains("hookgate_limiter_keys 42"));
        assert!(text.contains("hookgate_request_seconds_count 3"));
    }
}
