//! Memory held by the in-memory rate-limit store after one million distinct client addresses
//! (a spoofed flood), with the default cap and with a cap above a million.
//!
//! Run: `cargo run --release --example rate_limit_memory --features rate-limit`
//!
//! Each configuration runs in a fresh child process, which reports how much its resident set
//! (`VmRSS` in `/proc/self/status`, Linux) grew while the store took the million keys.

use std::{
    net::{IpAddr, Ipv4Addr},
    num::{NonZeroU32, NonZeroUsize},
    process::Command,
};

use hookgate::rate_limit::{MemoryStore, Rate};

const KEYS: u32 = 1_000_000;

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

/// Feeds a million distinct keys to a store with `max_keys` (or the default) and reports.
fn measure(max_keys: Option<usize>) {
    let rate = Rate::per_minute(NonZeroU32::new(60).unwrap());
    let before = rss_kib();
    let mut store = MemoryStore::<IpAddr>::new(rate);
    if let Some(max_keys) = max_keys.and_then(NonZeroUsize::new) {
        store = store.max_keys(max_keys);
    }
    let mut overflowed = 0_u32;
    for n in 0..KEYS {
        overflowed += u32::from(store.decide(&IpAddr::V4(Ipv4Addr::from(n))).is_overflow());
    }
    let grown = rss_kib().saturating_sub(before);
    println!(
        "{KEYS} distinct keys, max_keys {}: {} keys tracked, {overflowed} decisions on the overflow bucket, RSS +{:.1} MiB ({:.0} bytes per tracked key)",
        max_keys.map_or("default (100 000)".to_owned(), |n| n.to_string()),
        store.len(),
        grown as f64 / 1024.0,
        (grown * 1024) as f64 / store.len().max(1) as f64,
    );
}

fn main() {
    if let Some(max_keys) = std::env::args().nth(1) {
        measure(max_keys.parse().ok().filter(|n| *n > 0));
        return;
    }
    let exe = std::env::current_exe().expect("path of this example");
    for max_keys in ["default", "2000000"] {
        let status = Command::new(&exe)
            .arg(max_keys)
            .status()
            .expect("run the measurement");
        assert!(status.success());
    }
}
