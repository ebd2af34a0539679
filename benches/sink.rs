//! The durable sink alone: events per second at concurrency 1 and at concurrency 64, in one run,
//! and their ratio (how well the group commit scales).
//!
//! Run with `cargo bench --bench sink --features gateway`. Every event is 4 KiB of JSON with an
//! id of its own, sent through the [`Sink`] tower service (no HTTP, no signature check), in a
//! fresh directory under `target/` (the filesystem the repository is on). Environment:
//! `SINK_BENCH_COUNT` events per concurrency (default 3000), `SINK_BENCH_LEVELS` the
//! concurrencies (default `1,64`), `SINK_BENCH_DIR` the parent directory (default `target/`),
//! `SINK_BENCH_SYNC_COST=1` also times the bare syncs (one at a time) of this disk: a
//! `fdatasync` of a new 4 KiB file and a directory `fsync` after a link. `SINK_BENCH_KEEP=1`
//! leaves the files in place: on ext4 without a journal, creating a file skips, one by one,
//! every inode of its block group deleted in the last minutes, so removing a run's thousands
//! of files slows the creates of the runs that follow for up to six minutes (the first line
//! printed, what creating an empty file costs here, shows it; so does a build's churn in
//! `target/`).
//!
//! Concurrency 1 is bound by the latency of one sync (the journal's `fdatasync`, as costly as the
//! bare `fdatasync` of a new file), which varies with whatever else the disk serves; concurrency
//! 64 by the CPU spent on each event once a batch shares its sync: the kernel's file create,
//! lookup and link, the key read, the journal's copy and checksum, and the write-back of the
//! checkpoint (`syncfs`): the `cpu` column (this process's threads, per event) tells which;
//! `machine` is the whole machine's busy time per event (the kernel's write-back threads
//! included: compare it only on an otherwise idle machine). A run ends once every event is
//! answered **and** the sink, closed, has checkpointed its journal, so the write-back a store
//! defers to the checkpoint counts in its time. Compare builds by alternating their runs and
//! repeating them, with `SINK_BENCH_KEEP=1` (and removing `target/sink-bench-*` afterwards).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hookgate::{gateway::Sink, signature::VerifiedBody};
use http::{Request, StatusCode};
use tower::{Service, ServiceExt};

/// Every event's size.
const EVENT_LEN: usize = 4096;

