//! What parsing and decoding a multi-megabyte `post_call_audio` costs in memory, measured: the
//! growth of the resident set's high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`)
//! over each step. One test in its own binary, so nothing else allocates meanwhile. Linux only;
//! where `/proc` does not allow the reset, the test says so and passes.
//!
//! A counting global allocator would be the direct way, but the crate forbids `unsafe` (a
//! `GlobalAlloc` needs it) and the check should not need a dependency: the kernel's count of the
//! pages the process touched is as telling for megabytes.

#[path = "support/elevenlabs_fixtures.rs"]
mod fixtures;

use std::io::{self, Write};

use hookgate::elevenlabs::Event;

const MIB: u64 = 1 << 20;

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the high-water mark to the current resident set; the resident set, in bytes.
fn reset_peak() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// How far the high-water mark rose above `base`, in bytes.
fn peak_growth(base: u64) -> u64 {
    (status_kib("VmHWM:").unwrap() * 1024).saturating_sub(base)
}

/// Checks each decoded piece against the original as it comes, keeping nothing.
struct Compare<'e> {
    expected: &'e [u8],
    at: usize,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        assert!(buf == &self.expected[self.at..self.at + buf.len()]);
        self.at += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_event_holds_the_base64_once_and_decoding_holds_a_fixed_buffer() {
    // 24 MiB of audio: 32 MiB of base64, about a 50-minute call at 64 kbit/s.
    let audio_len = 24 << 20;
    let (body, audio) = fixtures::post_call_audio(9, audio_len);
    let base64_len = body.len() as u64;

    let Some(base) = reset_peak() else {
        eprintln!("skipped: /proc/self/clear_refs cannot reset the peak here");
        return;
    };
    let event = Event::from_slice(&body).unwrap();
    let parse = peak_growth(base);

    let Event::PostCallAudio(envelope) = &event else {
        panic!("{}", event.event_type());
    };
    let mp3 = envelope.data.full_audio.as_ref().unwrap();
    let base = reset_peak().unwrap();
    let mut compare = Compare {
        expected: &audio,
        at: 0,
    };
    assert_eq!(mp3.decode_to(&mut compare).unwrap(), audio_len as u64);
    assert_eq!(compare.at, audio_len);
    let streamed = peak_growth(base);

    let base = reset_peak().unwrap();
    let decoded = mp3.decode().unwrap();
    let whole = peak_growth(base);
    assert!(decoded == audio);
    drop(decoded);

    // The control: an owned event copies the base64, and the measurement sees it.
    let base = reset_peak().unwrap();
    let owned = event.clone().into_owned();
    let copied = peak_growth(base);
    drop(owned);

    eprintln!(
        "base64 {:.1} MiB: parse +{:.2} MiB, decode_to +{:.2} MiB, decode +{:.2} MiB, into_owned +{:.2} MiB",
        base64_len as f64 / MIB as f64,
        parse as f64 / MIB as f64,
        streamed as f64 / MIB as f64,
        whole as f64 / MIB as f64,
        copied as f64 / MIB as f64,
    );
    assert!(
        copied > base64_len * 3 / 4,
        "the control copy was not seen: +{copied} B"
    );
    assert!(parse < 2 * MIB, "parsing grew the peak by {parse} B");
    assert!(
        streamed < 2 * MIB,
        "streaming decode grew the peak by {streamed} B"
    );
    assert!(
        whole < audio_len as u64 + 2 * MIB,
        "decode into a Vec grew the peak by {whole} B"
    );
}
