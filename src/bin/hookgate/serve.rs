//! `hookgate serve`: listeners, workers and shutdown around the gateway's service stack
//! (see [`crate::stack`]).
//!
//! Thread per core: each worker thread runs its own single-threaded runtime with its own
//! listening socket (`SO_REUSEPORT`: the kernel spreads connections over them) and its own
//! upstream connection pool, so a request never hops between threads on its way through. The
//! limiter state, the buffer budget, the sink and the metrics are shared by all workers.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use hookgate::{client_checks::TlsConnection, signature::BufferBudget, VerifySignatureLayer};
use http::Request;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;

use crate::{
    cli::ServeArgs,
    metrics::{self, GaugeSource, Metrics},
    secrets::{self, Source, DEV_SECRET_FILE},
    sink::Sink,
    stack::{ClientLayers, DestinationConfig, Gateway, StackFactory},
    tls,
    upstream::Upstream,
};

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
    let metrics = Metrics::new(gauges);
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
    let listeners = bind_listeners(args.listen, workers)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listeners[0].local_addr().map_err(|e| e.to_string())?;
    if let Some(admin) = args.admin_listen {
        spawn_admin(admin, metrics.clone()).await?;
    }

    let grace = Duration::from_secs(args.shutdown_grace);
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let tls = tls.clone();
        let stopped = stopped.clone();
        let stack = factory.make()?;
        let thread = std::thread::Builder::new()
            .name(format!("hookgate-worker-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime starts");
                runtime.block_on(worker(listener, tls, stack, stopped, grace));
            })
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        threads.push(thread);
    }
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

/// `workers` listening sockets on one address (`SO_REUSEPORT`), non-blocking. A port 0 is
/// resolved by the first and shared by the rest.
fn bind_listeners(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener = std::net::TcpListener::from(socket);
        addr = listener.local_addr()?;
        listeners.push(listener);
        if !cfg!(unix) {
            break;
        }
    }
    Ok(listeners)
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

/// One worker: accepts on its own socket until told to stop, then lets its in-flight requests
/// finish within `grace`.
async fn worker(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    stack: Gateway,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "worker cannot use its listening socket");
            return;
        }
    };
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let stack = stack.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, tls, stack, watcher).await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing the remaining connections"),
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    stack: Gateway,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let is_tls = tls.is_some();
    let service = TowerToHyperService::new(
        ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer);
                if is_tls {
                    request.extensions_mut().insert(TlsConnection);
                }
                request
            })
            .service(stack),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request head is cut off (slowloris); bodies have their
    // own deadline in VerifySignatureLayer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let result = match tls {
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        None => {
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            watcher.watch(connection).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
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
