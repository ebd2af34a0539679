//! Sizes, durations and listening addresses as people write them on a command line, and
//! durations as people read them.
//!
//! - Durations: a plain number in the flag's own unit (seconds for every flag today, as before),
//!   or [`humantime`]'s forms: `250ms`, `30s`, `5m`, `1h30m`, `1.5s`, `2days`. Never negative,
//!   never past the flag's bound.
//! - Sizes: a plain number of bytes, or a number and a unit: `B`; `KiB`, `MiB`, `GiB`, `TiB`
//!   (and `K`, `M`, `G`, `T`, as nginx, systemd and Docker read them) are powers of 1024;
//!   `kB`, `MB`, `GB`, `TB` are powers of 1000. Units are case-insensitive; a fraction is
//!   accepted when it comes to whole bytes (`1.5KiB`). Exact integer arithmetic, no overflow.
//! - Listening addresses: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`, or a bare `PORT`, which
//!   means loopback (`127.0.0.1:PORT`): exposing the gateway is always written out.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

/// What a plain number means for a duration flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plain {
    Seconds,
    #[cfg_attr(not(test), allow(dead_code))]
    Millis,
}

impl Plain {
    fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Millis => "milliseconds",
        }
    }
}

/// The accepted forms, for error messages.
fn duration_forms(plain: Plain) -> String {
    format!(
        "expected a duration such as 250ms, 30s, 5m, 1h30m or 24h, or a plain number of {}",
        plain.name()
    )
}

/// Parses a duration: a plain number (`plain` says its unit; a fraction or an exponent is
/// accepted, as the flags always did), or humantime's forms.
pub(crate) fn parse_duration(text: &str, plain: Plain) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty: {}", duration_forms(plain)));
    }
    if text.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative: {}",
            duration_forms(plain)
        ));
    }
    let per_unit = match plain {
        Plain::Seconds => Duration::from_secs(1),
        Plain::Millis => Duration::from_millis(1),
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = text
            .parse()
            .map_err(|_| format!("{text} {} is too long", plain.name()))?;
        return Ok(match plain {
            Plain::Seconds => Duration::from_secs(n),
            Plain::Millis => Duration::from_millis(n),
        });
    }
    if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() || number < 0.0 {
            return Err(format!("not a usable number: {}", duration_forms(plain)));
        }
        return Duration::try_from_secs_f64(number * per_unit.as_secs_f64())
            .map_err(|_| format!("{text} {} is too long", plain.name()));
    }
    humantime::parse_duration(text).map_err(|error| format!("{error}; {}", duration_forms(plain)))
}

/// [`parse_duration`], then checked: above 0 when `above_zero`, and at most `max`.
fn duration_between(
    text: &str,
    plain: Plain,
    above_zero: bool,
    max: Duration,
) -> Result<Duration, String> {
    let value = parse_duration(text, plain)?;
    if above_zero && value.is_zero() {
        return Err(format!("must be more than 0: {}", duration_forms(plain)));
    }
    if value > max {
        return Err(format!(
            "{} is more than the most allowed, {}",
            human(value),
            human(max)
        ));
    }
    Ok(value)
}

/// The longest timeout: 1 000 000 s, as when the timeouts were plain seconds.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(1_000_000);

/// The longest period (tolerances, TTLs, cool-downs, grace): 100 years, which every clock and
/// store handles (an `Instant` plus it, Redis's milliseconds).
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A timeout: above 0, at most [`MAX_TIMEOUT`]; a plain number is seconds.
pub(crate) fn timeout(text: &str) -> Result<Duration, String> {
    duration_between(text, Plain::Seconds, true, MAX_TIMEOUT)
}

/// A period that may be 0, at most [`MAX_PERIOD`]; a plain number is seconds.
pub(crate) fn period(text: &str) -> Result<Duration, String> {
    duration_between(text, Plain::Seconds, false, MAX_PERIOD)
}

/// The accepted size forms, for error messages.
const SIZE_FORMS: &str = "expected a size such as 64MiB, 512KiB, 10MB or a plain number of bytes \
     (KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024; kB/MB/GB/TB powers of 1000)";

