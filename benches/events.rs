#![allow(missing_docs)] // criterion_group! generates undocumented items
//! What typed events cost: parsing an hour-long transcript (5 MiB: 10k words, as many
//! spacings, 65k characters, every one with its timing) into `Event` against
//! `serde_json::Value` on the same bytes, against the floor of scanning the JSON without
//! building anything, and with its strings copied (what borrowing saves); verification plus
//! the typed parse, per MiB, to compare with the official Python SDK's `construct_event`
//! (which verifies, then `json.loads`); and a 16 MiB `post_call_audio` parsed and decoded.
//!
//! ```text
//! cargo bench --bench events --features elevenlabs,signature
//! ```
//!
//! On a shared machine, `HOOKGATE_BENCH_CLOCK=cpu` times each sample by the CPU time the bench's
//! thread ran (Linux, `/proc/thread-self/schedstat`) rather than the wall clock, so other
//! processes' load does not count (their cache pressure still does).

#[path = "../tests/support/elevenlabs_fixtures.rs"]
mod fixtures;

use std::{
    hint::black_box,
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{
    criterion_group, criterion_main, measurement::WallTime, Bencher, BenchmarkId, Criterion,
    Throughput,
};
use hookgate::{
    elevenlabs::Event,
    scheme::{ElevenLabs, Scheme},
};
use http::{HeaderMap, HeaderValue};
use serde::de::IgnoredAny;
use serde_json::Value;

const SECRET: &str = "bench-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Nanoseconds this thread has run on a CPU (the first field of its `schedstat`).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("HOOKGATE_BENCH_CLOCK=cpu needs /proc/thread-self/schedstat");
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// Times `routine` by the wall clock, or by this thread's CPU time with
/// `HOOKGATE_BENCH_CLOCK=cpu`.
fn run<O>(b: &mut Bencher<'_, WallTime>, mut routine: impl FnMut() -> O) {
    if std::env::var("HOOKGATE_BENCH_CLOCK").as_deref() == Ok("cpu") {
        b.iter_custom(|iters| {
            let start = thread_cpu_ns();
            for _ in 0..iters {
                black_box(routine());
            }
            Duration::from_nanos(thread_cpu_ns() - start)
        });
    } else {
        b.iter(routine);
    }
}

fn parse(c: &mut Criterion) {
    let body = fixtures::hour_transcript(7).body;
    let mut group = c.benchmark_group("parse_hour_transcript");
    group
        .throughput(Throughput::Bytes(body.len() as u64))
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));

    group.bench_function("typed_event", |b| {
        run(b, || Event::from_slice(black_box(&body)).unwrap())
    });
    group.bench_function("serde_json_value", |b| {
        run(b, || {
            serde_json::from_slice::<Value>(black_box(&body)).unwrap()
        })
    });
    // The floor: serde_json checking the JSON and skipping every value, building nothing.
    group.bench_function("scan_only", |b| {
        run(b, || {
            serde_json::from_slice::<IgnoredAny>(black_box(&body)).unwrap()
        })
    });
    // What borrowing saves: the same parse, then every string copied.
    group.bench_function("typed_event_into_owned", |b| {
        run(b, || {
            Event::from_slice(black_box(&body)).unwrap().into_owned()
        })
    });
    group.finish();
}

fn verify_and_parse(c: &mut Criterion) {
    let body = fixtures::hour_transcript(7).body;
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let mut headers = HeaderMap::new();
    // Fresh for the whole run: 30 minutes of tolerance.
    headers.insert(
        "elevenlabs-signature",
        HeaderValue::from_str(&scheme.sign(now(), &body)).unwrap(),
    );
    let mut group = c.benchmark_group("verify_hour_transcript");
    group
        .throughput(Throughput::Bytes(body.len() as u64))
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));

    group.bench_function("verify", |b| {
        run(b, || {
            scheme
                .verify(&headers, black_box(&body), SystemTime::now())
                .unwrap()
        })
    });
    group.bench_function("verify_then_typed_event", |b| {
        run(b, || {
            scheme
                .verify(&headers, black_box(&body), SystemTime::now())
                .unwrap();
            Event::from_slice(&body).unwrap()
        })
    });
    group.finish();
}

fn audio(c: &mut Criterion) {
    let (body, audio) = fixtures::post_call_audio(3, 12 << 20);
    let mut group = c.benchmark_group("post_call_audio_16MiB");
    group
        .throughput(Throughput::Bytes(body.len() as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));

    group.bench_function(BenchmarkId::new("typed_event", "borrowed"), |b| {
        run(b, || Event::from_slice(black_box(&body)).unwrap())
    });
    group.bench_function(BenchmarkId::new("serde_json_value", "copied"), |b| {
        run(b, || {
            serde_json::from_slice::<Value>(black_box(&body)).unwrap()
        })
    });
    let event = Event::from_slice(&body).unwrap();
    let Event::PostCallAudio(envelope) = &event else {
        unreachable!()
    };
    let mp3 = envelope.data.full_audio.as_ref().unwrap();
    group.bench_function(BenchmarkId::new("decode_to", "sink"), |b| {
        run(b, || {
            let written = mp3.decode_to(io::sink()).unwrap();
            assert_eq!(written, audio.len() as u64);
        })
    });
    group.bench_function(BenchmarkId::new("decode", "vec"), |b| {
        run(b, || mp3.decode().unwrap())
    });
    group.finish();
}

/// With `HOOKGATE_FIXTURE_DIR` set, writes the generated bodies there first, to measure other
/// parsers on the same bytes (the official Python SDK's `construct_event`, for one):
///
/// ```text
/// HOOKGATE_FIXTURE_DIR=/tmp/fixtures cargo bench --bench events --features elevenlabs,signature
/// ```
fn write_fixtures(_: &mut Criterion) {
    let Some(dir) = std::env::var_os("HOOKGATE_FIXTURE_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hour = fixtures::hour_transcript(7);
    std::fs::write(dir.join("hour_transcript.json"), &hour.body).unwrap();
    let multi = fixtures::multichannel_transcript(11, 3, 600.0);
    std::fs::write(dir.join("multichannel_transcript.json"), &multi.body).unwrap();
    let (audio, _) = fixtures::post_call_audio(3, 12 << 20);
    std::fs::write(dir.join("post_call_audio.json"), &audio).unwrap();
}

criterion_group!(benches, write_fixtures, parse, verify_and_parse, audio);
criterion_main!(benches);
