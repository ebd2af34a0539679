//! Deduplication costs: what `DeduplicateLayer` adds to a delivery with the in-memory store
//! (a claim and a completion, or a duplicate's answer) over the bare handler, and the key
//! extraction alone for ElevenLabs bodies of 4 KiB and 1 MiB, and the store alone.
//!
//! Run: `cargo bench --bench dedupe --features dedupe`

use std::{convert::Infallible, future::ready, hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::{
    dedupe::{DedupeKey, DedupeStore, DeduplicateLayer, EventKey, LeaseToken, MemoryDedupeStore},
    signature::VerifiedBody,
    Verified,
};
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, Service};

const SMALL: &str = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_8f2c1d","transcription":{"text":"Hi"}}}"#;

/// A verified delivery of `body`, as the verification layer hands it on.
fn delivery(body: &Bytes) -> Request<VerifiedBody> {
    let mut request = Request::new(VerifiedBody::from_bytes(body.clone()));
    request
        .extensions_mut()
        .insert(Verified::new(1_739_537_297, 0, [0x5a; 32]));
    request
}

/// A speech-to-text result of about `len` bytes: a words array, and the request id before it
/// (`request_id_first`, as ElevenLabs sends it) or after it (which costs a scan of the words).
fn transcript(len: usize, request_id_first: bool) -> Bytes {
    let mut words = String::new();
    let mut i = 0;
    while words.len() + 200 < len {
        if i > 0 {
            words.push(',');
        }
        words.push_str(&format!(
            r#"{{"text":"word{i}","start":{}.{},"end":{}.{},"type":"word","speaker_id":"speaker_0","logprob":-0.0{}}}"#,
            i / 10,
            i % 10,
            i / 10,
            i % 10 + 1,
            i % 7
        ));
        i += 1;
    }
    let transcription = format!(r#""transcription":{{"language_code":"en","words":[{words}]}}"#);
    let request_id = r#""request_id":"req_8f2c1d""#;
    let data = if request_id_first {
        format!("{request_id},{transcription}")
    } else {
        format!("{transcription},{request_id}")
    };
    Bytes::from(format!(
        r#"{{"type":"speech_to_text_transcription","event_timestamp":1739537297,"data":{{{data}}}}}"#
    ))
}

/// A post-call audio event of about `len` bytes: one long base64 string.
fn audio(len: usize) -> Bytes {
    let base64: String = "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4Ljc2LjEwMAAA"
        .chars()
        .cycle()
        .take(len.saturating_sub(150))
        .collect();
    Bytes::from(format!(
        r#"{{"type":"post_call_audio","event_timestamp":1739537297,"data":{{"agent_id":"agent_01","conversation_id":"conv_01jx","full_audio":"{base64}"}}}}"#
    ))
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Elements(1));
    let handler = || {
        service_fn(|_request: Request<VerifiedBody>| {
            ready(Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())))
        })
    };
    let body = Bytes::from_static(SMALL.as_bytes());

    let mut bare = handler();
    group.bench_function("bare_handler", |b| {
        b.to_async(&rt).iter(|| bare.call(delivery(&body)))
    });

    // Done marks that expire at once: every delivery claims the key and completes it, in the
    // map's one entry (no growth), as a stream of new events would minus the map insert.
    let once = || {
        DeduplicateLayer::new(DedupeKey::signature())
            .keep_done(Duration::from_nanos(1))
            .unwrap()
    };
    let mut signature = once().layer(handler());
    group.bench_function("claim_complete/signature_key", |b| {
        b.to_async(&rt).iter(|| signature.call(delivery(&body)))
    });

    let mut elevenlabs = DeduplicateLayer::new(DedupeKey::elevenlabs())
        .keep_done(Duration::from_nanos(1))
        .unwrap()
        .layer(handler());
    group.bench_function("claim_complete/elevenlabs_key_100B_body", |b| {
        b.to_async(&rt).iter(|| elevenlabs.call(delivery(&body)))
    });

    // New keys all the time: 100 000 distinct events in turn, each claimed (inserted, or its
    // expired entry taken over) and completed.
    let bodies: Vec<Bytes> = (0..100_000)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"type":"speech_to_text_transcription","data":{{"request_id":"req_{i:08}"}}}}"#
            ))
        })
        .collect();
    let mut fresh = DeduplicateLayer::new(DedupeKey::elevenlabs())
        .keep_done(Duration::from_nanos(1))
        .unwrap()
        .layer(handler());
    let mut i = 0;
    group.bench_function("claim_complete/elevenlabs_key_100k_distinct_events", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % bodies.len();
            fresh.call(delivery(&bodies[i]))
        })
    });

    // Duplicates: the key is done; answered 200 with a JSON body, without the handler.
    let mut duplicates = DeduplicateLayer::new(DedupeKey::elevenlabs()).layer(handler());
    rt.block_on(duplicates.call(delivery(&body))).unwrap();
    group.bench_function("duplicate_answered", |b| {
        b.to_async(&rt).iter(|| duplicates.call(delivery(&body)))
    });
    group.finish();
}

/// The memory store alone, and what it is made of.
fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _runtime = rt.enter(); // tokio's clock, as inside a server
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let store = MemoryDedupeStore::new();
    let key = EventKey::new("req_8f2c1d");
    let (lease, keep) = (Duration::from_secs(60), Duration::from_nanos(1));
    group.bench_function("memory/claim_complete", |b| {
        b.iter(|| {
            let token = LeaseToken::random();
            black_box(store.claim(&key, token, lease));
            black_box(store.complete(&key, token, keep))
        })
    });
    group.bench_function("baseline/tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    let verified = Verified::new(1_739_537_297, 0, [0x5a; 32]);
    let signature = DedupeKey::signature();
    group.bench_function("baseline/signature_key", |b| {
        b.iter(|| black_box(signature.event_key(&verified, b"")))
    });
    group.finish();
}

fn key_extraction(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    let verified = Verified::new(1_739_537_297, 0, [0x5a; 32]);
    let elevenlabs = DedupeKey::elevenlabs();
    let pointers = DedupeKey::json_pointer("/data/request_id")
        .or(DedupeKey::joined_pointers([
            "/data/conversation_id",
            "/type",
        ]))
        .or_signature();
    for (name, body) in [
        ("transcript_4KiB", transcript(4 << 10, true)),
        ("transcript_1MiB", transcript(1 << 20, true)),
        ("transcript_id_last_4KiB", transcript(4 << 10, false)),
        ("transcript_id_last_1MiB", transcript(1 << 20, false)),
        ("audio_4KiB", audio(4 << 10)),
        ("audio_1MiB", audio(1 << 20)),
    ] {
        let key = elevenlabs.event_key(&verified, &body).unwrap();
        assert!(!key.as_str().starts_with("sig-"), "{name}: {key}");
        assert_eq!(pointers.event_key(&verified, &body), Some(key));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("elevenlabs", name), &body, |b, body| {
            b.iter(|| black_box(elevenlabs.event_key(&verified, black_box(body))))
        });
        // For comparison: the same fields through generic pointers (a serde_json::Value).
        group.bench_with_input(BenchmarkId::new("json_pointers", name), &body, |b, body| {
            b.iter(|| black_box(pointers.event_key(&verified, black_box(body))))
        });
    }
    group.finish();
}

/// The criterion group (the macro writes an undocumented function).
#[allow(missing_docs)]
mod group {
    use super::{key_extraction, layer, store};
    criterion::criterion_group!(benches, layer, store, key_extraction);
}
criterion_main!(group::benches);
