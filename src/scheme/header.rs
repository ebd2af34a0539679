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
    if text.is_empty() {
        return None;
    }
    // One pass: digits only, and no overflow of a `u64`.
    text.bytes().try_fold(0u64, |seconds, byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        seconds.checked_mul(10)?.checked_add(u64::from(digit))
    })
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
    // Branch-free per digit: a table lookup, with every non-hex digit marked by the high bit,
    // and one check at the end.
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        invalid |= high | low;
        // Disjoint nibbles: `|` and `^` are the same here (an equivalent mutant).
        *byte = (high << 4) | (low & 0x0f);
    }
    if invalid & NOT_HEX != 0 {
        return Err(Malformed::SignatureNotHex { position });
    }
    Ok(out)
}

/// Marks a byte that is not a hex digit in [`HEX`].
const NOT_HEX: u8 = 0x80;

/// The value of each hex digit (either case); [`NOT_HEX`] for every other byte.
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

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

    #[test]
    fn timestamps_next_to_the_digits_and_at_the_edge_of_u64() {
        // The bytes just below '0' and just above '9' are not digits.
        for bad in [
            "/",
            ":",
            "1/",
            "1:",
            "0:0",
            "18446744073709551620",
            "99999999999999999999",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
        assert_eq!(parse_unix_seconds("0009"), Some(9));
        assert_eq!(parse_unix_seconds("1234567890"), Some(1_234_567_890));
        assert_eq!(
            parse_unix_seconds("18446744073709551609"),
            Some(18_446_744_073_709_551_609)
        );
    }

    #[test]
    fn every_byte_pair_decodes_as_the_hex_crate_does() {
        for high in 0..=255u8 {
            for low in 0..=255u8 {
                let pair = [high, low];
                let Ok(text) = std::str::from_utf8(&pair) else {
                    continue;
                };
                let expected = hex::decode(text).ok().map(|bytes| [bytes[0]]);
                assert_eq!(
                    decode_hex_signature::<1>(text, 3).ok(),
                    expected,
                    "{pair:?}"
                );
                if expected.is_none() {
                    assert_eq!(
                        decode_hex_signature::<1>(text, 3),
                        Err(Malformed::SignatureNotHex { position: 3 })
                    );
                }
            }
        }
        // One bad digit anywhere in a long signature, the last one included.
        let good = "0123456789abcdefABCDEF".repeat(3)[..64].to_owned();
        assert!(decode_hex_signature::<32>(&good, 1).is_ok());
        for at in 0..64 {
            let mut bad = good.clone().into_bytes();
            bad[at] = b'g';
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(
                decode_hex_signature::<32>(&bad, 2),
                Err(Malformed::SignatureNotHex { position: 2 }),
                "{at}"
            );
        }
    }
}
