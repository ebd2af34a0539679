//! Command-line and environment settings of every subcommand.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::units;

use clap::{parser::ValueSource, ArgMatches, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use hookgate::{
    gateway::{Gateway, GatewayBuilder, Upstream},
    scheme::ElevenLabs,
    store::redis::RedisStore,
};

/// Receive signed webhooks safely, and test receivers by playing the sender.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, about)]
pub(crate) struct Cli {
    /// Log lines as human-readable text or as JSON objects.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HOOKGATE_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,

    /// Read settings from this file instead of the working directory's `.env` (which is read
    /// when present; parent directories never are). Variables already in the environment win.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) env_file: Option<PathBuf>,

    /// More log lines: -v debug, -vv trace (instead of RUST_LOG, default info).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Fewer log lines: warnings and errors only (instead of RUST_LOG).
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// Parsed once at start: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway: verify deliveries and hand them to a sink directory or an upstream.
    Serve(ServeArgs),
    /// Play the sender: sign a sample transcript (or a file) and POST it, retrying as ElevenLabs does.
    Send(SendArgs),
    /// Print the ElevenLabs-Signature header value for the body on stdin.
    Sign(SignArgs),
    /// Check an ElevenLabs-Signature header against the body on stdin.
    Verify(VerifyArgs),
    /// Measure what verification costs on this machine, against the raw HMAC-SHA256 floor.
    Bench(BenchArgs),
}

/// Where the secrets come from (never from a flag's value).
#[derive(Debug, Args)]
pub(crate) struct SecretArgs {
    /// A file holding the webhook secret(s), one per line or comma-separated (the first signs).
    /// A secret may be followed by ` expires=2026-12-31T00:00:00Z` (RFC 3339, UTC): from then
    /// on it no longer verifies. Otherwise ELEVENLABS_WEBHOOK_SECRET (same format), otherwise
    /// the development secret `serve` creates.
    #[arg(short, long, env = "HOOKGATE_SECRET_FILE")]
    pub(crate) secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to receive deliveries on: IP:PORT (0.0.0.0:8080 for every interface), or a bare
    /// PORT, which means loopback (8080 is 127.0.0.1:8080: this machine only). `:PORT` is
    /// refused as ambiguous.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:8080",
        env = "HOOKGATE_LISTEN",
        value_name = "ADDR",
        value_parser = units::listen
    )]
    pub(crate) listen: SocketAddr,
    /// Path deliveries are POSTed to.
    #[arg(long, default_value = "/webhooks/elevenlabs", env = "HOOKGATE_PATH")]
    pub(crate) path: String,
    /// Address for /healthz and Prometheus /metrics (off when not set); same forms as --listen
    /// (a bare PORT is loopback).
    #[arg(
        short,
        long,
        env = "HOOKGATE_ADMIN_LISTEN",
        value_name = "ADDR",
        value_parser = units::listen
    )]
    pub(crate) admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// Forward verified deliveries to this URL (reverse proxy) instead of the sink directory.
    #[arg(short, long, value_name = "URL", env = "HOOKGATE_UPSTREAM")]
    pub(crate) upstream: Option<String>,
    /// How long to wait for a connection to the upstream (`2s`, `500ms`; a plain number is
    /// seconds).
    #[arg(
        long,
        default_value = "2s",
        env = "HOOKGATE_UPSTREAM_CONNECT_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) upstream_connect_timeout: Duration,
    /// How long to wait for the upstream's answer (`10s`, `1m`; a plain number is seconds).
    #[arg(
        long,
        default_value = "10s",
        env = "HOOKGATE_UPSTREAM_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) upstream_timeout: Duration,
    /// Keep all state (per-client limits, failure blocks, deduplication) on this Redis or
    /// Valkey server, shared by every instance using it: redis://host:port[/db] or
    /// redis+unix:///path. A URL holding a password must come from the environment
    /// (HOOKGATE_REDIS_URL, or the .env file), never from the command line, where every local
    /// user can read it.
    #[arg(
        long,
        value_name = "URL",
        env = "HOOKGATE_REDIS_URL",
        hide_env_values = true
    )]
    pub(crate) redis_url: Option<String>,
    /// The namespace of hookgate's Redis keys: instances sharing state need the same one.
    #[arg(long, default_value = "hookgate", env = "HOOKGATE_REDIS_PREFIX")]
    pub(crate) redis_prefix: String,
    /// How long a Redis call may take before the store's failure policy applies
    /// (deduplication: retryable 503; limiters: let through). `250ms`, `1s`; a plain number is
    /// seconds.
    #[arg(
        long,
        default_value = "250ms",
        env = "HOOKGATE_REDIS_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) redis_timeout: Duration,
    /// How long a handled event is remembered: a redelivery or replay within it is answered 200
    /// without reaching the destination (at least the tolerance plus 5 minutes of skew).
    /// `24h`, `2d`; a plain number is seconds.
    #[arg(
        long,
        default_value = "24h",
        env = "HOOKGATE_DEDUPE_TTL",
        value_name = "DURATION",
        value_parser = units::period
    )]
    pub(crate) dedupe_ttl: Duration,
    /// Turn deduplication off (on by default in upstream mode and with --redis-url; in sink
    /// mode without Redis the sink's file names keep one copy of each event).
    #[arg(long, env = "HOOKGATE_NO_DEDUPE")]
    pub(crate) no_dedupe: bool,
    /// Directory verified deliveries are stored in (when no --upstream is given).
    #[arg(
        short = 'd',
        long,
        default_value = "./events",
        env = "HOOKGATE_SINK_DIR"
    )]
    pub(crate) sink_dir: PathBuf,
    /// Largest body accepted: `64MiB`, `512KiB`, `10MB` (KiB/MiB/GiB and K/M/G are powers of
    /// 1024, kB/MB/GB powers of 1000); a plain number is bytes.
    #[arg(
        long,
        default_value = "64MiB",
        env = "HOOKGATE_MAX_BODY_BYTES",
        value_name = "SIZE",
        value_parser = units::size
    )]
    pub(crate) max_body_bytes: usize,
    /// How long a delivery's whole body has to arrive (then a retryable 503 `body_timeout`).
    /// `30s`, `2m`; a plain number is seconds.
    #[arg(
        long,
        default_value = "30s",
        env = "HOOKGATE_BODY_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) body_timeout: Duration,
    /// How old a signed timestamp may be: `30m`, `1h`; a plain number is seconds.
    #[arg(
        long,
        default_value = "30m",
        env = "HOOKGATE_TOLERANCE",
        value_name = "DURATION",
        value_parser = units::period
    )]
    pub(crate) tolerance: Duration,
    /// Requests per second allowed per client before verification (0 turns the limit off).
    #[arg(long, default_value_t = 50, env = "HOOKGATE_CLIENT_RATE")]
    pub(crate) client_rate: u32,
    /// Burst allowed per client on top of the rate.
    #[arg(long, default_value_t = 100, env = "HOOKGATE_CLIENT_BURST")]
    pub(crate) client_burst: u32,
    /// Failed verifications (400/401) per client per minute before it is blocked (0: never block).
    #[arg(long, default_value_t = 30, env = "HOOKGATE_MAX_FAILURES_PER_MINUTE")]
    pub(crate) max_failures_per_minute: u32,
    /// How long a client that kept failing verification stays blocked: `5m`, `1h`; a plain
    /// number is seconds.
    #[arg(
        long,
        default_value = "5m",
        env = "HOOKGATE_FAILURE_COOLDOWN",
        value_name = "DURATION",
        value_parser = units::period
    )]
    pub(crate) failure_cooldown: Duration,
    /// A proxy whose X-Forwarded-For / Forwarded headers are trusted (CIDR; repeatable).
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "HOOKGATE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<String>,
    /// Only accept clients from these networks (CIDR; repeatable).
    #[arg(
        long = "allow-ip",
        value_name = "CIDR",
        env = "HOOKGATE_ALLOW_IPS",
        value_delimiter = ','
    )]
    pub(crate) allow_ips: Vec<String>,
    /// Also allow ElevenLabs' published webhook egress IPs.
    #[arg(long, env = "HOOKGATE_ALLOW_ELEVENLABS_EGRESS")]
    pub(crate) allow_elevenlabs_egress: bool,
    /// PEM certificate chain: serve HTTPS (HTTP/1.1 and HTTP/2) with rustls.
    #[arg(long, requires = "tls_key", env = "HOOKGATE_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", env = "HOOKGATE_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Refuse requests that did not arrive over HTTPS (directly, or per a trusted proxy).
    #[arg(long, env = "HOOKGATE_REQUIRE_HTTPS")]
    pub(crate) require_https: bool,
    /// Worker threads, each with its own listening socket and upstream pool (default: one per core).
    #[arg(short, long, env = "HOOKGATE_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// How long in-flight requests get to finish after SIGTERM / Ctrl-C: `30s`, `2m`; a plain
    /// number is seconds.
    #[arg(
        long,
        default_value = "30s",
        env = "HOOKGATE_SHUTDOWN_GRACE",
        value_name = "DURATION",
        value_parser = units::period
    )]
    pub(crate) shutdown_grace: Duration,
    /// A sender's address (CIDR; repeatable): never rate limited, blocked or capped per client
    /// before verification. ElevenLabs' published egress addresses are known senders unless
    /// --no-elevenlabs-known-senders.
    #[arg(
        long = "known-sender",
        value_name = "CIDR",
        env = "HOOKGATE_KNOWN_SENDERS",
        value_delimiter = ','
    )]
    pub(crate) known_senders: Vec<String>,
    /// Treat ElevenLabs' egress addresses like any other client.
    #[arg(long, env = "HOOKGATE_NO_ELEVENLABS_KNOWN_SENDERS")]
    pub(crate) no_elevenlabs_known_senders: bool,
    /// Connections held at once, in all (default: 10 000, or less to stay under the open-file
    /// limit); more are answered 503 and closed.
    #[arg(long, env = "HOOKGATE_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Connections held at once from one client address (known senders and trusted proxies
    /// excepted); more are answered 503 and closed.
    #[arg(
        long,
        default_value_t = 64,
        env = "HOOKGATE_MAX_CONNECTIONS_PER_CLIENT"
    )]
    pub(crate) max_connections_per_client: usize,
    /// How long a new connection (TLS included) has to deliver its first request head: `10s`;
    /// a plain number is seconds.
    #[arg(
        long,
        default_value = "10s",
        env = "HOOKGATE_REQUEST_HEAD_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) request_head_timeout: Duration,
    /// How long a connection may stay open with no request in flight between requests
    /// (HTTP/1 keep-alive and HTTP/2 alike): `60s`, `5m`; a plain number is seconds.
    #[arg(
        long,
        default_value = "60s",
        env = "HOOKGATE_IDLE_TIMEOUT",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) idle_timeout: Duration,
    /// The time over which repeated rejections of one client for one cause are counted into a
    /// single log line (the first of each is logged at once); a plain number is seconds.
    #[arg(long, hide = true, default_value = "10s", value_parser = units::timeout)]
    pub(crate) rejection_log_interval: Duration,
    /// Once serving, write the addresses the gateway got (`{"listen": "IP:PORT", "admin":
    /// "IP:PORT" or null}`) to this file, for whoever starts it (tests, supervisors).
    #[arg(long, hide = true, value_name = "PATH")]
    pub(crate) ready_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The gateway's settings, per these flags, checking deliveries with `scheme` (which
    /// carries the secrets; its tolerance is set here).
    ///
    /// # Errors
    ///
    /// A Redis URL that does not parse, or that holds credentials but came from the command
    /// line.
    pub(crate) fn gateway(&self, scheme: ElevenLabs) -> Result<GatewayBuilder, String> {
        let scheme = scheme.tolerance(self.tolerance);
        let mut builder = Gateway::builder(scheme)
            .path(&self.path)
            .listen(self.listen)
            .admin_listen(self.admin_listen)
            .sink_dir(&self.sink_dir)
            .max_body_bytes(self.max_body_bytes)
            .body_timeout(self.body_timeout)
            .client_rate(self.client_rate)
            .client_burst(self.client_burst)
            .max_failures_per_minute(self.max_failures_per_minute)
            .failure_cooldown(self.failure_cooldown)
            .trusted_proxies(&self.trusted_proxies)
            .known_senders(&self.known_senders)
            .elevenlabs_known_senders(!self.no_elevenlabs_known_senders)
            .allow_ips(&self.allow_ips)
            .allow_elevenlabs_egress(self.allow_elevenlabs_egress)
            .require_https(self.require_https)
            .shutdown_grace(self.shutdown_grace)
            .max_connections_per_client(self.max_connections_per_client)
            .request_head_timeout(self.request_head_timeout)
            .idle_timeout(self.idle_timeout)
            .rejection_log_interval(self.rejection_log_interval)
            .dedupe_ttl(self.dedupe_ttl);
        if self.no_dedupe {
            builder = builder.dedupe(false);
        }
        if let Some(url) = &self.upstream {
            builder = builder.upstream(
                Upstream::builder(url)
                    .connect_timeout(self.upstream_connect_timeout)
                    .response_timeout(self.upstream_timeout),
            );
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.tls(cert, key);
        }
        if let Some(workers) = self.workers {
            builder = builder.workers(workers);
        }
        if let Some(connections) = self.max_connections {
            builder = builder.max_connections(connections);
        }
        if let Some(url) = &self.redis_url {
            let from_environment = std::env::var(REDIS_URL_ENV).is_ok_and(|env| env == *url);
            if has_credentials(url) && !from_environment {
                return Err(format!(
                    "--redis-url holds a password, and the command line is visible to every \
                     local user: set {REDIS_URL_ENV} in the environment or the .env file instead"
                ));
            }
            let redis = RedisStore::new(url)
                .map_err(|error| format!("--redis-url: {error}"))?
                .prefix(self.redis_prefix.as_str())
                .timeout(self.redis_timeout);
            builder = builder.redis(redis);
        }
        Ok(builder)
    }
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Receiver to POST to (http:// or https://).
    #[arg(
        short,
        long,
        default_value = "http://127.0.0.1:8080/webhooks/elevenlabs",
        env = "HOOKGATE_SEND_URL"
    )]
    pub(crate) url: String,
    /// Body to send (its exact bytes) instead of the sample speech-to-text transcript; every
    /// event of a --count run then carries the same bytes.
    #[arg(short, long, conflicts_with = "body_bytes")]
    pub(crate) file: Option<PathBuf>,
    /// Pad the sample transcript's text so that each body is exactly this size (e.g. `4KiB`
    /// or 4096 for load tests): a plain number is bytes; KiB/MiB and K/M are powers of 1024,
    /// kB/MB powers of 1000.
    #[arg(short, long, value_name = "SIZE", value_parser = units::size)]
    pub(crate) body_bytes: Option<usize>,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// Multiply every retry wait by this (e.g. 0.001 in tests).
    #[arg(long, default_value_t = 1.0, value_parser = time_scale)]
    pub(crate) time_scale: f64,
    /// Attempts per event, at most the 5 of the ElevenLabs schedule
    /// (immediately, then after 30 s, 2 min, 8 min and 30 min).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(crate) max_attempts: u8,
    /// How long one attempt (connect, send, read the answer) may take before it counts as
    /// failed: `30s`, `500ms`; a plain number is seconds.
    #[arg(
        short,
        long,
        default_value = "30s",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) timeout: Duration,
    /// PEM file of CA certificates to trust for https:// (e.g. a local self-signed
    /// certificate) instead of the system's (SSL_CERT_FILE or the usual bundle paths).
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Deliveries to send (each a distinct event); more than 1 makes a load generator: a
    /// progress bar on a terminal (deliveries waiting for a retry counted apart), then a
    /// summary with the throughput over the wall time and excluding the time when deliveries
    /// were only waiting for a retry.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: u64,
    /// Deliveries in flight at once (one keep-alive connection each).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: u16,
    /// OS threads the load generator runs its connections on (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// Unix seconds to sign at (default: now).
    #[arg(short, long)]
    pub(crate) timestamp: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The ElevenLabs-Signature header value to check.
    #[arg(short = 'H', long)]
    pub(crate) header: String,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// How old a signed timestamp may be: `30m`, `1h`; a plain number is seconds.
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = units::period)]
    pub(crate) tolerance: Duration,
    /// How far ahead of this machine's clock a signed timestamp may be: `5m`; a plain number is
    /// seconds.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = units::period)]
    pub(crate) future_skew: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// How long to measure each body size for (each of the floor and hookgate): `1s`,
    /// `250ms`; a plain number is seconds.
    #[arg(
        long,
        default_value = "1s",
        value_name = "DURATION",
        value_parser = units::timeout
    )]
    pub(crate) seconds: Duration,
    /// Body sizes to measure, comma-separated: `1KiB,64KiB,16MiB`; a plain number is bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1KiB,4KiB,64KiB,1MiB,16MiB",
        value_name = "SIZES",
        value_parser = bench_size
    )]
    pub(crate) sizes: Vec<usize>,
    /// Measure even in a debug build, whose figures say nothing about a release build.
    #[arg(long)]
    pub(crate) allow_debug: bool,
}

