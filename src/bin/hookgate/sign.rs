//! `hookgate sign` and `hookgate verify`: the signature of the body on stdin.
//!
//! Both read stdin to its end and use its exact bytes (no trimming, no newline handling, no
//! UTF-8 required). Exit status: 0 signed / valid, 1 invalid, 2 nothing to sign or check with.

use std::{
    io::{Read as _, Write as _},
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hookgate::scheme::{ElevenLabs, Malformed, Scheme as _, VerifyError};
use http::{HeaderMap, HeaderValue};

use crate::{
    cli::{SignArgs, VerifyArgs},
    secrets, units,
};

/// Exit status when there is nothing to work with (no secret, unreadable stdin).
const USAGE: u8 = 2;

fn fail(command: &str, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("hookgate {command}: {error}");
    ExitCode::from(USAGE)
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read the body from stdin: {e}"))?;
    Ok(body)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn sign(args: SignArgs) -> ExitCode {
    let scheme = match secrets::load_required(&args.secrets).and_then(|s| s.scheme()) {
        Ok(scheme) => scheme,
        Err(error) => return fail("sign", error),
    };
    let body = match read_stdin() {
        Ok(body) => body,
        Err(error) => return fail("sign", error),
    };
    let header = scheme.sign(args.timestamp.unwrap_or_else(unix_now), &body);
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{header}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("sign", format!("cannot write to stdout: {error}")),
    }
}

pub(crate) fn verify(args: VerifyArgs) -> ExitCode {
    let secrets = match secrets::load_required(&args.secrets) {
        Ok(secrets) => secrets,
        Err(error) => return fail("verify", error),
    };
    let scheme = match secrets.scheme() {
        Ok(scheme) => scheme
            .tolerance(args.tolerance)
            .future_skew(args.future_skew),
        Err(error) => return fail("verify", error),
    };
    let body = match read_stdin() {
        Ok(body) => body,
        Err(error) => return fail("verify", error),
    };
    let now = SystemTime::now();
    match check(&scheme, &args.header, &body, now) {
        Ok(verified) => {
            let t = verified.unix_timestamp();
            let now = unix_now();
            let when = if t <= now {
                format!("{} ago", units::human(Duration::from_secs(now - t)))
            } else {
                format!("{} ahead", units::human(Duration::from_secs(t - now)))
            };
            println!(
                "valid: signed at t={t} ({}, {when}) with secret #{} of {} ({}); {} body bytes",
                utc(t),
                verified.secret_index() + 1,
                secrets.len(),
                secrets.source,
                body.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invalid: {}", describe(&error));
            if let Some(hint) = hint(&error, &args.header, &body) {
                eprintln!("hint: {hint}");
            }
            let expired = secrets.expired(now);
            if expired > 0 && matches!(error, VerifyError::SignatureMismatch { .. }) {
                eprintln!(
                    "hint: {expired} of the {} secrets had expired and were not tried",
                    secrets.len()
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// Verifies `header` against `body` as a receiver would.
fn check(
    scheme: &ElevenLabs,
    header: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<hookgate::Verified, VerifyError> {
    // A value no HTTP request could carry (control characters) is malformed text.
    let value = HeaderValue::from_str(header).map_err(|_| VerifyError::Malformed {
        header: "ElevenLabs-Signature",
        reason: Malformed::NotText,
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(ElevenLabs::HEADER, value);
    scheme.verify(&headers, body, now)
}

/// `error` as the library says it, with ages and tolerances in human units (`1h 2m`, `30m`)
/// rather than seconds.
fn describe(error: &VerifyError) -> String {
    match error {
        VerifyError::TimestampStale { age, tolerance } => format!(
            "the signed timestamp is {} old, more than the {} tolerance",
            units::human(*age),
            units::human(*tolerance)
        ),
        VerifyError::TimestampInFuture { ahead, skew } => format!(
            "the signed timestamp is {} ahead of this receiver's clock, more than the {} allowed skew",
            units::human(*ahead),
            units::human(*skew)
        ),
        other => other.to_string(),
    }
}

/// What usually causes `error` when checking by hand.
fn hint(error: &VerifyError, header: &str, body: &[u8]) -> Option<&'static str> {
    let header = header.trim_start().to_ascii_lowercase();
    if header.starts_with("elevenlabs-signature:") {
        return Some("pass only the header's value (t=...,v0=...), without its name");
    }
    match error {
        VerifyError::SignatureMismatch { .. } if body.ends_with(b"\n") => Some(
            "the body on stdin ends with a newline (echo adds one): the signature covers the exact bytes",
        ),
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (proleptic Gregorian calendar).
fn utc(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_600_000_000), "2020-09-13 12:26:40 UTC");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn the_known_vector_verifies() {
        let scheme = ElevenLabs::new("test_secret").unwrap();
        let body = br#"{"type":"speech_to_text_transcription","event_timestamp":1600000000,"data":{"request_id":"req_123","transcription":{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[]}}}"#;
        let header =
            "t=1600000000,v0=14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c";
        let now = UNIX_EPOCH + Duration::from_secs(1_600_000_010);
        assert_eq!(scheme.sign(1_600_000_000, body), header);
        let verified = check(&scheme, header, body, now).unwrap();
        assert_eq!(verified.unix_timestamp(), 1_600_000_000);
    }

    #[test]
    fn hints_for_common_mistakes() {
        let mismatch = VerifyError::SignatureMismatch {
            signatures: 1,
            secrets: 1,
        };
        assert!(hint(&mismatch, "t=1,v0=00", b"{}\n")
            .unwrap()
            .contains("newline"));
        assert_eq!(hint(&mismatch, "t=1,v0=00", b"{}"), None);
        let missing = VerifyError::Malformed {
            header: "ElevenLabs-Signature",
            reason: Malformed::MissingTimestamp,
        };
        assert!(hint(&missing, "ElevenLabs-Signature: t=1,v0=00", b"{}")
            .unwrap()
            .contains("only the header's value"));
    }

    #[test]
    fn ages_are_described_in_human_units() {
        let stale = VerifyError::TimestampStale {
            age: Duration::from_secs(3725),
            tolerance: Duration::from_secs(1800),
        };
        assert_eq!(
            describe(&stale),
            "the signed timestamp is 1h 2m 5s old, more than the 30m tolerance"
        );
        let ahead = VerifyError::TimestampInFuture {
            ahead: Duration::from_secs(3600),
            skew: Duration::from_secs(300),
        };
        assert_eq!(
            describe(&ahead),
            "the signed timestamp is 1h ahead of this receiver's clock, more than the 5m allowed skew"
        );
    }

    #[test]
    fn control_characters_are_malformed_text() {
        let scheme = ElevenLabs::new("test_secret").unwrap();
        let error = check(&scheme, "t=1\n", b"", SystemTime::now()).unwrap_err();
        assert!(error.to_string().contains("not visible ASCII"), "{error}");
    }
}
