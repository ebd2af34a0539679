//! The gateway's settings ([`GatewayBuilder`]) and the gateway they make ([`Gateway`]), checked
//! and ready to serve.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio_rustls::TlsAcceptor;

use super::{
    connections::{self, ConnectionLimits},
    metrics::{GaugeSource, Metrics, RedisHealth, StoreMetrics},
    stack::{self, ClientLayers},
    state::EventStore,
    tls,
    upstream::UpstreamBuilder,
    Error,
};
use crate::{
    client_ip::ClientIp, dedupe::DeduplicateLayer, scheme::ElevenLabs, signature::BufferBudget,
    store::redis::RedisStore, VerifySignatureLayer,
};

/// Descriptors kept free of connections: sink files, upstream connections, the admin port,
/// and the connections being refused.
pub(crate) const RESERVED_DESCRIPTORS: usize = 64 + REFUSALS_AT_ONCE;
/// Connections over a cap being answered `503` at once (each for a few seconds at most).
pub(crate) const REFUSALS_AT_ONCE: usize = 256;

/// Where verified deliveries go.
#[derive(Clone, Debug)]
pub(crate) enum DestinationSetting {
    /// The durable sink, in this directory.
    Sink(PathBuf),
    /// Forwarded to an upstream, each worker with its own connection pool.
    Upstream(UpstreamBuilder),
}

/// The settings of a [`Gateway`]: what `hookgate serve`'s flags set, typed. Made with
/// [`Gateway::builder`]; every setting has the default `hookgate serve` has.
///
/// The scheme is taken ready-made, with its secrets and its tolerance
/// ([`ElevenLabs::tolerance`]): where secrets come from is the caller's business.
#[derive(Clone, Debug)]
#[must_use]
pub struct GatewayBuilder {
    pub(crate) scheme: ElevenLabs,
    pub(crate) path: String,
    pub(crate) listen: SocketAddr,
    pub(crate) admin_listen: Option<SocketAddr>,
    pub(crate) destination: DestinationSetting,
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) client_rate: u32,
    pub(crate) client_burst: u32,
    pub(crate) max_failures_per_minute: u32,
    pub(crate) failure_cooldown: Duration,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) known_senders: Vec<String>,
    pub(crate) elevenlabs_known_senders: bool,
    pub(crate) allow_ips: Vec<String>,
    pub(crate) allow_elevenlabs_egress: bool,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    pub(crate) require_https: bool,
    pub(crate) workers: Option<usize>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_client: usize,
    pub(crate) request_head_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) rejection_log_interval: Duration,
    pub(crate) redis: Option<RedisStore>,
    pub(crate) dedupe: Option<bool>,
    pub(crate) dedupe_ttl: Duration,
}

impl GatewayBuilder {
    pub(crate) fn new(scheme: ElevenLabs) -> Self {
        Self {
            scheme,
            path: "/webhooks/elevenlabs".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            destination: DestinationSetting::Sink(PathBuf::from("./events")),
            max_body_bytes: VerifySignatureLayer::<()>::DEFAULT_MAX_BODY_SIZE,
            body_timeout: Duration::from_secs(30),
            client_rate: 50,
            client_burst: 100,
            max_failures_per_minute: 30,
            failure_cooldown: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            known_senders: Vec::new(),
            elevenlabs_known_senders: true,
            allow_ips: Vec::new(),
            allow_elevenlabs_egress: false,
            tls: None,
            require_https: false,
            workers: None,
            shutdown_grace: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_client: 64,
            request_head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            rejection_log_interval: Duration::from_secs(10),
            redis: None,
            dedupe: None,
            dedupe_ttl: DeduplicateLayer::<()>::DEFAULT_KEEP_DONE,
        }
    }

    /// The path deliveries are `POST`ed to (`/webhooks/elevenlabs`); anything else is answered
    /// `404` or `405` before any other work.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The address to receive deliveries on (`127.0.0.1:8080`). Port 0 picks a free port;
    /// [`GatewayHandle::local_addr`](super::GatewayHandle::local_addr) says which.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// An address for `/healthz` and Prometheus `/metrics` (off by default). For operators only,
    /// with no connection caps: bind it to loopback or an internal address.
    pub fn admin_listen(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.admin_listen = addr.into();
        self
    }

