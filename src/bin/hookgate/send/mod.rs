//! `hookgate send`: plays ElevenLabs against a receiver.
//!
//! Each event is signed with the current time and POSTed; a retryable answer (5xx, 408, 429,
//! no answer) is tried again on the ElevenLabs schedule, re-signed at each attempt with the same
//! bytes, and a permanent refusal ends the event at once. With `--count N` it becomes a load
//! generator: `--concurrency` workers, each with its own keep-alive connection, spread over
//! `--threads` current-thread runtimes, a progress bar on stderr (when it is a terminal) and a
//! summary on stdout: throughput, latency percentiles (every latency kept, 16 bytes each, and
//! sorted at the end) and answers by status and problem code.
//!
//! The per-event path is short: the sample body is pre-serialised with holes for its timestamp
//! and id, so an event is three copies, one HMAC and one `writev`.

mod activity;
mod client;
mod sample;
mod schedule;
mod stats;

use std::{
    io::IsTerminal as _,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hookgate::scheme::ElevenLabs;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Notify;

use self::{
    activity::Activity,
    client::{Connection, Target},
    sample::{EventIds, Sample},
    schedule::{jittered_wait_before, verdict, Verdict},
    stats::{human, AnswerKind, Stats},
};
use crate::{cli::SendArgs, secrets, units};

/// What every event of a run shares, worked out before the first request.
struct Plan {
    target: Arc<Target>,
    scheme: ElevenLabs,
    /// Where the signing secret came from (never its value).
    secret_source: String,
    development_secret: bool,
    bodies: Bodies,
    max_attempts: usize,
    time_scale: f64,
    timeout: Duration,
    stop: Stop,
}

/// Ctrl-C: no new event is started and retry waits end; answers in flight are still awaited.
#[derive(Debug, Default)]
struct Stop {
    requested: AtomicBool,
    notify: Notify,
}

impl Stop {
    fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Sleeps for `wait`; false when a stop cut it short.
    async fn sleep(&self, wait: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.requested() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = notified => false,
        }
    }
}

/// Where bodies come from.
enum Bodies {
    /// `--file`: the same bytes for every event.
    File(Bytes),
    /// The sample transcript, with a fresh id per event.
    Sample(Sample, EventIds),
}