fn bench_size(text: &str) -> Result<usize, String> {
    let bytes = units::size(text)?;
    if (1..=crate::bench::MAX_SIZE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "{} is out of range: from 1 byte to {}",
            units::human_size(bytes as u64),
            units::human_size(crate::bench::MAX_SIZE as u64)
        ))
    }
}

fn time_scale(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && (0.0..=1e6).contains(&value) {
        Ok(value)
    } else {
        Err("expected a number from 0 to 1000000".into())
    }
}

/// The variable `--redis-url` is read from.
const REDIS_URL_ENV: &str = "HOOKGATE_REDIS_URL";

/// Whether a URL carries a user or a password (`scheme://user:password@host`).
fn has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// The settings file read before the command line is parsed: `--env-file`, else the working
/// directory's `.env` (never a parent directory's). What it set is kept, so that `serve` can
/// say where each setting came from.
#[derive(Debug, Default)]
pub(crate) struct EnvFile {
    /// The file read (absolute) and what chose it (`.env` or `--env-file`).
    read: Option<(PathBuf, &'static str)>,
    /// Variables the file set: they were not in the environment.
    set: Vec<String>,
    /// Variables the file holds that the environment already had: the environment wins.
    overridden: Vec<String>,
    /// A `.env` in a parent directory, which is not read (when the working directory has none).
    unread_parent: Option<PathBuf>,
}

/// The file read when no `--env-file` is given, in the working directory only.
const DEFAULT_ENV_FILE: &str = ".env";

impl EnvFile {
    /// Reads `explicit` (an error when it cannot be read or parsed), else `./.env` when there is
    /// one (a malformed one is reported and ignored), into the environment. Variables already
    /// in the environment keep their value; a variable the file holds twice takes its first
    /// value. Call before any other thread starts.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<Self, String> {
        if let Some(path) = explicit {
            let vars = read_env_file(path)
                .map_err(|e| format!("cannot use --env-file {}: {e}", path.display()))?;
            return Ok(Self::apply(path, "--env-file", vars));
        }
        let path = Path::new(DEFAULT_ENV_FILE);
        match read_env_file(path) {
            Ok(vars) => Ok(Self::apply(path, DEFAULT_ENV_FILE, vars)),
            Err(EnvFileError::Missing) => Ok(Self {
                unread_parent: parent_env_file(),
                ..Self::default()
            }),
            Err(error) => {
                eprintln!("hookgate: ignoring .env: {error}");
                Ok(Self::default())
            }
        }
    }

