//! Where the webhook secrets come from: a secret file, the environment, or (for a first run) a
//! development secret `serve` creates. Never from a flag's value, so never in `ps` output.
//!
//! A list holds secrets separated by commas or lines; a secret may be followed by its expiry,
//! `expires=<RFC 3339 UTC time>`, after which it stops verifying on its own (the old secret of a
//! rotation):
//!
//! ```text
//! wsec_new...
//! wsec_old... expires=2026-12-31T00:00:00Z
//! ```
//!
//! The first secret signs (`send`, `sign`) and never expires.

use std::{
    fmt, fs,
    io::Write,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hookgate::scheme::ElevenLabs;

use crate::cli::SecretArgs;

/// The environment variable holding the secret(s), comma-separated for rotation.
pub(crate) const SECRET_ENV: &str = "ELEVENLABS_WEBHOOK_SECRET";

/// Where `serve` keeps the development secret it creates when none is configured; `send`,
/// `sign` and `verify` find it there.
pub(crate) const DEV_SECRET_FILE: &str = ".hookgate-dev-secret";

/// The configured secrets, first one signing. `Debug` shows only how many.
pub(crate) struct Secrets {
    values: Vec<Entry>,
    pub(crate) source: Source,
}

/// One secret of a list, and when it stops verifying, if ever. `Debug` shows only the expiry.
struct Entry {
    secret: String,
    expires: Option<SystemTime>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Entry {
    fn new(secret: String) -> Self {
        Self {
            secret,
            expires: None,
        }
    }
}

/// Where the secrets were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    File(String),
    Env,
    DevFile,
    DevCreated,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "secret file {path}"),
            Self::Env => write!(f, "{SECRET_ENV}"),
            Self::DevFile => write!(f, "development secret in {DEV_SECRET_FILE}"),
            Self::DevCreated => write!(f, "new development secret in {DEV_SECRET_FILE}"),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.values.len())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// The scheme checking (and, with the first secret, signing) deliveries.
    pub(crate) fn scheme(&self) -> Result<ElevenLabs, String> {
        let mut values = self.values.iter();
        let first = values.next().ok_or("no webhook secret configured")?;
        if first.expires.is_some() {
            return Err(format!(
                "the first secret in {} signs and must not expire: list the current secret first, the expiring one after it",
                self.source
            ));
        }
        let mut scheme = ElevenLabs::new(&first.secret).map_err(|e| e.to_string())?;
        for value in values {
            scheme = match value.expires {
                Some(until) => scheme.with_secret_until(&value.secret, until),
                None => scheme.with_secret(&value.secret),
            }
            .map_err(|e| e.to_string())?;
        }
        Ok(scheme)
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// How many secrets have expired at `now`, and verify nothing any more.
    pub(crate) fn expired(&self, now: SystemTime) -> usize {
        self.values
            .iter()
            .filter(|value| value.expires.is_some_and(|until| until <= now))
            .count()
    }

    /// Each secret's position (from 1) and expiry, for those that have one.
    pub(crate) fn expiries(&self) -> impl Iterator<Item = (usize, SystemTime)> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| Some((index + 1, value.expires?)))
    }

    pub(crate) fn is_development(&self) -> bool {
        matches!(self.source, Source::DevFile | Source::DevCreated)
    }
}

/// Splits a secret list on commas and newlines, dropping surrounding whitespace and empties;
/// each secret may be followed by `expires=<RFC 3339 UTC time>`. Errors name a secret by its
/// position, never by its value.
fn split(text: &str) -> Result<Vec<Entry>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(index, item)| {
            let position = index + 1;
            let mut words = item.split_whitespace();
            let mut entry = Entry::new(words.next().unwrap_or_default().to_owned());
            for word in words {
                let Some(time) = word.strip_prefix("expires=") else {
                    return Err(format!(
                        "secret {position}: only `expires=<time>` may follow a secret, after a space"
                    ));
                };
                if entry.expires.is_some() {
                    return Err(format!("secret {position}: more than one expiry"));
                }
                entry.expires = Some(parse_utc(time).ok_or_else(|| {
                    format!(
                        "secret {position}: the expiry is not an RFC 3339 UTC time such as 2026-12-31T00:00:00Z"
                    )
                })?);
            }
            Ok(entry)
        })
        .collect()
}

