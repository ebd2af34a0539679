//! `hookgate serve`: listeners, workers and shutdown around the gateway's service stack
//! (see [`crate::stack`]).
//!
//! Thread per core: each worker thread runs its own single-threaded runtime accepting on the
//! one listening socket and its own upstream connection pool, so a request never hops between
//! threads on its way through. The limiter state, the buffer budget, the connection limits, the
//! sink and the metrics are shared by all workers.
//!
//! The socket is bound without `SO_REUSEPORT`: a second process asking for an address this one
//! serves (an old instance with a stale secret, another program) gets a startup error instead
//! of silently taking part of the deliveries. What each connection may hold, and for how long,
//! is [`crate::connections`].

use std::{net::SocketAddr, pin::pin, process::ExitCode, sync::Arc, time::Duration};

use hookgate::{
    client_checks::TlsConnection, client_ip::ClientIp, signature::BufferBudget,
    VerifySignatureLayer,
};
use http::Request;
use hyper::{
    body::Incoming,
    rt::{Read, Write},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;

use crate::{
    cli::ServeArgs,
    connections::{
        self, AcceptErrors, Activity, ConnectionLimits, Lingering, Refusal, TrackActivity,
    },
    metrics::{self, GaugeSource, Metrics},
    secrets::{self, Source, DEV_SECRET_FILE},
    sink::Sink,
    stack::{ClientLayers, DestinationConfig, Gateway, StackFactory},
    tls,
    upstream::Upstream,
};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2: how often an idle connection is pinged, and how long the answer may take.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection closed for idleness may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// At shutdown, connections are bounded by the worker's grace period; this only keeps the
/// timer from firing first.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(365 * 86_400);
/// Descriptors kept free of connections: sink files, upstream connections, the admin port,
/// and the connections being refused.
const RESERVED_DESCRIPTORS: usize = 64 + REFUSALS_AT_ONCE;
/// Connections over a cap being answered `503` at once (each for a few seconds at most).
const REFUSALS_AT_ONCE: usize = 256;
/// Of those, from one client address.
const REFUSALS_PER_CLIENT: usize = 8;

/// The deadlines every connection lives under.
#[derive(Clone, Copy, Debug)]
struct Deadlines {
    request_head: Duration,
    idle: Duration,
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("hookgate serve: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let secrets = secrets::load_or_create_development(&args.secrets)?;
    if secrets.is_development() {
        tracing::warn!(
            "NO WEBHOOK SECRET CONFIGURED: using the development secret in {DEV_SECRET_FILE} ({}). \
             `hookgate send` signs with it. Set ELEVENLABS_WEBHOOK_SECRET to your webhook's secret \
             before receiving real deliveries.",
            if secrets.source == Source::DevCreated { "just created" } else { "from an earlier run" }
        );
    } else {
        tracing::info!(secrets = secrets.len(), source = %secrets.source, "webhook secrets loaded");
    }
    let scheme = secrets
        .scheme()?
        .tolerance(Duration::from_secs(args.tolerance));
    if !args.path.starts_with('/') {
        return Err(format!("--path {:?} must start with /", args.path));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };

    let mut gauges = Vec::new();
    let budget = BufferBudget::new(
        VerifySignatureLayer::<()>::DEFAULT_BUFFER_BUDGET.max(args.max_body_bytes),
    );
    let gauge_budget = budget.clone();
    gauges.push(GaugeSource {
        name: "buffer_bytes_in_use",
        help: "Body bytes buffered by in-flight requests",
        read: Box::new(move || gauge_budget.in_use() as i64),
    });
    let verify = VerifySignatureLayer::new(scheme)
        .max_body_size(args.max_body_bytes)
        .body_timeout(Duration::from_secs_f64(args.body_timeout))
        .shared_buffer_budget(budget);
    let destination = match &args.upstream {
        Some(url) => {
            let connect = Duration::from_secs_f64(args.upstream_connect_timeout);
            let response = Duration::from_secs_f64(args.upstream_timeout);
            // Checked now; every worker makes its own (its own connection pool).
            Upstream::new(url, connect, response)?;
            tracing::info!(upstream = %url, "verified deliveries are forwarded upstream");
            DestinationConfig::Upstream {
                url: url.clone(),
                connect,
                response,
            }
        }
        None => {
            let sink = Sink::open(&args.sink_dir).map_err(|e| {
                format!("cannot use sink directory {}: {e}", args.sink_dir.display())
            })?;
            tracing::info!(dir = %args.sink_dir.display(), "verified deliveries are stored in the sink directory");
            DestinationConfig::Sink(sink)
        }
    };
    let client = ClientLayers::from_args(&args, &mut gauges)?;
    let limits = connection_limits(&args)?;
    let open_connections = Arc::clone(&limits);
    gauges.push(GaugeSource {
        name: "connections_open",
        help: "Client connections held (lingering closes included)",
        read: Box::new(move || open_connections.open() as i64),
    });
    let metrics = Metrics::new(gauges);
    if let DestinationConfig::Sink(sink) = &destination {
        metrics.add_health_check(sink.health_check());
    }
    let factory = StackFactory {
        path: Arc::from(args.path.as_str()),
        verify,
        client,
        destination,
        metrics: metrics.clone(),
    };

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let listener = bind_listener(args.listen).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "cannot listen on {}: the address is already in use by another process \
                 (another hookgate instance?); stop it or choose another --listen",
                args.listen
            )
        } else {
            format!("cannot listen on {}: {e}", args.listen)
        }
    })?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Per client too: one client's refused connections must not use up everyone's answers.
    let refusals =
        ConnectionLimits::new(REFUSALS_AT_ONCE, REFUSALS_PER_CLIENT, Box::new(|_| false));
    if let Some(admin) = args.admin_listen {
        spawn_admin(admin, metrics.clone()).await?;
    }

    let grace = Duration::from_secs(args.shutdown_grace);
    let deadlines = Deadlines {
        request_head: Duration::from_secs_f64(args.request_head_timeout),
        idle: Duration::from_secs_f64(args.idle_timeout),
    };
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::new();
    for index in 0..workers {
        // One socket, accepted on by every worker: no `SO_REUSEPORT` group another process
        // could join.
        let listener = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let worker = Worker {
            tls: tls.clone(),
            stack: factory.make()?,
            limits: Arc::clone(&limits),
            refusals: Arc::clone(&refusals),
            deadlines,
            stopped: stopped.clone(),
            grace,
        };
        let thread = std::thread::Builder::new()
            .name(format!("hookgate-worker-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime starts");
                runtime.block_on(worker.run(listener));
            })
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        threads.push(thread);
    }
    drop(listener);
    // Ready before saying so: whoever reads the announcement may ask /healthz at once.
    metrics.set_ready();
    announce(
        if tls.is_some() { "https" } else { "http" },
        local,
        &args.path,
        workers,
    );

    shutdown_signal().await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections; letting in-flight requests finish"
    );
    let _ = stop.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

