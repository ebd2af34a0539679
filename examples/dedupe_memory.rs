//! Memory held by the in-memory dedupe store for one million done marks: ElevenLabs request
//! ids (36-byte UUIDs) and conversation keys (`<conversation_id>.post_call_transcription`,
//! 55 bytes).
//!
//! Run: `cargo run --release --example dedupe_memory --features dedupe`
//!
//! Each kind of key runs in a fresh child process, which reports how much its resident set
//! (`VmRSS` in `/proc/self/status`, Linux) grew while the store took the million keys.

use std::{process::Command, time::Duration};

use hookgate::dedupe::{Check, DedupeStore, EventKey, LeaseToken, MemoryDedupeStore};

const KEYS: u64 = 1_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn key(kind: &str, n: u64) -> String {
    match kind {
        "request_id" => format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n.wrapping_mul(0x9e37_79b9) as u32,
            n % 0xffff,
            n % 0xfff,
            (n >> 12) % 0xfff,
            n.wrapping_mul(0x2545_f491_4f6c_dd1d) & 0xffff_ffff_ffff
        ),
        _ => format!(
            "conv_{:026}.post_call_transcription",
            n.wrapping_mul(0x2545_f491_4f6c_dd1d) % 10_u64.pow(19)
        ),
    }
}

/// Claims and completes a million distinct keys of `kind`, and reports.
fn measure(kind: &str) {
    let sample = key(kind, 1);
    let before = rss_kib();
    let store = MemoryDedupeStore::new();
    for n in 0..KEYS {
        let key = EventKey::new(key(kind, n));
        let token = LeaseToken::random();
        let claimed = store.claim(&key, token, Duration::from_secs(60));
        let completed = store.complete(&key, token, Duration::from_secs(24 * 3600));
        assert!(matches!(claimed, Check::Ready(Ok(_))) && matches!(completed, Check::Ready(Ok(_))));
    }
    let grown = rss_kib().saturating_sub(before);
    println!(
        "{} done marks of {kind} keys ({} bytes, e.g. {sample}): RSS +{:.1} MiB ({:.0} bytes per key)",
        store.len(),
        sample.len(),
        grown as f64 / 1024.0,
        (grown * 1024) as f64 / store.len().max(1) as f64,
    );
}

fn main() {
    if let Some(kind) = std::env::args().nth(1) {
        measure(&kind);
        return;
    }
    let exe = std::env::current_exe().expect("path of this example");
    for kind in ["request_id", "conversation"] {
        let status = Command::new(&exe)
            .arg(kind)
            .status()
            .expect("run the measurement");
        assert!(status.success());
    }
}
