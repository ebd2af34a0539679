//! Where the webhook secrets come from: a secret file, the environment, or (for a first run) a
//! development secret `serve` creates. Never from a flag's value, so never in `ps` output.

use std::{fmt, fs, io::Write, path::Path};

use hookgate::scheme::ElevenLabs;

use crate::cli::SecretArgs;

/// The environment variable holding the secret(s), comma-separated for rotation.
pub(crate) const SECRET_ENV: &str = "ELEVENLABS_WEBHOOK_SECRET";

/// Where `serve` keeps the development secret it creates when none is configured; `send`,
/// `sign` and `verify` find it there.
pub(crate) const DEV_SECRET_FILE: &str = ".hookgate-dev-secret";

/// The configured secrets, first one signing. `Debug` shows only how many.
pub(crate) struct Secrets {
    values: Vec<String>,
    pub(crate) source: Source,
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
        let mut scheme = ElevenLabs::new(first).map_err(|e| e.to_string())?;
        for value in values {
            scheme = scheme.with_secret(value).map_err(|e| e.to_string())?;
        }
        Ok(scheme)
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn is_development(&self) -> bool {
        matches!(self.source, Source::DevFile | Source::DevCreated)
    }
}

/// Splits a secret list on commas and newlines, dropping surrounding whitespace and empties.
fn split(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The configured secrets: `--secret-file`, then `ELEVENLABS_WEBHOOK_SECRET`, then the
/// development secret file. `Ok(None)` when there is none anywhere.
pub(crate) fn load(args: &SecretArgs) -> Result<Option<Secrets>, String> {
    if let Some(path) = &args.secret_file {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let values = split(&text);
        if values.is_empty() {
            return Err(format!("secret file {} holds no secret", path.display()));
        }
        let source = Source::File(path.display().to_string());
        return Ok(Some(Secrets { values, source }));
    }
    if let Ok(text) = std::env::var(SECRET_ENV) {
        let values = split(&text);
        if values.is_empty() {
            return Err(format!("{SECRET_ENV} is set but holds no secret"));
        }
        return Ok(Some(Secrets {
            values,
            source: Source::Env,
        }));
    }
    match fs::read_to_string(DEV_SECRET_FILE) {
        Ok(text) if !split(&text).is_empty() => Ok(Some(Secrets {
            values: split(&text),
            source: Source::DevFile,
        })),
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
    write_private(Path::new(DEV_SECRET_FILE), &secret)
        .map_err(|e| format!("cannot write {DEV_SECRET_FILE}: {e}"))?;
    Ok(Secrets {
        values: vec![secret],
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

    #[test]
    fn secret_lists_split_on_commas_and_lines() {
        assert_eq!(split(" a, b\nc\n\n,"), ["a", "b", "c"]);
        assert!(split(" , \n").is_empty());
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = Secrets {
            values: vec!["hunter2".into()],
            source: Source::Env,
        };
        assert!(!format!("{secrets:?}").contains("hunter2"));
    }
}