    fn apply(path: &Path, chosen_by: &'static str, vars: Vec<(String, String)>) -> Self {
        let mut loaded = Self::default();
        for (key, value) in vars {
            if loaded.set.contains(&key) || loaded.overridden.contains(&key) {
                continue;
            }
            if std::env::var_os(&key).is_some() {
                loaded.overridden.push(key);
            } else if value.contains('\0') {
                eprintln!(
                    "hookgate: ignoring {key} in {}: its value holds a NUL byte",
                    path.display()
                );
            } else {
                std::env::set_var(&key, value);
                loaded.set.push(key);
            }
        }
        let path = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_owned());
        loaded.read = Some((path, chosen_by));
        loaded
    }

    /// Logs (at info) the file read and, for every hookgate setting present in the environment,
    /// whether it came from the environment or from the file, and whether a flag or the secret
    /// file overrides it. Never a value. `matches` are the whole command line's.
    pub(crate) fn log_sources(&self, matches: &ArgMatches) {
        match &self.read {
            Some((path, chosen_by)) => tracing::info!(
                "settings read from {chosen_by} ({}); variables already in the environment win over it",
                path.display()
            ),
            None => {
                if let Some(parent) = &self.unread_parent {
                    tracing::info!(
                        "not reading {}: only the working directory's .env (or --env-file) is read",
                        parent.display()
                    );
                }
            }
        }
        for (name, overridden_by) in known_variables(matches) {
            if std::env::var_os(&name).is_none() {
                continue;
            }
            let mut line = match (&self.read, self.set.contains(&name)) {
                (Some((path, chosen_by)), true) => {
                    format!("{name} from {chosen_by} ({})", path.display())
                }
                _ => format!("{name} from the environment"),
            };
            if let (Some((path, chosen_by)), true) = (&self.read, self.overridden.contains(&name)) {
                line.push_str(&format!(
                    ", which wins over {chosen_by} ({}) setting it too",
                    path.display()
                ));
            }
            if let Some(winner) = overridden_by {
                line.push_str(&format!("; unused: {winner} wins"));
            }
            tracing::info!("{line}");
        }
    }
}