fn announce(scheme: &str, local: SocketAddr, path: &str, workers: usize) {
    tracing::info!(workers, "receiving deliveries at {scheme}://{local}{path}");
}

/// The listening socket, non-blocking, bound without `SO_REUSEPORT`, so that an address
/// another process already serves is an error here.
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restart bind while the old process's connections sit in TIME_WAIT; on Linux it
    // does not let two processes listen on one address.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(std::net::TcpListener::from(socket))
}

/// The connection caps per the flags; by default 10 000 in all, less where the open-file
/// limit is lower, so the process never runs out of descriptors for its own files.
fn connection_limits(args: &ServeArgs) -> Result<Arc<ConnectionLimits>, String> {
    let descriptors = connections::descriptor_limit();
    let total = args.max_connections.unwrap_or_else(|| {
        descriptors.map_or(10_000, |limit| {
            limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(1, 10_000)
        })
    });
    if let Some(limit) = descriptors {
        if total + RESERVED_DESCRIPTORS > limit {
            tracing::warn!(
                max_connections = total,
                open_file_limit = limit,
                "--max-connections is close to the open-file limit: raise the limit (ulimit -n, \
                 LimitNOFILE=) or lower --max-connections"
            );
        }
    }
    tracing::info!(
        max_connections = total,
        per_client = args.max_connections_per_client,
        "connection limits"
    );
    let client_ip: ClientIp = crate::stack::client_ip(args)?;
    let exempt = move |ip| client_ip.is_trusted_proxy(ip) || client_ip.is_known_sender(&ip);
    Ok(ConnectionLimits::new(
        total,
        args.max_connections_per_client,
        Box::new(exempt),
    ))
}

