//! `hookgate bench`: what verification costs on this machine, per body size, against the raw
//! HMAC-SHA256 floor, the way `openssl speed` reports ciphers.
//!
//! For each size, the floor is one HMAC-SHA256 over `"{t}.{body}"` (keyed, fed, finalised: what
//! any verifier must pay), and hookgate is one request through the real
//! [`VerifySignatureLayer`] (header parsing, freshness check, body read in 16 KiB frames under
//! the size cap, deadline and buffer budget, constant-time compare, the handler called with the
//! received frames) on a current-thread tokio runtime. Both run for `--seconds` each, after a short warm-up.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    process::ExitCode,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, VerifySignatureLayer};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use sha2::Sha256;
use tower_layer::Layer as _;
use tower_service::Service;

use crate::cli::BenchArgs;

/// A fixed secret: the bench needs none of the user's.
const SECRET: &[u8] = b"hookgate-bench-secret";
/// The body sizes measured by default.
#[cfg(test)]
pub(crate) const DEFAULT_SIZES: [usize; 5] = [1 << 10, 4 << 10, 64 << 10, 1 << 20, 16 << 20];
/// The largest body measured: the gateway's default `--max-body-bytes`.
pub(crate) const MAX_SIZE: usize = 32 << 20;

/// `1 KiB`, `16 MiB`, or bytes when not a round number.
fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}
/// Frames the body arrives in, as from a socket.
const FRAME: usize = 16 << 10;

/// A request body handing out prepared frames.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|frame| Ok(Frame::data(frame))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|f| f.len() as u64).sum())
    }
}

/// The handler behind the layer: answers 200 without touching the body (joining the frames
/// into one buffer would be the handler's cost, not verification's).
#[derive(Clone, Copy, Debug)]
struct Handler;

impl Service<Request<VerifiedBody>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        std::hint::black_box(request);
        std::future::ready(Ok(Response::new(Full::default())))
    }
}

/// One size's result: nanoseconds per request.
#[derive(Clone, Copy, Debug)]
struct Row {
    size: usize,
    floor_ns: f64,
    hookgate_ns: f64,
}

impl Row {
    fn mb_per_s(&self, ns: f64) -> f64 {
        self.size as f64 / ns * 1e3
    }

    fn overhead_ns(&self) -> f64 {
        self.hookgate_ns - self.floor_ns
    }

    fn overhead_percent(&self) -> f64 {
        self.overhead_ns() / self.floor_ns * 100.0
    }
}

/// Runs `once` repeatedly for about `seconds` (after a warm-up of a tenth of it) and returns
/// nanoseconds per call. Calls are timed in batches that grow while they are short, so the
/// clock is read rarely for small bodies and a 16 MiB body is not called more than needed.
fn measure(budget: Duration, mut once: impl FnMut()) -> f64 {
    let warm_up = Instant::now();
    loop {
        once();
        if warm_up.elapsed() >= budget / 10 {
            break;
        }
    }
    let started = Instant::now();
    let mut calls = 0_u64;
    let mut batch = 1_u64;
    loop {
        let batch_started = Instant::now();
        for _ in 0..batch {
            once();
        }
        calls += batch;
        if started.elapsed() >= budget {
            break;
        }
        if batch_started.elapsed() < budget / 100 {
            batch *= 2;
        }
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn bench_size(
    runtime: &tokio::runtime::Runtime,
    scheme: &ElevenLabs,
    size: usize,
    seconds: Duration,
) -> Result<Row, String> {
    let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?
        .as_secs();
    let t_text = t.to_string();
    let header = HeaderValue::from_str(&scheme.sign(t, &body)).map_err(|e| e.to_string())?;
    let frames: VecDeque<Bytes> = (0..size)
        .step_by(FRAME)
        .map(|start| body.slice(start..(start + FRAME).min(size)))
        .collect();

    let floor_ns = measure(seconds, || {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("HMAC takes any key");
        mac.update(t_text.as_bytes());
        mac.update(b".");
        mac.update(std::hint::black_box(&body));
        std::hint::black_box(mac.finalize().into_bytes());
    });

    let mut service = VerifySignatureLayer::new(scheme.clone())
        .max_body_size(MAX_SIZE)
        .buffer_budget(64 << 20)
        .layer(Handler);
    let mut failure = None;
    let hookgate_ns = measure(seconds, || {
        let mut request = Request::new(Frames(frames.clone()));
        *request.method_mut() = http::Method::POST;
        request
            .headers_mut()
            .insert(ElevenLabs::HEADER, header.clone());
        let response = runtime.block_on(async {
            std::future::poll_fn(|cx| Service::<Request<Frames>>::poll_ready(&mut service, cx))
                .await?;
            service.call(request).await
        });
        match response {
            Ok(response) if response.status() == StatusCode::OK => {}
            Ok(response) => failure = Some(format!("answered {}", response.status())),
            Err(never) => match never {},
        }
    });
    if let Some(failure) = failure {
        return Err(format!("verification failed during the bench: {failure}"));
    }
    Ok(Row {
        size,
        floor_ns,
        hookgate_ns,
    })
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let scheme = ElevenLabs::new(SECRET).map_err(|e| e.to_string())?;
    println!(
        "hookgate {}: ElevenLabs signature verification, {} per measurement{}",
        env!("CARGO_PKG_VERSION"),
        crate::units::human(args.seconds),
        if DEBUG_BUILD {
            " (DEBUG BUILD: these figures say nothing about a release build)"
        } else {
            ""
        }
    );
    if let Some(cpu) = cpu_model() {
        println!("cpu: {cpu}");
    }
    println!("floor: one HMAC-SHA256 over \"t.body\" (key, feed, finalise)");
    println!(
        "hookgate: one request through VerifySignatureLayer, body in 16 KiB frames, current-thread runtime"
    );
    println!("MB/s are 10^6 body bytes per second, on one core");
    println!();
    println!(
        "{:>10} {:>14} {:>14} {:>12} {:>16}",
        "body", "floor MB/s", "hookgate MB/s", "overhead %", "overhead ns/req"
    );
    for &size in &args.sizes {
        let row = bench_size(&runtime, &scheme, size, args.seconds)?;
        println!(
            "{:>10} {:>14.1} {:>14.1} {:>11.1}% {:>16.0}",
            label(size),
            row.mb_per_s(row.floor_ns),
            row.mb_per_s(row.hookgate_ns),
            row.overhead_percent(),
            row.overhead_ns()
        );
    }
    Ok(())
}

/// The processor's name, where the system says (Linux).
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, name)| name.trim().to_owned())
}