/// Parses an RFC 3339 time in UTC, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (or `+00:00` for `Z`; `t`
/// and `z` in either case), from 1970 on. Leap seconds (`:60`) and other offsets are refused.
fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = text
        .strip_suffix(['Z', 'z'])
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once(['T', 't'])?;
    let number = |digits: &str, len: usize| {
        (digits.len() == len && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    let mut date_parts = date.split('-');
    let year = number(date_parts.next()?, 4)?;
    let month = number(date_parts.next()?, 2)?;
    let day = number(date_parts.next()?, 2)?;
    let (time, fraction) = match time.split_once('.') {
        Some((time, fraction)) => (time, Some(fraction)),
        None => (time, None),
    };
    let mut time_parts = time.split(':');
    let hour = number(time_parts.next()?, 2)?;
    let minute = number(time_parts.next()?, 2)?;
    let second = number(time_parts.next()?, 2)?;
    if date_parts.next().is_some() || time_parts.next().is_some() {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(digits) if (1..=9).contains(&digits.len()) => {
            let scale = 10u64.pow(9 - digits.len() as u32);
            u32::try_from(number(digits, digits.len())? * scale).ok()?
        }
        Some(_) => return None,
    };
    // Howard Hinnant's days-from-civil, for dates from 1970 on (March-based years).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// The configured secrets: `--secret-file`, then `ELEVENLABS_WEBHOOK_SECRET`, then the
/// development secret file. `Ok(None)` when there is none anywhere.
pub(crate) fn load(args: &SecretArgs) -> Result<Option<Secrets>, String> {
    if let Some(path) = &args.secret_file {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let values = split(&text).map_err(|e| format!("secret file {}: {e}", path.display()))?;
        if values.is_empty() {
            return Err(format!("secret file {} holds no secret", path.display()));
        }
        let source = Source::File(path.display().to_string());
        return Ok(Some(Secrets { values, source }));
    }
    if let Ok(text) = std::env::var(SECRET_ENV) {
        let values = split(&text).map_err(|e| format!("{SECRET_ENV}: {e}"))?;
        if values.is_empty() {
            return Err(format!("{SECRET_ENV} is set but holds no secret"));
        }
        return Ok(Some(Secrets {
            values,
            source: Source::Env,
        }));
    }
    match fs::read_to_string(DEV_SECRET_FILE).map(|text| split(&text)) {
        Ok(Ok(values)) if !values.is_empty() => Ok(Some(Secrets {
            values,
            source: Source::DevFile,
        })),
        Ok(Err(e)) => Err(format!("{DEV_SECRET_FILE}: {e}")),
        _ => Ok(None),
    }
}

/// Like [`load`], for the commands that cannot work without a secret (`send`, `sign`,
/// `verify`): nothing configured is an error saying where a secret goes.
pub(crate) fn load_required(args: &SecretArgs) -> Result<Secrets, String> {
    load(args)?.ok_or_else(|| {
        format!(
            "no webhook secret: set {SECRET_ENV} or --secret-file (or run `hookgate serve` once to create a development secret)"
        )
    })
}

/// Like [`load`], but when nothing is configured creates a random development secret in
/// [`DEV_SECRET_FILE`] (readable by the owner only), so a first run works and `hookgate send`
/// can sign for it. Unverified traffic is never accepted.
pub(crate) fn load_or_create_development(args: &SecretArgs) -> Result<Secrets, String> {
    if let Some(secrets) = load(args)? {
        return Ok(secrets);
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a secret: {e}"))?;
    let secret = format!("dev_{}", hex::encode(random));
    write_private(Path::new(DEV_SECRET_FILE), &secret).map_err(|e| {
        format!(
            "no webhook secret configured (set {SECRET_ENV} or --secret-file), and no development \
             secret could be created: cannot write {DEV_SECRET_FILE} in the working directory: {e}"
        )
    })?;
    Ok(Secrets {
        values: vec![Entry::new(secret)],
        source: Source::DevCreated,
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn secrets(text: &str) -> Secrets {
        Secrets {
            values: split(text).unwrap(),
            source: Source::Env,
        }
    }

    #[test]
    fn secret_lists_split_on_commas_and_lines() {
        let values = split(" a, b\nc\n\n,").unwrap();
        let names: Vec<&str> = values.iter().map(|v| v.secret.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(values.iter().all(|v| v.expires.is_none()));
        assert!(split(" , \n").unwrap().is_empty());
    }

    #[test]
    fn a_secret_may_carry_its_expiry() {
        let values = split(
            "current\nold expires=2026-12-31T00:00:00Z, other\texpires=1970-01-01T00:00:01.5Z",
        )
        .unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].expires, None);
        assert_eq!(values[1].secret, "old");
        assert_eq!(values[1].expires, Some(at(1_798_675_200)));
        assert_eq!(values[2].secret, "other");
        assert_eq!(values[2].expires, Some(at(1) + Duration::from_millis(500)));
    }

    #[test]
    fn bad_expiries_are_refused_without_showing_the_secret() {
        for (text, why) in [
            ("hunter2 expires=tomorrow", "RFC 3339"),
            ("hunter2 expires=2026-12-31T00:00:00+01:00", "RFC 3339"),
            ("hunter2 expires=2026-12-31", "RFC 3339"),
            ("hunter2 expires=", "RFC 3339"),
            (
                "hunter2 expires=2026-12-31T00:00:00Z expires=2027-01-01T00:00:00Z",
                "more than one",
            ),
            (
                "hunter2 until=2026-12-31T00:00:00Z",
                "only `expires=<time>`",
            ),
            ("hunter 2", "only `expires=<time>`"),
        ] {
            let error = split(&format!("first\n{text}")).unwrap_err();
            assert!(error.starts_with("secret 2: "), "{error}");
            assert!(error.contains(why), "{text}: {error}");
            assert!(!error.contains("hunter"), "{error}");
        }
    }

    #[test]
    fn rfc3339_utc_times() {
        let ok = [
            ("1970-01-01T00:00:00Z", 0, 0),
            ("1970-01-01T00:00:01.5Z", 1, 500_000_000),
            ("2000-02-29T12:00:00Z", 951_825_600, 0),
            ("2000-03-01T00:00:00Z", 951_868_800, 0),
            ("2020-09-13T12:26:40Z", 1_600_000_000, 0),
            ("2024-02-29T23:59:59Z", 1_709_251_199, 0),
            ("2026-12-31T00:00:00Z", 1_798_675_200, 0),
            ("2026-12-31t00:00:00z", 1_798_675_200, 0),
            ("2026-12-31T00:00:00+00:00", 1_798_675_200, 0),
            ("2026-12-31T00:00:00.000000001Z", 1_798_675_200, 1),
            ("2026-12-31T00:00:00.123456789Z", 1_798_675_200, 123_456_789),
            ("2099-12-31T23:59:59Z", 4_102_444_799, 0),
            ("2100-03-01T00:00:00Z", 4_107_542_400, 0),
            ("9999-12-31T23:59:59Z", 253_402_300_799, 0),
        ];
        for (text, secs, nanos) in ok {
            assert_eq!(
                parse_utc(text),
                Some(at(secs) + Duration::from_nanos(nanos)),
                "{text}"
            );
        }
        for text in [
            "",
            "Z",
            "2026-12-31T00:00:00",
            "2026-12-31 00:00:00Z",
            "2026-12-31T00:00:00+01:00",
            "2026-12-31T00:00:00-00:00",
            "2026-12-31",
            "1969-12-31T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-00T00:00:00Z",
            "2026-12-32T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T23:60:00Z",
            "2026-12-31T23:59:60Z",
            "2026-12-31T00:00:00.Z",
            "2026-12-31T00:00:00.1234567890Z",
            "2026-12-31T00:00:00.12a4Z",
            "2026-12-31T00:00Z",
            "2026-12-31T00:00:00:00Z",
            "2026-12-31-01T00:00:00Z",
            "26-12-31T00:00:00Z",
            "2026-1-31T00:00:00Z",
            "+026-12-31T00:00:00Z",
            "2026-12-31T0:00:00Z",
            "2026-12-31T00:+0:00Z",
        ] {
            assert_eq!(parse_utc(text), None, "{text}");
        }
        // Every day of a leap year and of a common one, against the calendar the CLI prints.
        for (year, days) in [(2024, 366), (2025, 365)] {
            let start = parse_utc(&format!("{year}-01-01T00:00:00Z")).unwrap();
            let end = parse_utc(&format!("{}-01-01T00:00:00Z", year + 1)).unwrap();
            assert_eq!(end.duration_since(start).unwrap().as_secs(), days * 86_400);
        }
    }

    #[test]
    fn expired_secrets_stop_verifying_and_are_counted() {
        let list = secrets("new\nold expires=2026-12-31T00:00:00Z");
        let until = at(1_798_675_200);
        assert_eq!(list.expired(until - Duration::from_secs(1)), 0);
        assert_eq!(list.expired(until), 1);
        let old = ElevenLabs::new("old").unwrap();
        let t = 1_798_675_100;
        let mut headers = http::HeaderMap::new();
        headers.insert(ElevenLabs::HEADER, old.sign(t, b"{}").parse().unwrap());
        let scheme = list.scheme().unwrap();
        use hookgate::scheme::Scheme as _;
        let before = scheme.verify(&headers, b"{}", until - Duration::from_secs(1));
        assert_eq!(before.unwrap().secret_index(), 1);
        assert!(scheme.verify(&headers, b"{}", until).is_err());
    }

    #[test]
    fn the_signing_secret_must_not_expire() {
        let error = secrets("old expires=2026-12-31T00:00:00Z\nnew")
            .scheme()
            .unwrap_err();
        assert!(error.contains("first secret"), "{error}");
        assert!(!error.contains("old"), "{error}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = Secrets {
            values: vec![Entry::new("hunter2".into())],
            source: Source::Env,
        };
        assert!(!format!("{secrets:?}").contains("hunter2"));
        let entries = split("hunter2 expires=2026-12-31T00:00:00Z").unwrap();
        assert!(!format!("{entries:?}").contains("hunter2"));
    }
}