async fn spawn_admin(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on --admin-listen {addr}: {e}"))?;
    tracing::info!(
        "admin: http://{}/healthz and /metrics",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let service =
                hyper::service::service_fn(move |request| metrics::admin(metrics.clone(), request));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// One worker's share of the gateway.
struct Worker {
    tls: Option<TlsAcceptor>,
    stack: Gateway,
    limits: Arc<ConnectionLimits>,
    refusals: Arc<ConnectionLimits>,
    deadlines: Deadlines,
    stopped: watch::Receiver<bool>,
    grace: Duration,
}

impl Worker {
    /// Accepts until told to stop, then lets its connections' in-flight requests finish within
    /// the grace period.
    async fn run(self, listener: std::net::TcpListener) {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "worker cannot use its listening socket");
                return;
            }
        };
        let mut stopped = self.stopped.clone();
        // Every connection task holds a sender: when all are gone, every connection has ended.
        let (open, mut all_closed) = mpsc::channel::<()>(1);
        let mut errors = AcceptErrors::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    errors.succeeded();
                    accepted
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so once per interval, not once per attempt.
                    let pause = errors.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        _ = stopped.wait_for(|stop| *stop) => break,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let guard = match self.limits.admit(peer.ip()) {
                Ok(guard) => guard,
                Err(why) => {
                    self.refuse(stream, peer, why);
                    continue;
                }
            };
            let stream = Lingering::new(stream, guard);
            let connection = Connection {
                peer,
                stack: self.stack.clone(),
                deadlines: self.deadlines,
                stopped: self.stopped.clone(),
                _open: open.clone(),
            };
            let tls = self.tls.clone();
            tokio::spawn(connection.serve(stream, tls));
        }
        drop(listener);
        drop(open);
        if tokio::time::timeout(self.grace, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }

    /// A connection over a cap: a plain-HTTP client is told so with a `503` problem; a TLS
    /// client (no handshake spent on it) is closed.
    fn refuse(&self, stream: tokio::net::TcpStream, peer: SocketAddr, why: Refusal) {
        tracing::debug!(%peer, ?why, "connection refused: over the connection limit");
        // Refusals being answered hold descriptors too: a bounded number of them at once, and
        // beyond that a refused connection is closed at once.
        let Ok(guard) = self.refusals.admit(peer.ip()) else {
            return;
        };
        let stream = Lingering::new(stream, guard);
        if self.tls.is_none() {
            tokio::spawn(async move {
                connections::refuse(stream, &connections::refusal_response(why)).await;
            });
        }
    }
}

/// One accepted connection and what it is served with.
struct Connection {
    peer: SocketAddr,
    stack: Gateway,
    deadlines: Deadlines,
    stopped: watch::Receiver<bool>,
    /// Dropped when the connection ends (see [`Worker::run`]).
    _open: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(self, stream: Lingering, tls: Option<TlsAcceptor>) {
        let peer = self.peer;
        match tls {
            Some(acceptor) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => self.drive(TokioIo::new(stream), true).await,
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => self.drive(TokioIo::new(stream), false).await,
        }
    }

    /// Serves HTTP/1 or HTTP/2 on `io` until the client closes, the connection has been idle
    /// too long, or the gateway stops.
    async fn drive<I>(mut self, io: I, is_tls: bool)
    where
        I: Read + Write + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let activity = Activity::new();
        let service = TowerToHyperService::new(TrackActivity::new(
            ServiceBuilder::new()
                .map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(peer);
                    if is_tls {
                        request.extensions_mut().insert(TlsConnection);
                    }
                    request
                })
                .service(self.stack.clone()),
            Arc::clone(&activity),
        ));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A client that never finishes its request head is cut off (slowloris); bodies have
        // their own deadline in VerifySignatureLayer.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.deadlines.request_head);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        let mut connection = pin!(builder.serve_connection(io, service));
        // One timer per connection, never touched by a request: it wakes at the earliest the
        // connection could be due and looks then. A deadline only moves later while requests
        // come and go (the first after `min(request head, idle)`), so it is re-armed at most
        // once per idle period, not once per request.
        let deadlines = self.deadlines;
        let timer = tokio::time::sleep(deadlines.request_head.min(deadlines.idle));
        let mut timer = pin!(timer);
        // Once set, the connection was asked to close: it has CLOSE_GRACE (idle) or the
        // worker's grace (shutdown) to finish what is in flight.
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                _ = self.stopped.wait_for(|stop| *stop), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    timer.as_mut().reset(tokio::time::Instant::now() + SHUTDOWN_BOUND);
                }
                () = timer.as_mut() => {
                    if closing {
                        tracing::debug!(%peer, "connection did not close in time; dropping it");
                        return;
                    }
                    let now = std::time::Instant::now();
                    match activity.idle_deadline(deadlines.request_head, deadlines.idle) {
                        Some(at) if at <= now => {
                            tracing::debug!(%peer, "closing an idle connection");
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                            timer.as_mut().reset((now + CLOSE_GRACE).into());
                        }
                        Some(at) => timer.as_mut().reset(at.into()),
                        // A request in flight: its own deadlines bound it; look again later.
                        None => timer.as_mut().reset((now + deadlines.idle).into()),
                    }
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
