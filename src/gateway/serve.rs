//! Serving: listeners, workers and graceful shutdown around the gateway's service stack (see
//! [`stack`](super::stack)).
//!
//! Thread per core: each worker thread runs its own single-threaded runtime accepting on the
//! one listening socket and its own upstream connection pool, so a request never hops between
//! threads on its way through. The limiter state, the buffer budget, the connection limits, the
//! sink and the metrics are shared by all workers.
//!
//! The socket is bound without `SO_REUSEPORT`: a second process asking for an address this one
//! serves (an old instance with a stale secret, another program) gets a startup error instead
//! of silently taking part of the deliveries. What each connection may hold, and for how long,
//! is [`connections`](super::connections).

use std::{future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

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

use super::{
    builder::{Deadlines, Gateway, REFUSALS_AT_ONCE},
    connections::{
        self, AcceptErrors, Activity, ConnectionLimits, Lingering, Refusal, TrackActivity,
    },
    metrics::{self, Metrics},
    rejection_log::RejectionLog,
    request_id::MakeId,
    stack::{DestinationConfig, Stack, StackFactory},
    Error,
};
use crate::client_checks::TlsConnection;

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
/// Of the refusals answered at once, those from one client address.
const REFUSALS_PER_CLIENT: usize = 8;

impl Gateway {
    /// Starts serving: opens the sink directory (or readies the upstream), binds the listening
    /// socket and the admin listener, and starts the worker threads. Returns once the gateway
    /// receives deliveries (and `/healthz` says so), with a handle telling the addresses it got
    /// and stopping it.
    ///
    /// The worker threads have runtimes of their own; the sink's directory committer, the
    /// admin listener and the rejection log's flush task run on the runtime this is awaited
    /// on, which must be a tokio runtime and must keep running while the gateway serves. No
    /// signal handler is installed: stop the gateway with [`GatewayHandle::shutdown`] (on
    /// SIGTERM, say), or by dropping the handle.
    ///
    /// # Errors
    ///
    /// [`Error::SinkDirectory`], [`Error::AddressInUse`], [`Error::Listen`],
    /// [`Error::AdminListen`], [`Error::Worker`].
    pub async fn serve(self) -> Result<GatewayHandle, Error> {
        let destination = DestinationConfig::open(&self.destination)?;
        if let DestinationConfig::Sink(sink) = &destination {
            self.metrics.add_health_check(sink.health_check());
        }
        let rejections = RejectionLog::start(self.client_ip.clone(), self.rejection_log_interval);
        let factory = StackFactory {
            path: self.path.clone(),
            verify: self.verify,
            client: self.client,
            dedupe: self.dedupe,
            rejections,
            destination,
            metrics: self.metrics.clone(),
            request_ids: MakeId::new(),
        };

        let listener = bind_listener(self.listen).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                Error::AddressInUse { addr: self.listen }
            } else {
                Error::Listen {
                    addr: self.listen,
                    source,
                }
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: self.listen,
            source,
        })?;
        // Per client too: one client's refused connections must not use up everyone's answers.
        let refusals =
            ConnectionLimits::new(REFUSALS_AT_ONCE, REFUSALS_PER_CLIENT, Box::new(|_| false));
        // Dropped (with the handle, or on an error below): every worker stops as it would when
        // told to.
        let (stop, stopped) = watch::channel(false);
        let admin = match self.admin_listen {
            Some(addr) => Some(bind_admin(addr).await?),
            None => None,
        };
        let done = Arc::new(watch::Sender::new(0_usize));
        for index in 0..self.workers {
            // One socket, accepted on by every worker: no `SO_REUSEPORT` group another process
            // could join.
            let listener = listener
                .try_clone()
                .map_err(|source| Error::Worker { source })?;
            let worker = Worker {
                tls: self.tls.clone(),
                stack: factory.make()?,
                limits: Arc::clone(&self.limits),
                refusals: Arc::clone(&refusals),
                deadlines: self.deadlines,
                stopped: stopped.clone(),
                grace: self.grace,
            };
            let ended = WorkerEnded(Arc::clone(&done));
            std::thread::Builder::new()
                .name(format!("hookgate-worker-{index}"))
                .spawn(move || {
                    // Dropped last, after the runtime and every task on it.
                    let _ended = ended;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a worker runtime starts");
                    runtime.block_on(worker.run(listener));
                })
                .map_err(|source| Error::Worker { source })?;
        }
        drop(listener);
        // Operators see `/healthz` and `/metrics` until the last worker has ended.
        let admin_addr = admin.map(|(listener, addr)| {
            let mut workers_ended = done.subscribe();
            let workers = self.workers;
            let ended = async move {
                let _ = workers_ended.wait_for(|ended| *ended >= workers).await;
            };
            spawn_admin(listener, self.metrics.clone(), ended);
            addr
        });
        // Ready before saying so: whoever reads the announcement may ask /healthz at once.
        self.metrics.set_ready();
        let handle = GatewayHandle {
            local_addr,
            admin_addr,
            scheme: if self.tls.is_some() { "https" } else { "http" },
            path: self.path,
            workers: self.workers,
            grace: self.grace,
            stop,
            done,
        };
        tracing::info!(
            workers = self.workers,
            "receiving deliveries at {}",
            handle.url()
        );
        Ok(handle)
    }
}

