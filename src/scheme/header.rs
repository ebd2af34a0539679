//! Header parsing shared by the schemes, shipped or not: the one value of a header, Unix
//! timestamps and their freshness, hex signatures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};

use super::{Malformed, VerifyError};

/// The one value of header `name`, as text: absent is [`VerifyError::MissingHeader`] (401),
/// several lines are accepted only when identical ([`Malformed::ConflictingHeaders`] otherwise,
/// 400), and a value that is not visible ASCII is [`Malformed::NotText`] (400). `display` is
/// the header as the sender's documentation spells it, for the error texts.
///
/// ```
/// use http::{HeaderMap, HeaderName};
/// use hookgate::scheme::{single_header, VerifyError};
///
/// const NAME: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// let mut headers = HeaderMap::new();
/// assert_eq!(
///     single_header(&headers, &NAME, "X-Hub-Signature-256"),
///     Err(VerifyError::MissingHeader { header: "X-Hub-Signature-256" })
/// );
/// headers.insert(NAME, "sha256=00ff".parse()?);
/// assert_eq!(single_header(&headers, &NAME, "X-Hub-Signature-256")?, "sha256=00ff");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn single_header<'a>(
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

/// Parses a timestamp of whole seconds since the Unix epoch: ASCII digits only (no sign, no
/// spaces, no fraction), fitting in a `u64`. `None` is [`Malformed::InvalidTimestamp`].
///
/// ```
/// use hookgate::scheme::parse_unix_seconds;
///
/// assert_eq!(parse_unix_seconds("1600000000"), Some(1_600_000_000));
/// assert_eq!(parse_unix_seconds("-1"), None);
/// assert_eq!(parse_unix_seconds("1.5"), None);
/// ```
#[must_use]
pub fn parse_unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a signed timestamp (seconds since the Unix epoch) against the receiver's clock `now`:
/// older than `tolerance` is [`VerifyError::TimestampStale`], further ahead than `skew` is
/// [`VerifyError::TimestampInFuture`]; both edges are accepted. A scheme calls it in
/// [`Scheme::begin`](super::Scheme::begin), so a stale delivery is refused before its body is
/// read. A scheme whose sender signs no timestamp has nothing to check.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use hookgate::scheme::{check_freshness, VerifyError};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
/// let (tolerance, skew) = (Duration::from_secs(300), Duration::from_secs(60));
/// assert!(check_freshness(1_600_000_000 - 300, now, tolerance, skew).is_ok());
/// assert!(matches!(
///     check_freshness(1_600_000_000 - 301, now, tolerance, skew),
///     Err(VerifyError::TimestampStale { .. })
/// ));
/// ```
pub fn check_freshness(
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

/// Decodes a signature of `N` bytes written as `2 * N` hex digits (either case), the header
/// element number `position` (from 1, for the error): empty is [`Malformed::EmptySignature`],
/// another length [`Malformed::SignatureLength`], a non-hex digit
/// [`Malformed::SignatureNotHex`]. No allocation.
///
/// ```
/// use hookgate::scheme::{decode_hex_signature, Malformed};
///
/// assert_eq!(decode_hex_signature::<3>("00fFa0", 1), Ok([0x00, 0xff, 0xa0]));
/// assert_eq!(
///     decode_hex_signature::<32>("abc", 2),
///     Err(Malformed::SignatureLength { position: 2, found: 3, expected: 64 })
/// );
/// ```
pub fn decode_hex_signature<const N: usize>(
    text: &str,
    position: usize,
) -> Result<[u8; N], Malformed> {
    if text.is_empty() {
        return Err(Malformed::EmptySignature { position });
    }
    if text.len() != N * 2 {
        return Err(Malformed::SignatureLength {
            position,
            found: text.len(),
            expected: N * 2,
        });
    }
    let mut out = [0; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| Malformed::SignatureNotHex { position })?;
    Ok(out)
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

    #[test]
    fn hex_signatures_of_any_length_decode_exactly() {
        let sha1 = "0123456789abcdefABCDEF0123456789abcdef01";
        let decoded: [u8; 20] = decode_hex_signature(sha1, 1).unwrap();
        assert_eq!(decoded.to_vec(), hex::decode(sha1).unwrap());
        assert_eq!(
            decode_hex_signature::<20>(&sha1[..39], 3),
            Err(Malformed::SignatureLength {
                position: 3,
                found: 39,
                expected: 40
            })
        );
        assert_eq!(
            decode_hex_signature::<20>(&format!("{sha1}00"), 1),
            Err(Malformed::SignatureLength {
                position: 1,
                found: 42,
                expected: 40
            })
        );
        assert_eq!(
            decode_hex_signature::<20>(&format!("{}g", &sha1[..39]), 2),
            Err(Malformed::SignatureNotHex { position: 2 })
        );
        assert_eq!(
            decode_hex_signature::<20>("", 4),
            Err(Malformed::EmptySignature { position: 4 })
        );
        let sha512 = "f0".repeat(64);
        assert_eq!(decode_hex_signature::<64>(&sha512, 1), Ok([0xf0; 64]));
    }
}