/// Parses a size in bytes (see the module's documentation), exactly, refusing what does not fit
/// a `u64` or does not come to whole bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty: {SIZE_FORMS}"));
    }
    if text.starts_with('-') {
        return Err(format!("a size cannot be negative: {SIZE_FORMS}"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("not a number: {SIZE_FORMS}"));
    }
    let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown unit {other:?}: {SIZE_FORMS}")),
    };
    let too_large = || format!("{text} is too large: at most {} bytes", u64::MAX);
    // More digits than any u64 holds: too large, or (a fraction's) not a whole number of bytes.
    if whole.trim_start_matches('0').len() > 20 {
        return Err(too_large());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 24 {
        return Err(format!("{text} has too many decimals"));
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let scale = 10_u128.pow(fraction.len() as u32);
        let part = digits * multiplier;
        if !part.is_multiple_of(scale) {
            return Err(format!("{text} is not a whole number of bytes"));
        }
        bytes = bytes.checked_add(part / scale).ok_or_else(too_large)?;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// A size as a `usize`, with [`parse_size`]'s forms.
pub(crate) fn size(text: &str) -> Result<usize, String> {
    usize::try_from(parse_size(text)?).map_err(|_| format!("{text} is too large for this machine"))
}

/// Parses a listening address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`, or a bare `PORT`
/// meaning `127.0.0.1:PORT`. `:PORT` is refused: some tools read it as every interface.
pub(crate) fn listen(text: &str) -> Result<SocketAddr, String> {
    const FORMS: &str = "expected IP:PORT (127.0.0.1:8080 for this machine only, 0.0.0.0:8080 \
                         for every interface, [::1]:8080) or a bare port (8080, meaning \
                         127.0.0.1:8080)";
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port = |port: &str| {
        port.parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port (0 to 65535): {FORMS}"))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(text)?)));
    }
    if let Some(rest) = text.strip_prefix(':') {
        return Err(format!(
            "`:{rest}` leaves the interface unsaid: write 127.0.0.1:{rest} (this machine only) \
             or 0.0.0.0:{rest} (every interface)"
        ));
    }
    if let Some(rest) = text.strip_prefix("localhost:") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(rest)?)));
    }
    Err(FORMS.to_owned())
}