/// A serving gateway: the addresses it got, and the way to stop it.
///
/// Dropping the handle stops the gateway as [`stop`](Self::stop) does, without waiting.
#[derive(Debug)]
pub struct GatewayHandle {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    scheme: &'static str,
    path: Arc<str>,
    workers: usize,
    grace: Duration,
    stop: watch::Sender<bool>,
    /// How many workers have ended.
    done: Arc<watch::Sender<usize>>,
}

impl GatewayHandle {
    /// The address deliveries are received on (the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address (`/healthz`, `/metrics`), when one was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The URL deliveries are received at: `http://` or `https://`, the local address, the
    /// path.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.local_addr, self.path)
    }

    /// Begins a graceful shutdown and returns at once: no new connections are accepted (the
    /// listening socket is closed once every worker has let go of it), connections are asked
    /// to close after their request in flight, and requests in flight get the shutdown grace
    /// period to finish. [`stopped`](Self::stopped) says when it is over.
    pub fn stop(&self) {
        let first = self
            .stop
            .send_if_modified(|stop| !std::mem::replace(stop, true));
        if first {
            tracing::info!(
                grace_secs = self.grace.as_secs(),
                "shutting down: no new connections; letting in-flight requests finish"
            );
        }
    }

    /// Completes once every worker has ended: after [`stop`](Self::stop), when the requests in
    /// flight have finished or the grace period is over. The admin listener, which answers
    /// until then, closes too.
    pub async fn stopped(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|ended| *ended >= self.workers).await;
    }

    /// [`stop`](Self::stop), then [`stopped`](Self::stopped): returns once the gateway has
    /// stopped, within the shutdown grace period (and the few seconds a lingering close takes).
    pub async fn shutdown(self) {
        self.stop();
        self.stopped().await;
        tracing::info!("stopped");
    }
}

/// Counts a worker as ended when dropped (its thread's last act, even when it panics).
struct WorkerEnded(Arc<watch::Sender<usize>>);

impl Drop for WorkerEnded {
    fn drop(&mut self) {
        self.0.send_modify(|ended| *ended += 1);
    }
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

/// The admin listener, and the address it got.
async fn bind_admin(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let admin_error = |source| Error::AdminListen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(admin_error)?;
    let local = listener.local_addr().map_err(admin_error)?;
    tracing::info!("admin: http://{local}/healthz and /metrics");
    Ok((listener, local))
}

/// Serves `/healthz` and `/metrics` on the current runtime until `ended` completes.
fn spawn_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ended: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut ended = pin!(ended);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ended.as_mut() => return,
            };
            let Ok((stream, _)) = accepted else {
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
}

/// One worker's share of the gateway.
struct Worker {
    tls: Option<TlsAcceptor>,
    stack: Stack,
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
    stack: Stack,
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
