//! The gateway's service stack, composed statically from hookgate's layers:
//!
//! ```text
//! request ─▶ Record (metrics) ─▶ Route (POST <path>) ─▶ NormalizeStatus (the sender's contract)
//!   ─▶ RequireHttps? ─▶ AllowIp? ─▶ RateLimit per client? ─▶ FailureLimit? ─▶ (box)
//!   ─▶ VerifySignature ─▶ Deduplicate? ─▶ TimeDestination ─▶ sink | upstream
//! ```
//!
//! A layer the settings leave out is tower's `Either` in its off state (`option_layer`): one
//! branch, no allocation. No layer boxes its service; one future is boxed, the verification's
//! (the bulk of a delivery's, which every layer above would otherwise copy on its way out), and
//! the upstream's own. So a delivery costs the layers' own work and little more
//! (`benches/gateway/instructions.sh` counts it against hyper with `VerifySignatureLayer`).

use super::codes;
use std::{
    convert::Infallible,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{util::Either, Layer, Service, ServiceBuilder};
use tower_http::{
    request_id::{PropagateRequestId, PropagateRequestIdLayer},
    sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer},
};

use super::{
    builder::{DestinationSetting, GatewayBuilder},
    error::Setting,
    metrics::{GaugeSource, Metrics, Record, RecordLayer, TimeDestination, TimeDestinationLayer},
    rejection_log::RejectionLog,
    request_id::{
        InSpan, InSpanLayer, MakeId, ProblemRequestId, ProblemRequestIdLayer, RequestIdHeader,
        RequestIdHeaderLayer, X_REQUEST_ID,
    },
    sink::{Sink, SinkBody},
    state::{EventStore, LimiterStore},
    upstream::{Upstream, UpstreamBody},
    Error,
};
use crate::{
    body::ProblemBody,
    client_checks::{AllowIpLayer, RequireHttpsLayer},
    client_ip::{ClientIp, ForwardedHeader},
    dedupe::{DedupeKey, DeduplicateLayer, MemoryDedupeStore},
    elevenlabs::EGRESS_IPS,
    future::ResponseFuture,
    normalize::NormalizeStatus,
    problem::{Problem, ResponseForm},
    rate_limit::{FailurePolicy, MemoryStore, Rate},
    scheme::ElevenLabs,
    signature::{VerifiedBody, VerifySignature},
    store::redis::RedisStore,
    ConfigError, FailureLimitLayer, NormalizeStatusLayer, RateLimitLayer, VerifySignatureLayer,
};

/// A layer the settings may leave out (`ServiceBuilder::option_layer`).
type Optional<L, S> = Either<<L as Layer<S>>::Service, S>;
type Deduplicated = Optional<DeduplicateLayer<EventStore>, TimeDestination<Destination>>;
type Verify = InBox<VerifySignature<Deduplicated, ElevenLabs>>;
type FailureLimited = Optional<FailureLimitLayer<ClientIp, LimiterStore>, Verify>;
type RateLimited = Optional<RateLimitLayer<ClientIp, LimiterStore>, FailureLimited>;
type Allowed = Optional<AllowIpLayer, RateLimited>;
type HttpsOnly = Optional<RequireHttpsLayer, Allowed>;
/// The stack inside the request's trace span.
type Traced = Record<ProblemRequestId<PropagateRequestId<Route<NormalizeStatus<HttpsOnly>>>>>;
/// The whole service a connection is served by.
pub(crate) type Stack = RequestIdHeader<SetSensitiveRequestHeaders<InSpan<Traced>>>;

/// Where verified deliveries go, opened: the sink is shared by every worker; an upstream is
/// built once per worker (its own connection pool).
#[derive(Debug)]
pub(crate) enum DestinationConfig {
    Sink(Sink),
    Upstream(super::UpstreamBuilder),
}

