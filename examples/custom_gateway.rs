//! A gateway of your own: an axum server that mounts hookgate's stack (normalization to the
//! ElevenLabs contract, the failure and per-client limits `hookgate serve` has by default,
//! verification) in front of the durable sink *and* your own worker, beside routes of its own.
//!
//! ```text
//! cargo run --example custom_gateway --features gateway,axum            # serves on 127.0.0.1:3002
//! cargo run --example custom_gateway --features gateway,axum -- --once  # self-test, then exit
//! ```
//!
//! A verified delivery is stored in the sink directory (`./events`; a temporary directory with
//! `--once`) before it is answered, then handed to a worker task over a channel: the worker may
//! fall behind or restart, the event is already durable. `GET /health` is the program's own.
//! With `--once` the program sends itself one signed delivery (and one forged) and checks that
//! the delivery reached the worker and the sink directory, exiting non-zero otherwise. Without
//! it, it prints the `hookgate send` and `curl` lines that deliver to it, signed with the secret
//! `hookgate` uses in the same directory (see `examples/common/mod.rs`).

mod common;

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, time::Duration};

use axum::{
    routing::{get, post_service},
    Router,
};
use bytes::Bytes;
use hookgate::{
    elevenlabs::{event_id, ElevenLabsLayer},
    gateway::Sink,
    scheme::ElevenLabs,
    signature::VerifiedBody,
};
use http::{Request, StatusCode};
use tokio::sync::mpsc;
use tower::{service_fn, Layer, Service};

/// The webhook's path.
const PATH: &str = "/webhooks/elevenlabs";

/// Your own processing of a delivery (already stored): here, say what arrived, and report its
/// event id to whoever listens.
async fn worker(mut deliveries: mpsc::Receiver<Bytes>, processed: mpsc::Sender<String>) {
    while let Some(body) = deliveries.recv().await {
        let id = event_id(&body).unwrap_or_else(|| "(no id)".to_owned());
        println!("worker: delivery {id}, {} bytes", body.len());
        let _ = processed.send(id).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let once = common::once();
    let scheme = ElevenLabs::new(common::secret())?;
    let events = if once {
        std::env::temp_dir().join(format!("hookgate-custom-gateway-{}", std::process::id()))
    } else {
        PathBuf::from("./events")
    };
    let sink = Sink::open(&events)?;
    let (to_worker, deliveries) = mpsc::channel::<Bytes>(1024);
    let (report, mut processed) = mpsc::channel::<String>(16);
    tokio::spawn(worker(deliveries, report));

    // The destination: the sink first (durable before the 200), then the worker. A full queue
    // only delays the worker's view; the event is in the sink either way.
    let destination = service_fn(move |request: Request<VerifiedBody>| {
        let mut sink = sink.clone();
        let to_worker = to_worker.clone();
        async move {
            let body = request.body().to_bytes();
            let response = sink.call(request).await?;
            if response.status() == StatusCode::OK {
                let _ = to_worker.try_send(body);
            }
            Ok::<_, Infallible>(response)
        }
    });

    // The recommended onion in one call, in the right order: normalization to ElevenLabs'
    // contract, the failure limiter, the per-client limit (clients as the socket peer, from
    // axum's ConnectInfo; ElevenLabs' egress addresses exempt), verification. Its limits are
    // `hookgate serve`'s defaults.
    let webhook = ElevenLabsLayer::new(scheme.clone())
        .max_body_size(32 << 20)
        .body_timeout(Duration::from_secs(30))
        .layer(destination);

    let app = Router::new()
        .route(PATH, post_service(webhook))
        .route("/health", get(|| async { "ok\n" }));

    let addr = if once {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3002"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!(
        "listening on http://{addr}{PATH}, storing into {}",
        events.display()
    );
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    common::self_test(addr, PATH, &scheme).await?;
    let checked = check_arrival(addr, &events, &mut processed).await;
    if once {
        let _ = std::fs::remove_dir_all(&events);
        return checked;
    }
    checked?;
    println!("{}", common::next_steps(&format!("http://{addr}{PATH}")));
    server.await??;
    Ok(())
}

/// The self-test's delivery reached the worker and the sink directory, byte for byte, and the
/// program's own route answers beside the webhook.
async fn check_arrival(
    addr: SocketAddr,
    events: &std::path::Path,
    processed: &mut mpsc::Receiver<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let expected = event_id(common::SAMPLE_TRANSCRIPT.as_bytes()).ok_or("the sample has an id")?;
    let id = tokio::time::timeout(Duration::from_secs(5), processed.recv())
        .await
        .map_err(|_| "the worker got nothing within 5 s")?
        .ok_or("the worker stopped")?;
    if id != expected {
        return Err(format!("the worker got {id}, not {expected}").into());
    }
    let stored = std::fs::read(events.join(format!("{expected}.json")))?;
    if stored != common::SAMPLE_TRANSCRIPT.as_bytes() {
        return Err("the sink holds other bytes than were delivered".into());
    }
    println!(
        "checked: {expected} reached the worker and {}",
        events.display()
    );

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let health = client
        .get(format!("http://{addr}/health").parse()?)
        .await?
        .status();
    if health != StatusCode::OK {
        return Err(format!("/health answered {health}").into());
    }
    Ok(())
}