/// A 4 KiB transcription event whose `request_id` names it.
fn event(id: &str) -> Vec<u8> {
    let head =
        format!(r#"{{"type":"post_call_transcription","data":{{"request_id":"{id}","pad":""#);
    let tail = r#""}}"#;
    let mut body = head.into_bytes();
    body.resize(EVENT_LEN - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Stores `count` events through a fresh sink in `dir` with `concurrency` requests in flight;
/// returns the time taken and the latencies seen.
async fn run(dir: &Path, count: usize, concurrency: usize, tag: &str) -> (Duration, Vec<Duration>) {
    let sink = Sink::open(dir).expect("sink directory");
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..count)
            .map(|i| bytes::Bytes::from(event(&format!("bench-{tag}-{i:08}"))))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut sink = sink.clone();
            let bodies = bodies.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let request = Request::new(VerifiedBody::from_bytes(body.clone()));
                    let sent = Instant::now();
                    let response = sink.ready().await.unwrap().call(request).await.unwrap();
                    latencies.push(sent.elapsed());
                    assert_eq!(response.status(), StatusCode::OK, "event {i} not stored");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    // Every event answered; then the sink closed, and its journal checkpointed (the names
    // written back by `syncfs`): the work a store defers counts in the run's time too.
    drop(sink);
    let journal = dir.join(".journal");
    let checkpointed = || {
        fs::read_dir(&journal).map_or(true, |entries| {
            !entries
                .filter_map(Result::ok)
                .any(|entry| entry.path().extension().is_some_and(|e| e == "seg"))
        })
    };
    while !checkpointed() {
        assert!(started.elapsed() < Duration::from_secs(120), "checkpointed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    latencies.sort();
    (took, latencies)
}

/// The whole machine's busy time so far (every CPU, user and system, interrupts included:
/// the kernel's write-back threads too), from `/proc/stat` (Linux; in clock ticks of 10 ms).
fn machine_busy() -> Duration {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    // The first line: "cpu" then user nice system idle iowait irq softirq steal ...; all but
    // idle and iowait are busy.
    let busy: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4))
        .filter_map(|(_, field)| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(busy * 10)
}

/// The CPU time this process has used so far (all threads, user and system), from
/// `/proc/self/stat` (Linux; in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The bare syncs, one at a time: `fdatasync` of a new 4 KiB file, then the directory `fsync`
/// after linking it.
fn sync_cost(dir: &Path, rounds: usize) {
    fs::create_dir_all(dir).unwrap();
    let (mut data, mut directory) = (Duration::ZERO, Duration::ZERO);
    let directory_handle = fs::File::open(dir).unwrap();
    for i in 0..rounds {
        let temp = dir.join(format!(".tmp-cost-{i}"));
        let mut file = fs::File::create(&temp).unwrap();
        file.write_all(&[b'x'; EVENT_LEN]).unwrap();
        let started = Instant::now();
        file.sync_data().unwrap();
        data += started.elapsed();
        fs::hard_link(&temp, dir.join(format!("cost-{i}.json"))).unwrap();
        fs::remove_file(&temp).unwrap();
        let started = Instant::now();
        directory_handle.sync_all().unwrap();
        directory += started.elapsed();
    }
    let each = |total: Duration| total.as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "bare syncs ({rounds} rounds): fdatasync of a new 4 KiB file {:.0} us, directory fsync after a link {:.0} us",
        each(data),
        each(directory)
    );
}

/// What creating one empty file costs in `dir`. On ext4 without a journal, allocating an inode
/// skips every inode of its block group deleted in the last minute (or more) one by one:
/// right after a build or an earlier run removed many files near `dir`, this alone can bound
/// the rate at concurrency 64. Nothing is deleted before the run ends, for that reason.
fn create_cost(dir: &Path, files: usize) -> Duration {
    fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    for i in 0..files {
        fs::File::create(dir.join(format!("empty-{i}"))).unwrap();
    }
    started.elapsed() / files as u32
}

fn main() {
    // `cargo bench` passes `--bench`; this program takes no arguments of its own.
    let count: usize = env_or("SINK_BENCH_COUNT", 3000);
    let levels: Vec<usize> = std::env::var("SINK_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,64".into())
        .split(',')
        .map(|level| level.trim().parse().expect("SINK_BENCH_LEVELS: numbers"))
        .collect();
    let parent = std::env::var_os("SINK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let base = parent.join(format!("sink-bench-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "creating an empty file in {}: {:.0} us",
        base.display(),
        create_cost(&base.join("create-cost"), 200).as_secs_f64() * 1e6
    );
    if std::env::var_os("SINK_BENCH_SYNC_COST").is_some() {
        sync_cost(&base.join("cost"), 200);
    }
    let mut rates = Vec::new();
    for &concurrency in &levels {
        let dir = base.join(format!("c{concurrency}"));
        let (cpu, busy) = (cpu_time(), machine_busy());
        let (took, latencies) =
            runtime.block_on(run(&dir, count, concurrency, &format!("c{concurrency}")));
        let (cpu, busy) = (cpu_time() - cpu, machine_busy() - busy);
        let rate = count as f64 / took.as_secs_f64();
        let per_event = |time: Duration| time.as_secs_f64() * 1e6 / count as f64;
        println!(
            "sink c{concurrency:<3} {count} events of {EVENT_LEN} B in {:>6.3} s: {rate:>8.0} events/s, cpu {:>4.0} us/event (machine {:>4.0}), latency p50 {:.2} ms, p99 {:.2} ms",
            took.as_secs_f64(),
            per_event(cpu),
            per_event(busy),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
        // The sink's own entries (its journal, temp files) are hidden.
        let events = fs::read_dir(&dir)
            .unwrap()
            .filter(|entry| {
                !entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(events, count, "one file per event");
        rates.push((concurrency, rate));
    }
    if let (Some(&(low, first)), Some(&(high, last))) = (rates.first(), rates.last()) {
        if low != high {
            println!("ratio c{high}/c{low}: {:.1}x", last / first);
        }
    }
    if std::env::var_os("SINK_BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&base);
    }
}