/// Everything a worker needs to build its stack. The layers' state (the limiter's, the
/// failure counts, the buffer budget) is shared by every worker's stack; an upstream
/// connection pool is each worker's own.
pub(crate) struct StackFactory {
    pub(crate) path: Arc<str>,
    pub(crate) verify: VerifySignatureLayer<ElevenLabs>,
    pub(crate) client: ClientLayers,
    pub(crate) dedupe: Option<DeduplicateLayer<EventStore>>,
    pub(crate) rejections: Arc<RejectionLog>,
    pub(crate) destination: DestinationConfig,
    pub(crate) metrics: Arc<Metrics>,
    /// Shared by every worker: one counter, ids unique across the process.
    pub(crate) request_ids: MakeId,
}

impl StackFactory {
    /// A worker's stack, with its own destination.
    pub(crate) fn make(&self) -> Result<Stack, Error> {
        let destination = match &self.destination {
            DestinationConfig::Sink(sink) => Destination::Sink(sink.clone()),
            DestinationConfig::Upstream(upstream) => Destination::Upstream(upstream.build()?),
        };
        Ok(ServiceBuilder::new()
            // X-Request-Id: the client's if usable, else ours; echoed on the answer and
            // forwarded upstream with the request.
            .layer(RequestIdHeaderLayer(self.request_ids.clone()))
            // Whatever logs a request's headers shows the signature as `Sensitive`.
            .layer(SetSensitiveRequestHeadersLayer::new([ElevenLabs::HEADER]))
            // Every log line of the request is written in a span naming its id. The gateway
            // logs rejections and failures itself (aggregated), so the layer logs nothing.
            .layer(InSpanLayer)
            .layer(RecordLayer::new(
                self.metrics.clone(),
                self.rejections.clone(),
            ))
            // The id echoed on the answer, and repeated in a problem body from there.
            .layer(ProblemRequestIdLayer)
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
            .layer(RouteLayer {
                path: self.path.clone(),
            })
            .layer(NormalizeStatusLayer::elevenlabs())
            .option_layer(self.client.require_https.clone())
            .option_layer(self.client.allow_ip.clone())
            // The per-client limiter in front: with a shared store its decision also looks up
            // the client's block, which the failure limiter then takes (one round trip).
            .option_layer(self.client.rate_limit.clone())
            .option_layer(self.client.failure_limit.clone())
            // The verification's future (the request's head, the MAC state, the layers
            // below) is the bulk of a delivery's: made in a box, the ~10 layers above move a
            // pointer instead of copying it each.
            .layer(InBoxLayer)
            .layer(self.verify.clone())
            .option_layer(self.dedupe.clone())
            .layer(TimeDestinationLayer(self.metrics.clone()))
            .service(destination))
    }
}

/// The name of the per-client limiters' store on Redis (`{prefix}:clients:{address}`).
const CLIENT_STORE: &str = "clients";
/// The name of deduplication's store on Redis (`{prefix}:events:{event key}`).
const EVENT_STORE: &str = "events";
/// How much longer than the destination's own deadline a delivery's claim lasts: a claim
/// must outlive the handling it covers, or a redelivery could be handled beside it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Deduplication in front of the destination, as the settings ask (`None`: left out): on by
/// default in upstream mode and with Redis; keyed by the event key (the sink's file name),
/// else the signature, so a captured delivery replayed within the tolerance is answered `200`
/// without reaching the destination.
pub(crate) fn dedupe_layer(
    settings: &GatewayBuilder,
    redis: Option<&RedisStore>,
    gauges: &mut Vec<GaugeSource>,
) -> Result<Option<DeduplicateLayer<EventStore>>, Error> {
    let upstream = matches!(settings.destination, DestinationSetting::Upstream(_));
    if !settings.dedupe.unwrap_or(upstream || redis.is_some()) {
        return Ok(None);
    }
    let invalid = |source| Error::InvalidSetting {
        setting: Setting::DedupeTtl,
        source,
    };
    let window = settings.scheme.replay_window();
    if settings.dedupe_ttl < window {
        return Err(invalid(ConfigError::new(format!(
            "dedupe TTL: {} s is shorter than the time a signed delivery stays acceptable \
             ({} s: the tolerance plus the future skew): a captured delivery could be \
             replayed once its event is forgotten",
            settings.dedupe_ttl.as_secs(),
            window.as_secs()
        ))));
    }
    let store = match redis {
        Some(redis) => EventStore::Redis(redis.dedupe_store(EVENT_STORE)),
        None => {
            let store = Arc::new(MemoryDedupeStore::new());
            let probe = store.clone();
            gauges.push(GaugeSource {
                name: "dedupe_keys",
                help: "Events remembered (claimed or done) by deduplication in memory",
                read: Box::new(move || probe.len() as i64),
            });
            EventStore::Memory(store)
        }
    };
    let deadline = match &settings.destination {
        DestinationSetting::Upstream(upstream) => upstream.deadline(),
        DestinationSetting::Sink(_) => super::sink::STORE_TIMEOUT,
    };
    let layer = DeduplicateLayer::with_store(store, DedupeKey::elevenlabs())
        .lease((deadline + LEASE_MARGIN).max(DeduplicateLayer::<()>::DEFAULT_LEASE))
        .and_then(|layer| layer.keep_done(settings.dedupe_ttl))
        .map_err(invalid)?;
    Ok(Some(layer))
}