/// Every variable hookgate reads (the global and `serve` settings, the secret, `RUST_LOG`),
/// each with what overrides it in this run (a flag on the command line, the secret file).
fn known_variables(matches: &ArgMatches) -> Vec<(String, Option<String>)> {
    fn settings(command: &clap::Command, matches: &ArgMatches) -> Vec<(String, Option<String>)> {
        command
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_env()?.to_string_lossy().into_owned();
                let on_command_line =
                    matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine);
                let flag = arg
                    .get_long()
                    .map(|long| format!("--{long} on the command line"));
                Some((name, flag.filter(|_| on_command_line)))
            })
            .collect()
    }
    let command = Cli::command();
    let mut known = settings(&command, matches);
    let serve = command
        .find_subcommand("serve")
        .zip(matches.subcommand_matches("serve"));
    let secret_file =
        serve.and_then(|(_, serve)| serve.value_source("secret_file").map(|_| "the secret file"));
    if let Some((command, matches)) = serve {
        known.extend(settings(command, matches));
    }
    known.push((
        crate::secrets::SECRET_ENV.to_owned(),
        secret_file.map(str::to_owned),
    ));
    let level_flag = matches.get_count("verbose") > 0 || matches.get_flag("quiet");
    known.push((
        "RUST_LOG".to_owned(),
        level_flag.then(|| "-v/-q on the command line".to_owned()),
    ));
    known
}