impl Bodies {
    /// The `n`th event's body and its id (when known).
    fn event(&self, n: u64) -> (Bytes, Option<String>) {
        match self {
            Self::File(bytes) => (bytes.clone(), None),
            Self::Sample(sample, ids) => {
                let id = ids.id(n);
                (sample.build(unix_now(), &id), Some(id))
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Plan {
    fn new(args: &SendArgs) -> Result<Self, String> {
        let secrets = secrets::load_required(&args.secrets)?;
        let scheme = secrets.scheme()?;
        let bodies = match &args.file {
            Some(path) => Bodies::File(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                    .into(),
            ),
            None => Bodies::Sample(Sample::new(args.body_bytes)?, EventIds::new()),
        };
        let target = Target::new(&args.url, args.ca_cert.as_deref())?;
        Ok(Self {
            target: Arc::new(target),
            scheme,
            secret_source: secrets.source.to_string(),
            development_secret: secrets.is_development(),
            bodies,
            max_attempts: usize::from(args.max_attempts).min(schedule::MAX_ATTEMPTS),
            time_scale: args.time_scale,
            timeout: args.timeout,
            stop: Stop::default(),
        })
    }
}

/// What one attempt came to.
struct Attempt {
    kind: AnswerKind,
    verdict: Verdict,
    latency: Option<Duration>,
    /// The problem detail, or why there was no answer.
    detail: Option<String>,
}

/// Reads the whole answer; the problem+json `code` and `detail` of a failure.
async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
) -> Result<(StatusCode, Option<String>, Option<String>), String> {
    let status = response.status();
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    if !problem || status.is_success() {
        return Ok((status, None, None));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Ok((status, text("code"), text("detail")))
}

/// One attempt: sign `body` now, send it, read the answer, all within the timeout.
async fn attempt(plan: &Plan, connection: &mut Connection, body: &Bytes) -> Attempt {
    let signature = HeaderValue::from_str(&plan.scheme.sign(unix_now(), body))
        .expect("a signature header is visible ASCII");
    let request = connection.request(body.clone(), signature);
    let exchange = async {
        let (response, sent) = connection.send(request).await?;
        let answer = read_answer(response).await?;
        Ok::<_, String>((answer, sent.elapsed()))
    };
    match tokio::time::timeout(plan.timeout, exchange).await {
        Ok(Ok(((status, code, detail), latency))) => Attempt {
            kind: AnswerKind::Status(status.as_u16(), code),
            verdict: verdict(status),
            latency: Some(latency),
            detail,
        },
        Ok(Err(error)) => {
            connection.reset();
            no_answer(error)
        }
        Err(_) => {
            connection.reset();
            no_answer(format!("no answer within {}", units::human(plan.timeout)))
        }
    }
}

fn no_answer(error: String) -> Attempt {
    Attempt {
        kind: AnswerKind::NoAnswer,
        verdict: Verdict::Retry,
        latency: None,
        detail: Some(error),
    }
}

/// Delivers one event, retrying on the schedule. `report` hears of each attempt with the wait
/// before the next one (`None` when it was the last); `activity` (in load mode) of each retry
/// wait's start and end. True when delivered.
async fn deliver(
    plan: &Plan,
    connection: &mut Connection,
    body: &Bytes,
    stats: &mut Stats,
    activity: Option<&Activity>,
    mut report: impl FnMut(usize, &Attempt, Option<Duration>),
) -> bool {
    for number in 1..=plan.max_attempts {
        let outcome = attempt(plan, connection, body).await;
        stats.record(outcome.kind.clone(), outcome.latency);
        if outcome.kind == AnswerKind::NoAnswer && stats.first_error.is_none() {
            stats.first_error.clone_from(&outcome.detail);
        }
        let wait = (outcome.verdict == Verdict::Retry && number < plan.max_attempts)
            .then(|| jittered_wait_before(number + 1, plan.time_scale));
        report(number, &outcome, wait);
        match (outcome.verdict, wait) {
            (Verdict::Delivered, _) => {
                stats.delivered += 1;
                return true;
            }
            (Verdict::Retry, Some(wait)) => {
                if let Some(activity) = activity {
                    activity.wait_started(wait);
                }
                let started = Instant::now();
                let waited = plan.stop.sleep(wait).await;
                stats.retry_waits += 1;
                stats.retry_wait += started.elapsed();
                if let Some(activity) = activity {
                    activity.wait_ended();
                }
                if !waited {
                    stats.interrupted += 1;
                    return false;
                }
            }
            _ => break,
        }
    }
    stats.failed += 1;
    false
}

pub(crate) async fn run(args: SendArgs) -> ExitCode {
    let plan = match Plan::new(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("hookgate send: {error}");
            return ExitCode::from(2);
        }
    };
    let plan = Arc::new(plan);
    let on_ctrl_c = tokio::spawn({
        let plan = plan.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("hookgate send: stopping (Ctrl-C)");
                plan.stop.request();
            }
        }
    });
    let delivered = if args.count == 1 {
        send_one(&plan, &args.url).await
    } else {
        let threads = args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        );
        load(plan.clone(), args.count, args.concurrency, threads).await
    };
    on_ctrl_c.abort();
    if plan.stop.requested() {
        ExitCode::from(130)
    } else if delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One event, every attempt told on stdout.
async fn send_one(plan: &Plan, url: &str) -> bool {
    // A delivery in flight is not cut short by Ctrl-C, only the waits between attempts.
    let (body, id) = plan.bodies.event(0);
    let what = match &id {
        Some(id) => format!("event {id} ({} bytes)", body.len()),
        None => format!("{} bytes", body.len()),
    };
    println!(
        "sending {what} to {url}, signed with the {}",
        plan.secret_source
    );
    if plan.development_secret {
        println!(
            "(the development secret `hookgate serve` created: only that receiver accepts it)"
        );
    }
    let mut connection = Connection::new(plan.target.clone());
    let mut stats = Stats::default();
    let max = plan.max_attempts;
    let delivered = deliver(
        plan,
        &mut connection,
        &body,
        &mut stats,
        None,
        |n, attempt, wait| {
            let mut line = format!("attempt {n}/{max}: {}", attempt.kind);
            if let Some(latency) = attempt.latency {
                line.push_str(&format!(" in {}", human(latency)));
            }
            if let Some(detail) = &attempt.detail {
                line.push_str(&format!(": {detail}"));
            }
            match (attempt.verdict, wait) {
                (Verdict::Delivered, _) => line.push_str("; delivered"),
                (Verdict::Permanent, _) => line.push_str("; refused for good, not retried"),
                (Verdict::Retry, Some(wait)) => {
                    line.push_str(&format!("; next attempt in {}", units::human(wait)));
                }
                (Verdict::Retry, None) => line.push_str("; giving up"),
            }
            println!("{line}");
        },
    )
    .await;
    if stats.interrupted > 0 {
        println!("stopped before the next attempt: not delivered");
    }
    delivered
}

/// The progress bar's line: events handled, the rate over the time anything but retry waits
/// was going on, and how many deliveries are waiting for a retry.
const PROGRESS_TEMPLATE: &str =
    "{bar:40} {pos}/{len} events  {active_rate} (retry waits excluded)  {elapsed}  {msg}";

/// `count` events over `concurrency` workers spread over `threads` OS threads, each running a
/// current-thread runtime (a worker's connection task then wakes it without crossing threads);
/// a progress bar, then the summary.
async fn load(plan: Arc<Plan>, count: u64, concurrency: u16, threads: usize) -> bool {
    let workers = usize::from(concurrency).min(usize::try_from(count).unwrap_or(usize::MAX));
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let activity = Arc::new(Activity::new(workers, progress.clone()));
    let rate = activity.clone();
    if let Ok(style) = ProgressStyle::with_template(PROGRESS_TEMPLATE) {
        progress.set_style(style.with_key(
            "active_rate",
            move |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&rate.rate_text(state.pos(), state.elapsed()));
            },
        ));
    }
    // Redrawn while every delivery waits for a retry too, when nothing else would update it.
    if !progress.is_hidden() {
        progress.enable_steady_tick(Duration::from_millis(250));
    }
    let threads = threads.clamp(1, workers);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (plan, next, activity) = (plan.clone(), next.clone(), activity.clone());
            let mine = (thread..workers).step_by(threads).count();
            std::thread::spawn(move || load_thread(&plan, &next, &activity, count, mine))
        })
        .collect();
    let results = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a load thread panicked".into()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|error| vec![Err(error.to_string())]);
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let mut total = Stats::default();
    for result in results {
        match result {
            Ok(stats) => total.merge(stats),
            Err(error) => eprintln!("hookgate send: {error}"),
        }
    }
    let all_delivered = total.delivered == count;
    let (handled, interrupted) = (
        total.delivered + total.failed + total.interrupted,
        total.interrupted,
    );
    print!(
        "{}",
        total.summary(elapsed, concurrency, activity.only_waiting())
    );
    if plan.stop.requested() {
        println!(
            "stopped by Ctrl-C: {handled} of {count} events handled, {interrupted} cut short in a retry wait"
        );
    }
    all_delivered
}

/// One load thread: `workers` workers taking event numbers from `next` until `count`.
fn load_thread(
    plan: &Arc<Plan>,
    next: &Arc<AtomicU64>,
    activity: &Arc<Activity>,
    count: u64,
    workers: usize,
) -> Result<Stats, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (plan, next, activity) = (plan.clone(), next.clone(), activity.clone());
                tokio::spawn(async move {
                    let mut connection = Connection::new(plan.target.clone());
                    let mut stats = Stats::default();
                    loop {
                        if plan.stop.requested() {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            break;
                        }
                        let (body, _) = plan.bodies.event(n);
                        deliver(
                            &plan,
                            &mut connection,
                            &body,
                            &mut stats,
                            Some(&activity),
                            |_, _, _| {},
                        )
                        .await;
                        activity.progress.inc(1);
                    }
                    activity.worker_done();
                    stats
                })
            })
            .collect();
        let mut stats = Stats::default();
        for task in tasks {
            stats.merge(task.await.map_err(|e| format!("a worker failed: {e}"))?);
        }
        Ok(stats)
    })
}