/// The client checks and limits, as the settings ask (`None`: left out).
pub(crate) struct ClientLayers {
    require_https: Option<RequireHttpsLayer>,
    allow_ip: Option<AllowIpLayer>,
    failure_limit: Option<FailureLimitLayer<ClientIp, LimiterStore>>,
    rate_limit: Option<RateLimitLayer<ClientIp, LimiterStore>>,
}

/// Who the client is, per the settings: the peer, or what trusted proxies say; and which
/// clients are known senders, never limited or blocked before verification.
pub(crate) fn client_ip(settings: &GatewayBuilder) -> Result<ClientIp, Error> {
    let invalid = |setting| move |source| Error::InvalidSetting { setting, source };
    let client_ip = if settings.trusted_proxies.is_empty() {
        ClientIp::peer()
    } else {
        ClientIp::behind_proxies(&settings.trusted_proxies, ForwardedHeader::XForwardedFor)
            .map_err(invalid(Setting::TrustedProxies))?
    };
    let mut known: Vec<&str> = settings.known_senders.iter().map(String::as_str).collect();
    if settings.elevenlabs_known_senders {
        known.extend(EGRESS_IPS);
    }
    client_ip
        .known_senders(known)
        .map_err(invalid(Setting::KnownSenders))
}

impl ClientLayers {
    /// The layers the settings ask for, their state in memory or on `redis`; registers a gauge
    /// for each layer that keeps per-client state in memory.
    pub(crate) fn new(
        settings: &GatewayBuilder,
        redis: Option<&RedisStore>,
        client_ip: &ClientIp,
        gauges: &mut Vec<GaugeSource>,
    ) -> Result<Self, Error> {
        let invalid = |setting| move |source| Error::InvalidSetting { setting, source };
        let request_rate = NonZeroU32::new(settings.client_rate).map(|rate| {
            let burst = NonZeroU32::new(settings.client_burst).unwrap_or(rate);
            Rate::per_second(rate).burst(burst)
        });
        let failure_rate = NonZeroU32::new(settings.max_failures_per_minute)
            .map(|failures| Rate::per_minute(failures).burst(failures));
        let (requests, failures) = match (redis, request_rate, failure_rate) {
            (None, requests, failures) => (
                requests.map(|rate| LimiterStore::Memory(MemoryStore::new(rate))),
                failures.map(|rate| LimiterStore::Memory(MemoryStore::new(rate))),
            ),
            // One hash per client for both limiters: one round trip per request.
            (Some(redis), Some(requests), Some(failures)) => {
                let (requests, failures) = redis.client_stores(CLIENT_STORE, requests, failures);
                (
                    Some(LimiterStore::Redis(requests)),
                    Some(LimiterStore::Redis(failures)),
                )
            }
            (Some(redis), requests, failures) => (
                requests
                    .map(|rate| LimiterStore::Redis(redis.rate_limit_store(CLIENT_STORE, rate))),
                failures
                    .map(|rate| LimiterStore::Redis(redis.rate_limit_store(CLIENT_STORE, rate))),
            ),
        };

        let rate_limit = requests.map(|store| {
            let layer = RateLimitLayer::per_client_with_store(store, client_ip.clone());
            if layer.store().tracked().is_some() {
                let probe = layer.clone();
                gauges.push(GaugeSource {
                    name: "limiter_clients",
                    help: "Clients tracked by the per-client rate limiter",
                    read: Box::new(move || probe.store().tracked().unwrap_or(0) as i64),
                });
            }
            layer
        });

        let failure_limit = match failures {
            Some(store) => {
                let policy = FailurePolicy::block_for(settings.failure_cooldown)
                    .map_err(invalid(Setting::FailureLimit))?;
                let memory = store.blocked().is_some();
                let layer = FailureLimitLayer::with_store(store, policy, client_ip.clone());
                if memory {
                    let blocked = layer.clone();
                    gauges.push(GaugeSource {
                        name: "blocked_clients",
                        help: "Clients blocked after failing verification too often",
                        read: Box::new(move || blocked.store().blocked().unwrap_or(0) as i64),
                    });
                }
                Some(layer)
            }
            None => None,
        };

        let allow_ip = if !settings.allow_ips.is_empty() || settings.allow_elevenlabs_egress {
            let mut networks: Vec<String> = settings.allow_ips.clone();
            if settings.allow_elevenlabs_egress {
                networks.extend(EGRESS_IPS.iter().map(|ip| (*ip).to_owned()));
            }
            let layer = AllowIpLayer::new(&networks, client_ip.clone())
                .map_err(invalid(Setting::AllowIps))?;
            tracing::info!(
                networks = networks.len(),
                "only allow-listed client addresses are accepted"
            );
            Some(layer)
        } else {
            None
        };

        let require_https = settings
            .require_https
            .then(|| RequireHttpsLayer::new(client_ip.clone()));

        Ok(Self {
            require_https,
            allow_ip,
            failure_limit,
            rate_limit,
        })
    }
}