/// Why a settings file could not be used. Never shows a line's content: it may hold a secret.
#[derive(Debug)]
enum EnvFileError {
    Missing,
    Unreadable(std::io::Error),
    /// The variable whose line could not be parsed (when it can be told), and its line number.
    Malformed(Option<String>, Option<usize>),
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no such file"),
            Self::Unreadable(error) => write!(f, "{error}"),
            Self::Malformed(name, line) => {
                f.write_str("cannot parse ")?;
                match name {
                    Some(name) => write!(f, "the line setting {name}")?,
                    None => f.write_str("a line")?,
                }
                match line {
                    Some(line) => write!(f, " (line {line})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The variables of a dotenv file, in order, parsed whole before any is set.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let bytes = std::fs::read(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => EnvFileError::Missing,
        _ => EnvFileError::Unreadable(error),
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    dotenvy::from_read_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| match error {
            dotenvy::Error::LineParse(text, _) => {
                // The text is the line, or only its value: find the line it comes from.
                let first = text.lines().next().unwrap_or_default().trim();
                let file = String::from_utf8_lossy(bytes);
                let lines: Vec<&str> = file.lines().collect();
                let found = lines
                    .iter()
                    .position(|line| line.trim() == first)
                    .or_else(|| {
                        lines.iter().position(|line| {
                            line.split_once('=')
                                .is_some_and(|(_, value)| value.trim() == first)
                        })
                    });
                let name = found
                    .and_then(|index| lines[index].split_once('='))
                    .map(|(key, _)| key.trim().trim_start_matches("export ").trim())
                    .filter(|key| {
                        !key.is_empty()
                            && key
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    })
                    .map(str::to_owned);
                EnvFileError::Malformed(name, found.map(|index| index + 1))
            }
            dotenvy::Error::Io(error) => EnvFileError::Unreadable(error),
            _ => EnvFileError::Malformed(None, None),
        })
}

/// The nearest `.env` in a parent of the working directory, if any.
fn parent_env_file() -> Option<PathBuf> {
    let dir = std::env::current_dir().ok()?;
    dir.ancestors()
        .skip(1)
        .map(|dir| dir.join(DEFAULT_ENV_FILE))
        .find(|path| path.is_file())
}

/// Logs go to stderr; `-v`/`-vv`/`-q` choose the level, else `RUST_LOG` filters them (default
/// `info`).
pub(crate) fn init_logging(format: LogFormat, verbose: u8, quiet: bool) {
    use tracing_subscriber::{fmt, EnvFilter};
    let level = match (verbose, quiet) {
        (0, false) => None,
        (_, true) => Some("warn"),
        (1, _) => Some("debug"),
        _ => Some("trace"),
    };
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Span fields written directly: the gateway opens a span per request.
        LogFormat::Json => builder
            .json()
            .fmt_fields(crate::json_fields::JsonSpanFields)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clap's own checks of the definitions: no two flags share a short or long name, every
    /// default parses.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["hookgate"][..], args].concat())
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }

    fn serve(args: &[&str]) -> ServeArgs {
        match parse(&[&["serve"][..], args].concat()).command {
            Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let args = serve(&[]);
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.max_body_bytes, 64 << 20);
        assert_eq!(args.tolerance, Duration::from_secs(1800));
        assert_eq!(args.dedupe_ttl, Duration::from_secs(86_400));
        assert_eq!(args.redis_timeout, Duration::from_millis(250));
        assert_eq!(args.upstream_connect_timeout, Duration::from_secs(2));
        assert_eq!(args.upstream_timeout, Duration::from_secs(10));
        assert_eq!(args.body_timeout, Duration::from_secs(30));
        assert_eq!(args.failure_cooldown, Duration::from_secs(300));
        assert_eq!(args.shutdown_grace, Duration::from_secs(30));
        assert_eq!(args.request_head_timeout, Duration::from_secs(10));
        assert_eq!(args.idle_timeout, Duration::from_secs(60));
        match parse(&["bench"]).command {
            Command::Bench(bench) => {
                assert_eq!(bench.sizes, crate::bench::DEFAULT_SIZES);
                assert_eq!(bench.seconds, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_numbers_keep_their_old_meaning() {
        let args = serve(&[
            "--max-body-bytes",
            "1048576",
            "--tolerance",
            "600",
            "--dedupe-ttl",
            "3600",
            "--redis-timeout",
            "0.5",
            "--upstream-timeout",
            "2.5",
            "--shutdown-grace",
            "5",
            "--listen",
            "0.0.0.0:9000",
        ]);
        assert_eq!(args.max_body_bytes, 1 << 20);
        assert_eq!(args.tolerance, Duration::from_secs(600));
        assert_eq!(args.dedupe_ttl, Duration::from_secs(3600));
        assert_eq!(args.redis_timeout, Duration::from_millis(500));
        assert_eq!(args.upstream_timeout, Duration::from_millis(2500));
        assert_eq!(args.shutdown_grace, Duration::from_secs(5));
        assert_eq!(args.listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn human_units_and_short_flags() {
        let args = serve(&[
            "--max-body-bytes=32MiB",
            "--tolerance=1h",
            "--dedupe-ttl=2d",
            "--redis-timeout=100ms",
            "--body-timeout=1m30s",
            "-l",
            "8081",
            "-a",
            "9090",
            "-u",
            "http://127.0.0.1:9000/hook",
            "-d",
            "/tmp/events",
            "-w",
            "2",
            "-s",
            "secrets.txt",
        ]);
        assert_eq!(args.max_body_bytes, 32 << 20);
        assert_eq!(args.tolerance, Duration::from_secs(3600));
        assert_eq!(args.dedupe_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(args.redis_timeout, Duration::from_millis(100));
        assert_eq!(args.body_timeout, Duration::from_secs(90));
        assert_eq!(args.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(args.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(args.upstream.as_deref(), Some("http://127.0.0.1:9000/hook"));
        assert_eq!(args.sink_dir, PathBuf::from("/tmp/events"));
        assert_eq!(args.workers, Some(2));
        assert_eq!(args.secrets.secret_file, Some(PathBuf::from("secrets.txt")));

        let cli = parse(&[
            "send",
            "-u",
            "http://x/",
            "-n",
            "10",
            "-c",
            "4",
            "-t",
            "500ms",
            "-b",
            "4KiB",
            "-vv",
        ]);
        assert_eq!(cli.verbose, 2);
        match cli.command {
            Command::Send(send) => {
                assert_eq!(send.url, "http://x/");
                assert_eq!(send.count, 10);
                assert_eq!(send.concurrency, 4);
                assert_eq!(send.timeout, Duration::from_millis(500));
                assert_eq!(send.body_bytes, Some(4096));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["verify", "-q", "-H", "t=1,v0=00", "--tolerance", "2h"]).command {
            Command::Verify(verify) => {
                assert_eq!(verify.header, "t=1,v0=00");
                assert_eq!(verify.tolerance, Duration::from_secs(7200));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["sign", "-t", "1600000000"]).command {
            Command::Sign(sign) => assert_eq!(sign.timestamp, Some(1_600_000_000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_the_accepted_forms() {
        for (args, expected) in [
            (
                &["serve", "--max-body-bytes", "lots"][..],
                "expected a size such as",
            ),
            (&["serve", "--tolerance=-5m"], "cannot be negative"),
            (
                &["serve", "--dedupe-ttl", "1e99s"],
                "expected a duration such as",
            ),
            (&["serve", "--upstream-timeout", "0"], "more than 0"),
            (&["serve", "--listen", ":8080"], "0.0.0.0:8080"),
            (
                &["send", "--body-bytes", "99999999999999999999999"],
                "too large",
            ),
            (&["bench", "--sizes", "64MiB"], "out of range"),
            (&["serve", "-v", "-q"], "cannot be used with"),
        ] {
            let error = Cli::try_parse_from([&["hookgate"][..], args].concat())
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"))
                .to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