    /// Stores verified deliveries in this directory, durably, before answering them (the
    /// default destination, `./events`). See [`Sink`](super::Sink).
    pub fn sink_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.destination = DestinationSetting::Sink(dir.into());
        self
    }

    /// Forwards verified deliveries to this upstream instead of storing them; each worker gets
    /// a connection pool of its own. See [`Upstream`](super::Upstream).
    pub fn upstream(mut self, upstream: UpstreamBuilder) -> Self {
        self.destination = DestinationSetting::Upstream(upstream);
        self
    }

    /// The largest body accepted (64 MiB: an hour-long call's `post_call_audio` is about 38
    /// MiB); larger ones are answered `413`, which the sender never retries.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a delivery's whole body may take to arrive (30 s); then a retryable `503
    /// body_timeout`.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Requests per second allowed per client before verification (50); `0` turns the limit
    /// off. Over it: a retryable `503 rate_limited`. Known senders are never limited.
    pub fn client_rate(mut self, per_second: u32) -> Self {
        self.client_rate = per_second;
        self
    }

    /// The burst allowed per client on top of [`client_rate`](Self::client_rate) (100; `0`:
    /// the rate itself).
    pub fn client_burst(mut self, burst: u32) -> Self {
        self.client_burst = burst;
        self
    }

    /// Failed verifications per client and minute before the client is blocked (30); `0`
    /// never blocks.
    pub fn max_failures_per_minute(mut self, failures: u32) -> Self {
        self.max_failures_per_minute = failures;
        self
    }

    /// How long a client that kept failing verification stays blocked (300 s).
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }

    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed
    /// (none by default).
    pub fn trusted_proxies<I, S>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_proxies = networks.into_iter().map(Into::into).collect();
        self
    }

    /// Senders' addresses (addresses or CIDRs): never rate limited, blocked or capped per client
    /// before verification. Do not list addresses anyone else can send from.
    pub fn known_senders<I, S>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.known_senders = networks.into_iter().map(Into::into).collect();
        self
    }

    /// Whether ElevenLabs' published egress addresses are known senders too (yes by default).
    pub fn elevenlabs_known_senders(mut self, yes: bool) -> Self {
        self.elevenlabs_known_senders = yes;
        self
    }

    /// Accepts only clients from these networks (addresses or CIDRs); others get `403`. Off
    /// when empty and [`allow_elevenlabs_egress`](Self::allow_elevenlabs_egress) is off.
    pub fn allow_ips<I, S>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_ips = networks.into_iter().map(Into::into).collect();
        self
    }

    /// Also allows ElevenLabs' published egress addresses (turns the allow-list on).
    pub fn allow_elevenlabs_egress(mut self, yes: bool) -> Self {
        self.allow_elevenlabs_egress = yes;
        self
    }

    /// Serves HTTPS (HTTP/2 and HTTP/1.1) with rustls, with the PEM certificate chain and
    /// private key in these files (plain HTTP by default).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// Refuses requests that did not arrive over HTTPS, directly or per a trusted proxy, with
    /// `403` (off by default).
    pub fn require_https(mut self, yes: bool) -> Self {
        self.require_https = yes;
        self
    }

    /// Worker threads, each with its own runtime and upstream connection pool, accepting on the
    /// one listening socket (one per core by default; at least one).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// How long in-flight requests get to finish once the gateway is told to stop (30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Connections held at once, in all (10 000 by default, or fewer to stay under the
    /// open-file limit); more are answered a retryable `503` and closed.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Connections held at once from one client address (64); known senders and trusted
    /// proxies are exempt. More are answered a retryable `503` and closed.
    pub fn max_connections_per_client(mut self, connections: usize) -> Self {
        self.max_connections_per_client = connections;
        self
    }

    /// How long a new connection (its TLS handshake included) has to deliver its first request
    /// head (10 s).
    pub fn request_head_timeout(mut self, timeout: Duration) -> Self {
        self.request_head_timeout = timeout;
        self
    }

    /// How long a connection may stay open with no request in flight (60 s), HTTP/1
    /// keep-alive and HTTP/2 alike.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The interval over which repeated rejections of one client for one cause are counted
    /// into a single log line (10 s); the first of each is logged at once.
    pub fn rejection_log_interval(mut self, interval: Duration) -> Self {
        self.rejection_log_interval = interval;
        self
    }

    /// Keeps all state on this Redis (or Valkey) server, shared by every instance given the
    /// same server and prefix: the per-client limits, the failure counts and blocks, and
    /// deduplication (which this turns on in sink mode too). In memory by default (one
    /// instance). See [`RedisStore`] for the connection, its timeouts and the key layout.
    ///
    /// Each store's failure policy, while the server is unreachable: the per-client limiter and
    /// the failure limiter fail open (a delivery is let through unlimited; logged once per
    /// 10 s, counted in `/metrics`), deduplication answers a retryable `503` (never a `200`
    /// for an event neither stored nor handled). `/healthz` fails while the server does not
    /// answer.
    pub fn redis(mut self, redis: impl Into<Option<RedisStore>>) -> Self {
        self.redis = redis.into();
        self
    }

    /// Whether every event is handled once however often it is delivered (a
    /// [`DeduplicateLayer`] in front of the destination, keyed by
    /// [`event_key`](crate::elevenlabs::event_key), else the signature). By default on in
    /// upstream mode and whenever [`redis`](Self::redis) is set; in sink mode without Redis
    /// the sink's file names already keep one copy of each event.
    pub fn dedupe(mut self, yes: bool) -> Self {
        self.dedupe = Some(yes);
        self
    }

    /// How long a handled event is remembered (24 h): a redelivery or replay within it is
    /// answered `200` without reaching the destination. At least the scheme's tolerance, so
    /// that a captured delivery cannot be replayed once it is forgotten.
    pub fn dedupe_ttl(mut self, ttl: Duration) -> Self {
        self.dedupe_ttl = ttl;
        self
    }

    /// Checks the settings and makes what they describe: the layers, the TLS configuration
    /// (reading its files), the connection caps, the metrics. Nothing is bound or written yet:
    /// that is [`Gateway::serve`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`], [`Error::UpstreamUrl`], [`Error::TlsCertificate`],
    /// [`Error::TlsKey`], [`Error::TlsConfig`], [`Error::InvalidSetting`].
    pub fn build(self) -> Result<Gateway, Error> {
        if !self.path.starts_with('/') {
            return Err(Error::InvalidPath { path: self.path });
        }
        let tls = match &self.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        if let DestinationSetting::Upstream(upstream) = &self.destination {
            // Checked now; every worker makes its own (its own connection pool).
            upstream.build()?;
        }

        let mut gauges = Vec::new();
        let budget = BufferBudget::new(
            VerifySignatureLayer::<()>::DEFAULT_BUFFER_BUDGET.max(self.max_body_bytes),
        );
        let gauge_budget = budget.clone();
        gauges.push(GaugeSource {
            name: "buffer_bytes_in_use",
            help: "Body bytes buffered by in-flight requests",
            read: Box::new(move || gauge_budget.in_use() as i64),
        });
        let verify = VerifySignatureLayer::new(self.scheme.clone())
            .max_body_size(self.max_body_bytes)
            .body_timeout(self.body_timeout)
            .shared_buffer_budget(budget);
        let store_metrics = StoreMetrics::default();
        let redis = self.redis.clone().map(|redis| store_metrics.observe(redis));
        let client_ip = stack::client_ip(&self)?;
        let client = ClientLayers::new(&self, redis.as_ref(), &client_ip, &mut gauges)?;
        let dedupe = stack::dedupe_layer(&self, redis.as_ref(), &mut gauges)?;
        let limits = connection_limits(&self, &client_ip);
        let open_connections = Arc::clone(&limits);
        gauges.push(GaugeSource {
            name: "connections_open",
            help: "Client connections held (lingering closes included)",
            read: Box::new(move || open_connections.open() as i64),
        });
        let metrics = Metrics::new(gauges, store_metrics);
        if let Some(redis) = &redis {
            metrics.add_health_check(Arc::new(RedisHealth(redis.clone())));
        }
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Gateway {
            path: Arc::from(self.path.as_str()),
            listen: self.listen,
            admin_listen: self.admin_listen,
            verify,
            client,
            dedupe,
            client_ip,
            rejection_log_interval: self.rejection_log_interval,
            destination: self.destination,
            tls,
            limits,
            metrics,
            workers,
            grace: self.shutdown_grace,
            deadlines: Deadlines {
                request_head: self.request_head_timeout,
                idle: self.idle_timeout,
            },
        })
    }
}