impl DestinationConfig {
    /// Opens the destination the settings name: the sink directory (on the current runtime),
    /// or the upstream's settings, checked when the gateway was built.
    pub(crate) fn open(setting: &DestinationSetting) -> Result<Self, Error> {
        Ok(match setting {
            DestinationSetting::Sink(dir) => {
                let sink = Sink::open(dir)?;
                tracing::info!(dir = %dir.display(), "verified deliveries are stored in the sink directory");
                Self::Sink(sink)
            }
            DestinationSetting::Upstream(upstream) => {
                tracing::info!(upstream = %upstream.url(), "verified deliveries are forwarded upstream");
                Self::Upstream(upstream.clone())
            }
        })
    }
}

/// A worker's destination: the shared sink, or the worker's own upstream pool.
#[derive(Clone, Debug)]
pub(crate) enum Destination {
    Sink(Sink),
    Upstream(Upstream),
}

impl Service<Request<VerifiedBody>> for Destination {
    type Response = Response<DestinationBody>;
    type Error = Infallible;
    type Future = DestinationFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Self::Sink(sink) => sink.poll_ready(cx),
            Self::Upstream(upstream) => upstream.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> DestinationFuture {
        match self {
            Self::Sink(sink) => DestinationFuture::Sink {
                future: sink.call(request),
            },
            Self::Upstream(upstream) => DestinationFuture::Upstream {
                future: upstream.call(request),
            },
        }
    }
}

