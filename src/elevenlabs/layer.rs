//! [`ElevenLabsLayer`]: the recommended onion for ElevenLabs deliveries, as one layer.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use tower_layer::Layer;

use crate::{
    client_ip::ClientIp,
    normalize::{NormalizeStatus, NormalizeStatusLayer},
    rate_limit::{
        FailureLimit, FailureLimitLayer, FailurePolicy, MemoryStore, Rate, RateLimit,
        RateLimitLayer,
    },
    scheme::ElevenLabs,
    signature::{VerifySignature, VerifySignatureLayer},
};

/// Requests per second a client may make before verification, by default.
const CLIENT_RATE: NonZeroU32 = NonZeroU32::new(50).expect("non-zero");
/// Burst a client may make on top of that.
const CLIENT_BURST: NonZeroU32 = NonZeroU32::new(100).expect("non-zero");
/// Failed verifications per client per minute before it is blocked.
const FAILURES_PER_MINUTE: NonZeroU32 = NonZeroU32::new(30).expect("non-zero");
/// How long a client that kept failing stays blocked.
const FAILURE_COOLDOWN: Duration = Duration::from_secs(300);

/// The service [`ElevenLabsLayer`] wraps a handler in: outermost first, status normalization
/// to ElevenLabs' contract, the per-client rate limit, the failure limiter, verification.
pub type ElevenLabsService<S> = NormalizeStatus<
    RateLimit<
        FailureLimit<VerifySignature<S, ElevenLabs>, ClientIp, MemoryStore<IpAddr>>,
        ClientIp,
        MemoryStore<IpAddr>,
    >,
>;

/// The recommended hookgate onion for ElevenLabs deliveries, in the right order, as one layer:
///
/// ```text
/// request ─▶ NormalizeStatus ─▶ RateLimit (per client) ─▶ FailureLimit ─▶ VerifySignature ─▶ handler
///            (ElevenLabs'        (floods turned away       (blocks clients  (signature, freshness,
///             contract)           before any body           that keep        size, read deadline)
///                                 is read)                  failing)
/// ```
///
/// The order matters and is easy to get wrong by hand: `ServiceBuilder::layer` lists layers
/// outermost first, while axum's `Router::layer` wraps everything added before it, so a router
/// lists them innermost first. Written in `ServiceBuilder`'s order on a router, the stack
/// verifies forged traffic before rate limiting it, and nothing says so. This layer fixes the
/// order; compose the layers yourself (see the crate docs for both spellings) when you need
/// another stack.
///
/// Defaults, the same as `hookgate serve`'s: the client is the socket peer
/// ([`ClientIp::peer`]) and ElevenLabs' published egress addresses are known senders (never
/// limited or blocked before verification); 50 requests per second per client with a burst of
/// 100; a client failing verification 30 times a minute is blocked for 5 minutes; bodies up to
/// 64 MiB (an hour-long call's audio event is about 38 MiB), read within 30 s.
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr};
///
/// use bytes::Bytes;
/// use hookgate::{elevenlabs::ElevenLabsLayer, scheme::ElevenLabs, signature::VerifiedBody};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scheme = ElevenLabs::new("whsec_test")?;
/// let handler = service_fn(|_request: Request<VerifiedBody>| async {
///     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("stored")))
/// });
/// let service = ElevenLabsLayer::new(scheme.clone()).layer(handler);
///
/// let body = r#"{"type":"speech_to_text_transcription","data":{"request_id":"r1"}}"#;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// let mut delivery = Request::post("/webhooks/elevenlabs")
///     .header("elevenlabs-signature", scheme.sign(now, body.as_bytes()))
///     .body(Full::new(Bytes::from(body)))?;
/// // What hyper and axum's `ConnectInfo` give the limiters: the socket peer.
/// delivery.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 7], 40_000)));
/// assert_eq!(service.oneshot(delivery).await?.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ElevenLabsLayer {
    verify: VerifySignatureLayer<ElevenLabs>,
    client: ClientIp,
    client_rate: Rate,
    failures: Rate,
    failure_policy: FailurePolicy,
    rate_limit: RateLimitLayer<ClientIp, MemoryStore<IpAddr>>,
    failure_limit: FailureLimitLayer<ClientIp>,
}

impl ElevenLabsLayer {
    /// The recommended onion around verification with `scheme`, on the defaults above.
    pub fn new(scheme: ElevenLabs) -> Self {
        let client = ClientIp::peer()
            .known_senders(super::EGRESS_IPS)
            .expect("the published egress addresses parse");
        let client_rate = Rate::per_second(CLIENT_RATE).burst(CLIENT_BURST);
        let failures = Rate::per_minute(FAILURES_PER_MINUTE).burst(FAILURES_PER_MINUTE);
        let failure_policy =
            FailurePolicy::block_for(FAILURE_COOLDOWN).expect("a cooldown longer than zero");
        Self {
            verify: VerifySignatureLayer::new(scheme),
            rate_limit: RateLimitLayer::per_client(client_rate, client.clone()),
            failure_limit: FailureLimitLayer::new(failures, failure_policy, client.clone()),
            client,
            client_rate,
            failures,
            failure_policy,
        }
    }

    /// Who the client is, for both limiters: for instance
    /// [`ClientIp::behind_proxies`] behind a reverse proxy. Add ElevenLabs' addresses with
    /// [`ClientIp::known_senders`] if you want them exempt, as the default is.
    pub fn client_ip(mut self, client: ClientIp) -> Self {
        self.client = client;
        self.rebuild_limiters()
    }

    /// The rate each client may send at before verification.
    pub fn client_rate(mut self, rate: Rate) -> Self {
        self.client_rate = rate;
        self.rebuild_limiters()
    }

    /// How many failed verifications a client may have (`allowed`) before it is blocked, and
    /// for how long ([`FailurePolicy::block_for`]).
    pub fn failure_limit(mut self, allowed: Rate, policy: FailurePolicy) -> Self {
        self.failures = allowed;
        self.failure_policy = policy;
        self.rebuild_limiters()
    }

    /// The largest body accepted ([`VerifySignatureLayer::max_body_size`]).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.verify = self.verify.max_body_size(bytes);
        self
    }

    /// How long a whole body may take to arrive ([`VerifySignatureLayer::body_timeout`]).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.verify = self.verify.body_timeout(timeout);
        self
    }

    /// The limiters with the current settings: fresh state, shared by every service this layer
    /// makes from now on.
    fn rebuild_limiters(mut self) -> Self {
        self.rate_limit = RateLimitLayer::per_client(self.client_rate, self.client.clone());
        self.failure_limit =
            FailureLimitLayer::new(self.failures, self.failure_policy, self.client.clone());
        self
    }
}

impl<S> Layer<S> for ElevenLabsLayer {
    type Service = ElevenLabsService<S>;

    fn layer(&self, handler: S) -> Self::Service {
        let verified = self.verify.layer(handler);
        let guarded = self.failure_limit.layer(verified);
        let limited = self.rate_limit.layer(guarded);
        NormalizeStatusLayer::elevenlabs().layer(limited)
    }
}
