//! Command-line and environment settings of every subcommand.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Otherwise ELEVENLABS_WEBHOOK_SECRET, otherwise the development secret `serve` creates.
    #[arg(long, env = "HOOKGATE_SECRET_FILE")]
    pub(crate) secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to receive deliveries on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "HOOKGATE_LISTEN")]
    pub(crate) listen: SocketAddr,
    /// Path deliveries are POSTed to.
    #[arg(long, default_value = "/webhooks/elevenlabs", env = "HOOKGATE_PATH")]
    pub(crate) path: String,
    /// Address for /healthz and Prometheus /metrics (off when not set).
    #[arg(long, env = "HOOKGATE_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// Forward verified deliveries to this URL (reverse proxy) instead of the sink directory.
    #[arg(long, env = "HOOKGATE_UPSTREAM")]
    pub(crate) upstream: Option<String>,
    /// Seconds to wait for a connection to the upstream.
    #[arg(
        long,
        default_value_t = 2.0,
        env = "HOOKGATE_UPSTREAM_CONNECT_TIMEOUT",
        value_parser = positive_seconds
    )]
    pub(crate) upstream_connect_timeout: f64,
    /// Seconds to wait for the upstream's answer.
    #[arg(
        long,
        default_value_t = 10.0,
        env = "HOOKGATE_UPSTREAM_TIMEOUT",
        value_parser = positive_seconds
    )]
    pub(crate) upstream_timeout: f64,
    /// Directory verified deliveries are stored in (when no --upstream is given).
    #[arg(long, default_value = "./events", env = "HOOKGATE_SINK_DIR")]
    pub(crate) sink_dir: PathBuf,
    /// Largest body accepted, in bytes.
    #[arg(long, default_value_t = 32 << 20, env = "HOOKGATE_MAX_BODY_BYTES")]
    pub(crate) max_body_bytes: usize,
    /// How old a signed timestamp may be, in seconds.
    #[arg(long, default_value_t = 1800, env = "HOOKGATE_TOLERANCE")]
    pub(crate) tolerance: u64,
    /// Requests per second allowed per client before verification (0 turns the limit off).
    #[arg(long, default_value_t = 50, env = "HOOKGATE_CLIENT_RATE")]
    pub(crate) client_rate: u32,
    /// Burst allowed per client on top of the rate.
    #[arg(long, default_value_t = 100, env = "HOOKGATE_CLIENT_BURST")]
    pub(crate) client_burst: u32,
    /// Failed verifications (400/401) per client per minute before it is blocked (0: never block).
    #[arg(long, default_value_t = 30, env = "HOOKGATE_MAX_FAILURES_PER_MINUTE")]
    pub(crate) max_failures_per_minute: u32,
    /// Seconds a client that kept failing verification stays blocked.
    #[arg(long, default_value_t = 300, env = "HOOKGATE_FAILURE_COOLDOWN")]
    pub(crate) failure_cooldown: u64,
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
    #[arg(long, env = "HOOKGATE_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM / Ctrl-C.
    #[arg(long, default_value_t = 30, env = "HOOKGATE_SHUTDOWN_GRACE")]
    pub(crate) shutdown_grace: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Receiver to POST to (http:// or https://).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/webhooks/elevenlabs",
        env = "HOOKGATE_SEND_URL"
    )]
    pub(crate) url: String,
    /// Body to send (its exact bytes) instead of the sample speech-to-text transcript; every
    /// event of a --count run then carries the same bytes.
    #[arg(long, conflicts_with = "body_bytes")]
    pub(crate) file: Option<PathBuf>,
    /// Pad the sample transcript's text so that each body is exactly this many bytes
    /// (e.g. 4096 for load tests).
    #[arg(long, value_name = "BYTES")]
    pub(crate) body_bytes: Option<usize>,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// Multiply every retry wait by this (e.g. 0.001 in tests).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_seconds)]
    pub(crate) time_scale: f64,
    /// Attempts per event, at most the 5 of the ElevenLabs schedule
    /// (immediately, then after 30 s, 2 min, 8 min and 30 min).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(crate) max_attempts: u8,
    /// Seconds one attempt (connect, send, read the answer) may take before it counts as failed.
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    pub(crate) timeout: f64,
    /// PEM file of CA certificates to trust for https:// (e.g. a local self-signed
    /// certificate) instead of the system's (SSL_CERT_FILE or the usual bundle paths).
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Deliveries to send (each a distinct event); more than 1 makes a load generator.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: u64,
    /// Deliveries in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
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
    #[arg(long)]
    pub(crate) timestamp: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The ElevenLabs-Signature header value to check.
    #[arg(long)]
    pub(crate) header: String,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    /// How old a signed timestamp may be, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub(crate) tolerance: u64,
    /// How far ahead of this machine's clock a signed timestamp may be, in seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) future_skew: u64,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Seconds to measure each body size for (each of the floor and hookgate).
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub(crate) seconds: f64,
    /// Body sizes to measure, in bytes, comma-separated (default 1 KiB, 4 KiB, 64 KiB, 1 MiB,
    /// 16 MiB).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = crate::bench::DEFAULT_SIZES,
        value_parser = bench_size
    )]
    pub(crate) sizes: Vec<usize>,
}

fn bench_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if (1..=crate::bench::MAX_SIZE).contains(&bytes) => Ok(bytes),
        _ => Err(format!(
            "expected a whole number of bytes from 1 to {}",
            crate::bench::MAX_SIZE
        )),
    }
}

fn non_negative_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && (0.0..=1e6).contains(&value) {
        Ok(value)
    } else {
        Err("expected a number from 0 to 1000000".into())
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match non_negative_seconds(text)? {
        value if value > 0.0 => Ok(value),
        _ => Err("expected a number above 0".into()),
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
