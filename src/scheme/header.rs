//! Header parsing shared by the schemes: the one value of a header, Unix timestamps and their
//! freshness.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};

use super::{Malformed, VerifyError};

/// The one value of a header that must not be ambiguous: absent is an error, repeated lines are
/// accepted only when identical.
pub(super) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or(VerifyError::MissingHeader { header: display })?;
    let malformed = |reason| VerifyError::Malformed {
        header: display,
        reason,
    };
    if values.any(|other| other != first) {
        return Err(malformed(Malformed::ConflictingHeaders));
    }
    first.to_str().map_err(|_| malformed(Malformed::NotText))
}

/// Parses a timestamp of whole seconds: ASCII digits only (no sign, no spaces), fitting in u64.
pub(super) fn parse_unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a signed timestamp against the receiver's clock.
pub(super) fn check_freshness(
    timestamp: u64,
    now: SystemTime,
    tolerance: Duration,
    skew: Duration,
) -> Result<(), VerifyError> {
    let signed = Duration::from_secs(timestamp);
    // A clock before 1970 counts as 1970: nothing is fresh then but timestamps near 0.
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if let Some(age) = now.checked_sub(signed) {
        if age > tolerance {
            return Err(VerifyError::TimestampStale { age, tolerance });
        }
    } else {
        let ahead = signed - now;
        if ahead > skew {
            return Err(VerifyError::TimestampInFuture { ahead, skew });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, StatusCode};

    use super::*;
    use crate::problem::ProblemCode;

    const NAME: HeaderName = HeaderName::from_static("x-sig");

    #[test]
    fn single_header_absent_is_missing() {
        let err = single_header(&HeaderMap::new(), &NAME, "X-Sig").unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader { header: "X-Sig" });
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.code(), ProblemCode::MISSING_SIGNATURE);
    }

    #[test]
    fn single_header_identical_repeats_are_accepted_conflicting_are_not() {
        let mut headers = HeaderMap::new();
        headers.append(NAME, HeaderValue::from_static("a"));
        headers.append(NAME, HeaderValue::from_static("a"));
        assert_eq!(single_header(&headers, &NAME, "X-Sig").unwrap(), "a");
        headers.append(NAME, HeaderValue::from_static("b"));
        let err = single_header(&headers, &NAME, "X-Sig").unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Malformed {
                reason: Malformed::ConflictingHeaders,
                ..
            }
        ));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn single_header_rejects_non_ascii() {
        let mut headers = HeaderMap::new();
        headers.insert(NAME, HeaderValue::from_bytes(b"t=1,\xff").unwrap());
        let err = single_header(&headers, &NAME, "X-Sig").unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Malformed {
                reason: Malformed::NotText,
                ..
            }
        ));
    }

    #[test]
    fn timestamps_are_plain_digits_in_u64() {
        assert_eq!(parse_unix_seconds("1600000000"), Some(1_600_000_000));
        assert_eq!(parse_unix_seconds("0"), Some(0));
        assert_eq!(parse_unix_seconds(&u64::MAX.to_string()), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.5",
            "1e9",
            "18446744073709551616",
            "abc",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn freshness_window_is_inclusive_at_both_edges() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let tol = Duration::from_secs(100);
        let skew = Duration::from_secs(10);
        assert!(check_freshness(9_900, now, tol, skew).is_ok());
        assert!(check_freshness(10_010, now, tol, skew).is_ok());
        assert_eq!(
            check_freshness(9_899, now, tol, skew),
            Err(VerifyError::TimestampStale {
                age: Duration::from_secs(101),
                tolerance: tol
            })
        );
        assert_eq!(
            check_freshness(10_011, now, tol, skew),
            Err(VerifyError::TimestampInFuture {
                ahead: Duration::from_secs(11),
                skew
            })
        );
        // Far future timestamps are refused, not overflowed.
        assert!(matches!(
            check_freshness(u64::MAX, now, tol, skew),
            Err(VerifyError::TimestampInFuture { .. })
        ));
    }
}