/// A duration as people read it: `450ms`, `1.5s`, `30s`, `3m 12s`, `2h`, `1h 30m`, `1d 2h`.
/// Below a minute, to the tenth of a second; from a minute on, to the second.
pub(crate) fn human(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros == 0 {
        return "0s".to_owned();
    }
    if micros < 1_000 {
        return format!("{micros}µs");
    }
    let millis = (micros + 500) / 1_000;
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let tenths = (millis + 50) / 100;
    if tenths < 600 {
        return match tenths % 10 {
            0 => format!("{}s", tenths / 10),
            tenth => format!("{}.{tenth}s", tenths / 10),
        };
    }
    let mut secs = (millis + 500) / 1_000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// A size as people read it: `64 MiB`, `512 KiB`, or bytes when not a round binary number.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(text: &str) -> Result<Duration, String> {
        parse_duration(text, Plain::Seconds)
    }

    #[test]
    fn plain_numbers_keep_the_flags_unit() {
        assert_eq!(secs("30"), Ok(Duration::from_secs(30)));
        assert_eq!(secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(secs("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(secs(" 2 "), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_duration("250", Plain::Millis),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("1.5", Plain::Millis),
            Ok(Duration::from_micros(1500))
        );
        assert_eq!(
            secs(&u64::MAX.to_string()),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn human_forms() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("250ms", 250),
            ("1h", 3_600_000),
            ("24h", 86_400_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1.5s", 1_500),
            ("2days", 172_800_000),
            ("1d", 86_400_000),
        ];
        for (text, millis) in cases {
            assert_eq!(secs(text), Ok(Duration::from_millis(millis)), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_explained_not_panics() {
        for text in [
            "",
            " ",
            "-1",
            "-1s",
            "1e99s",
            "inf",
            "NaN",
            "-inf",
            "1e999",
            "s",
            "5 parsecs",
            "99999999999999999999999s",
            "1.2.3s",
            "1e99",
        ] {
            let error = secs(text).unwrap_err();
            assert!(
                error.contains("expected a duration such as") || error.contains("too long"),
                "{text:?}: {error}"
            );
        }
        assert!(secs("99999999999999999999999")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(timeout("2"), Ok(Duration::from_secs(2)));
        assert!(timeout("0").unwrap_err().contains("more than 0"));
        assert!(timeout("0s").unwrap_err().contains("more than 0"));
        assert!(timeout("1000001").unwrap_err().contains("most allowed"));
        assert_eq!(period("0"), Ok(Duration::ZERO));
        assert_eq!(period("86400"), Ok(Duration::from_secs(86_400)));
        assert!(period("101years").unwrap_err().contains("most allowed"));
        assert!(period(&u64::MAX.to_string())
            .unwrap_err()
            .contains("most allowed"));
    }

    #[test]
    fn sizes() {
        let cases = [
            ("0", 0),
            ("4096", 4096),
            ("10B", 10),
            ("32MiB", 32 << 20),
            ("32 MiB", 32 << 20),
            ("32mib", 32 << 20),
            ("64M", 64 << 20),
            ("64MB", 64_000_000),
            ("64mb", 64_000_000),
            ("512KiB", 512 << 10),
            ("512k", 512 << 10),
            ("1kB", 1000),
            ("1GiB", 1 << 30),
            ("2GB", 2_000_000_000),
            ("1TiB", 1 << 40),
            ("1.5KiB", 1536),
            ("0.5MiB", 512 << 10),
            (".5k", 512),
            ("1.000KB", 1000),
            ("18446744073709551615", u64::MAX),
            ("0.0001220703125TiB", 1 << 27),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        assert_eq!(size("64MiB"), Ok(64 << 20));
    }

    #[test]
    fn bad_sizes_are_explained_not_panics() {
        for (text, why) in [
            ("", "empty"),
            ("-1", "negative"),
            ("-1MiB", "negative"),
            ("MiB", "not a number"),
            (".", "not a number"),
            ("1..5k", "not a number"),
            ("1.2.3k", "not a number"),
            ("12 parsecs", "unknown unit"),
            ("1e9", "unknown unit"),
            ("1 MiB B", "unknown unit"),
            ("18446744073709551616", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
            ("17179869184GiB", "too large"),
            ("20000000TiB", "too large"),
            ("1.5B", "whole number"),
            ("1.0001KiB", "whole number"),
            ("1.0000000000001MB", "whole number"),
            ("1.0000000000000000000000001MB", "too many decimals"),
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }

    #[test]
    fn listen_addresses() {
        let addr = |text: &str| listen(text).map(|a| a.to_string());
        assert_eq!(addr("8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(addr("0").unwrap(), "127.0.0.1:0");
        assert_eq!(addr("localhost:9000").unwrap(), "127.0.0.1:9000");
        assert_eq!(addr("0.0.0.0:8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(addr("[::1]:8080").unwrap(), "[::1]:8080");
        assert_eq!(addr("[::]:8080").unwrap(), "[::]:8080");
        assert!(addr(":8080").unwrap_err().contains("0.0.0.0:8080"));
        assert!(addr("65536").unwrap_err().contains("not a port"));
        assert!(addr("localhost:x").unwrap_err().contains("not a port"));
        assert!(addr("").unwrap_err().contains("expected IP:PORT"));
        assert!(addr("example.com:80")
            .unwrap_err()
            .contains("expected IP:PORT"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let ms = Duration::from_millis;
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_micros(37)), "37µs");
        assert_eq!(human(ms(450)), "450ms");
        assert_eq!(human(ms(999)), "999ms");
        assert_eq!(human(ms(1500)), "1.5s");
        assert_eq!(human(ms(30_000)), "30s");
        assert_eq!(human(ms(59_960)), "1m");
        assert_eq!(human(ms(192_000)), "3m 12s");
        assert_eq!(human(ms(7_200_000)), "2h");
        assert_eq!(human(ms(5_400_000)), "1h 30m");
        assert_eq!(human(ms(3_601_000)), "1h 1s");
        assert_eq!(human(ms(86_400_000)), "1d");
        assert_eq!(human(ms(93_600_000)), "1d 2h");
        assert_eq!(human(Duration::MAX), "213503982334601d 7h 16s");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(1 << 10), "1 KiB");
        assert_eq!(human_size(1536), "1536 B");
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1 << 40), "1 TiB");
    }

    proptest! {
        #[test]
        fn whole_seconds_round_trip(n in 0_u64..=MAX_PERIOD.as_secs()) {
            let d = Duration::from_secs(n);
            prop_assert_eq!(secs(&n.to_string()), Ok(d));
            // What `human` prints parses back to the same whole seconds (from a minute on).
            if n >= 60 {
                let printed = human(d);
                prop_assert_eq!(secs(&printed), Ok(d), "{}", printed);
            }
        }

        #[test]
        fn durations_never_panic(text in "\\PC{0,24}") {
            let _ = secs(&text);
            let _ = timeout(&text);
            let _ = period(&text);
        }

        #[test]
        fn sizes_never_panic(text in "[0-9. kKmMgGtTiIbB-]{0,30}") {
            let _ = parse_size(&text);
        }

        #[test]
        fn sizes_scale_exactly(n in 0_u64..=(1 << 24), unit in 0_usize..8) {
            let (name, factor) = [
                ("B", 1_u64), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                ("kB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("K", 1 << 10),
            ][unit];
            prop_assert_eq!(parse_size(&format!("{n}{name}")), Ok(n * factor));
            prop_assert_eq!(parse_size(&format!("{n} {}", name.to_ascii_lowercase())), Ok(n * factor));
        }

        #[test]
        fn huge_sizes_are_refused_not_wrapped(n in (u64::MAX >> 10) + 1..=u64::MAX) {
            let error = parse_size(&format!("{n}KiB")).unwrap_err();
            prop_assert!(error.contains("too large"), "{}", error);
        }

        #[test]
        fn bare_ports_are_loopback(port in 0_u16..=u16::MAX) {
            let addr = listen(&port.to_string()).unwrap();
            prop_assert!(addr.ip().is_loopback());
            prop_assert_eq!(addr.port(), port);
        }
    }
}