pin_project! {
    #[project = DestinationFutureProj]
    pub(crate) enum DestinationFuture {
        Sink { #[pin] future: <Sink as Service<Request<VerifiedBody>>>::Future },
        Upstream { #[pin] future: <Upstream as Service<Request<VerifiedBody>>>::Future },
    }
}

impl Future for DestinationFuture {
    type Output = Result<Response<DestinationBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            DestinationFutureProj::Sink { future } => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(|body| DestinationBody::Sink { body })
            }
            DestinationFutureProj::Upstream { future } => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(|body| DestinationBody::Upstream { body })
            }
        }))
    }
}

pin_project! {
    /// The answer body of the sink or of the upstream.
    #[project = DestinationBodyProj]
    pub(crate) enum DestinationBody {
        Sink { #[pin] body: SinkBody },
        Upstream { #[pin] body: UpstreamBody },
    }
}

impl ProblemBody for DestinationBody {
    fn from_problem(bytes: Bytes) -> Self {
        Self::Sink {
            body: SinkBody::from_problem(bytes),
        }
    }
}

impl Body for DestinationBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.project() {
            DestinationBodyProj::Sink { body } => body.poll_frame(cx),
            DestinationBodyProj::Upstream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Sink { body } => body.is_end_stream(),
            Self::Upstream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Sink { body } => body.size_hint(),
            Self::Upstream { body } => body.size_hint(),
        }
    }
}

/// Boxes its service's future: one allocation, so that the layers above move a pointer, not the
/// future. Each layer's `call` returns its future by value with the inner one inside it, so an
/// unboxed future deep in the stack is copied once per layer on its way out.
#[derive(Clone, Copy, Debug, Default)]
struct InBoxLayer;

impl<S> Layer<S> for InBoxLayer {
    type Service = InBox<S>;

    fn layer(&self, inner: S) -> InBox<S> {
        InBox { inner }
    }
}

/// Service of [`InBoxLayer`].
#[derive(Clone, Debug)]
pub(crate) struct InBox<S> {
    inner: S,
}

impl<S, R> Service<R> for InBox<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        Box::pin(self.inner.call(request))
    }
}

/// Answers only `POST <path>`: anything else is a 404 or 405 problem, before any other work.
#[derive(Clone, Debug)]
struct RouteLayer {
    path: Arc<str>,
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            path: self.path.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Route<S> {
    inner: S,
    path: Arc<str>,
}

impl<S, B, ResBody> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let form = ResponseForm::of(request.headers());
        if request.uri().path() != &*self.path {
            let problem = Problem::new(StatusCode::NOT_FOUND, codes::NOT_FOUND)
                .with_detail(format!("deliveries are received at {}", self.path));
            return ResponseFuture::answered(problem.into_response_for(form));
        }
        if request.method() != Method::POST {
            let mut response =
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED)
                    .with_detail("deliveries are POSTed")
                    .into_response_for(form);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return ResponseFuture::answered(response);
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use crate::problem::ProblemCode;
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, ServiceExt};

    use super::*;

    /// An inner service answering 200 with `inner` as the body.
    fn inner() -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
        })
    }

    async fn body_of<B: Body<Data = Bytes>>(response: Response<B>) -> Bytes
    where
        B::Error: std::fmt::Debug,
    {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    fn route() -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> {
        RouteLayer {
            path: Arc::from("/webhooks/elevenlabs"),
        }
        .layer(inner())
    }

    #[tokio::test]
    async fn in_box_answers_as_its_service_does() {
        let mut service = InBoxLayer.layer(service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
        }));
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_of(response).await, "inner");
    }

    #[tokio::test]
    async fn route_passes_post_to_the_path_on() {
        let request = Request::post("/webhooks/elevenlabs").body(()).unwrap();
        let response = route().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_of(response).await, "inner");
    }

    #[tokio::test]
    async fn route_answers_other_paths_404_and_other_methods_405() {
        let response = route()
            .oneshot(Request::post("/elsewhere").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&codes::NOT_FOUND)
        );
        assert!(String::from_utf8_lossy(&body_of(response).await).contains("/webhooks/elevenlabs"));

        let response = route()
            .oneshot(Request::get("/webhooks/elevenlabs").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }
}