/// Whether this binary was built without optimizations (`cargo build`, `cargo run` without
/// `--release`).
const DEBUG_BUILD: bool = cfg!(debug_assertions);

/// What a debug build's bench says on stderr, before and after its figures.
fn debug_build_warning(allowed: bool) -> String {
    let rule = "!".repeat(78);
    let what = if allowed {
        "measuring anyway (--allow-debug): the figures below are MEANINGLESS"
    } else {
        "refusing to measure: the figures would be MEANINGLESS"
    };
    format!(
        "{rule}\n\
         !! hookgate bench: this is a DEBUG build (no optimizations), {what}:\n\
         !! verification in a debug build runs many times slower than in a release build.\n\
         !! Build a release binary and run it:\n\
         !!     cargo run --release --features cli -- bench\n\
         !!     (or cargo build --release --features cli && target/release/hookgate bench)\n\
         {}{rule}",
        if allowed {
            ""
        } else {
            "!! To measure this debug build anyway: hookgate bench --allow-debug\n"
        }
    )
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    if DEBUG_BUILD {
        eprintln!("{}", debug_build_warning(args.allow_debug));
        if !args.allow_debug {
            return ExitCode::from(2);
        }
    }
    let allowed_debug = DEBUG_BUILD && args.allow_debug;
    // `main` runs every command inside a multi-threaded runtime; the bench needs its own
    // current-thread runtime, which cannot be started on a runtime thread.
    let result = std::thread::spawn(move || bench(&args))
        .join()
        .unwrap_or_else(|_| Err("the bench panicked".into()));
    if allowed_debug {
        eprintln!("{}", debug_build_warning(true));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookgate bench: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_readable_labels() {
        let labels: Vec<String> = DEFAULT_SIZES.into_iter().map(label).collect();
        assert_eq!(labels, ["1 KiB", "4 KiB", "64 KiB", "1 MiB", "16 MiB"]);
        assert_eq!(label(1000), "1000 B");
        assert_eq!(label(1536), "1536 B");
    }

    #[test]
    fn measure_counts_calls() {
        let mut calls = 0_u64;
        let ns = measure(Duration::from_millis(10), || {
            calls += 1;
            std::thread::sleep(Duration::from_micros(100));
        });
        assert!(calls >= 2, "{calls}");
        assert!(ns >= 100_000.0, "{ns}");
    }

    #[test]
    fn the_debug_warning_says_how_to_build_release() {
        let refused = debug_build_warning(false);
        assert!(refused.contains("DEBUG build"), "{refused}");
        assert!(refused.contains("cargo run --release --features cli -- bench"));
        assert!(refused.contains("--allow-debug"));
        let allowed = debug_build_warning(true);
        assert!(allowed.contains("MEANINGLESS"), "{allowed}");
    }

    #[test]
    fn rows_compute_throughput_and_overhead() {
        let row = Row {
            size: 1_000_000,
            floor_ns: 2_000_000.0,
            hookgate_ns: 2_100_000.0,
        };
        assert!((row.mb_per_s(row.floor_ns) - 500.0).abs() < 1e-9);
        assert!((row.overhead_ns() - 100_000.0).abs() < 1e-9);
        assert!((row.overhead_percent() - 5.0).abs() < 1e-9);
    }
}