/// The connection caps per the settings; by default 10 000 in all, less where the open-file
/// limit is lower, so the process never runs out of descriptors for its own files.
fn connection_limits(settings: &GatewayBuilder, client_ip: &ClientIp) -> Arc<ConnectionLimits> {
    let descriptors = connections::descriptor_limit();
    let total = settings.max_connections.unwrap_or_else(|| {
        descriptors.map_or(10_000, |limit| {
            limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(1, 10_000)
        })
    });
    if let Some(limit) = descriptors {
        if total + RESERVED_DESCRIPTORS > limit {
            tracing::warn!(
                max_connections = total,
                open_file_limit = limit,
                "max_connections is close to the open-file limit: raise the limit (ulimit -n, \
                 LimitNOFILE=) or lower max_connections"
            );
        }
    }
    tracing::info!(
        max_connections = total,
        per_client = settings.max_connections_per_client,
        "connection limits"
    );
    let client_ip = client_ip.clone();
    let exempt = move |ip| client_ip.is_trusted_proxy(ip) || client_ip.is_known_sender(&ip);
    ConnectionLimits::new(total, settings.max_connections_per_client, Box::new(exempt))
}

/// The deadlines every connection lives under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    pub(crate) request_head: Duration,
    pub(crate) idle: Duration,
}

/// A gateway, built and checked, ready to [`serve`](Gateway::serve): the verification and
/// client layers, the TLS configuration, the connection caps and the metrics, shared by every
/// worker once it serves.
pub struct Gateway {
    pub(crate) path: Arc<str>,
    pub(crate) listen: SocketAddr,
    pub(crate) admin_listen: Option<SocketAddr>,
    pub(crate) verify: VerifySignatureLayer<ElevenLabs>,
    pub(crate) client: ClientLayers,
    pub(crate) dedupe: Option<DeduplicateLayer<EventStore>>,
    pub(crate) client_ip: ClientIp,
    pub(crate) rejection_log_interval: Duration,
    pub(crate) destination: DestinationSetting,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) workers: usize,
    pub(crate) grace: Duration,
    pub(crate) deadlines: Deadlines,
}

impl Gateway {
    /// The settings of a gateway checking deliveries with `scheme`, every other setting at
    /// `hookgate serve`'s default.
    pub fn builder(scheme: ElevenLabs) -> GatewayBuilder {
        GatewayBuilder::new(scheme)
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("destination", &self.destination)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("workers", &self.workers)
            .field("grace", &self.grace)
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}
