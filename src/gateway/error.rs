//! Why a gateway could not be built or started.

use std::{error::Error as StdError, fmt, io, net::SocketAddr, path::PathBuf};

use crate::ConfigError;

/// Why a gateway could not be built ([`GatewayBuilder::build`](super::GatewayBuilder::build)),
/// started ([`Gateway::serve`](super::Gateway::serve)), or a part of it made on its own
/// ([`Sink::open`](super::Sink::open), [`UpstreamBuilder::build`](super::UpstreamBuilder::build)).
///
/// The message names the setting and the cause; it never holds a secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The delivery path does not start with `/`.
    InvalidPath {
        /// The path as given.
        path: String,
    },
    /// Another process already listens on the address. The gateway's socket is bound without
    /// `SO_REUSEPORT`, so a second instance (an old one with a stale secret) cannot silently
    /// take part of the deliveries.
    AddressInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The listening socket could not be made for another reason.
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// The admin listener (`/healthz`, `/metrics`) could not be bound.
    AdminListen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// The sink directory cannot be created, cleaned of a crash's temp files, or synced.
    SinkDirectory {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The upstream URL is not `http://host[:port][/path][?query]`.
    UpstreamUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS certificate file cannot be read, or holds no certificate.
    TlsCertificate {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS private key file cannot be read, or holds no key.
    TlsKey {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and the key do not make a TLS configuration (they do not belong
    /// together, or the key type is not supported).
    TlsConfig {
        /// What rustls said.
        reason: String,
    },
    /// A setting one of hookgate's layers refuses: a network that is not an address or a CIDR,
    /// a rate it cannot work with.
    InvalidSetting {
        /// Which setting.
        setting: Setting,
        /// Why the layer refused it.
        source: ConfigError,
    },
    /// A worker thread could not be started, or given the listening socket.
    Worker {
        /// What the system said.
        source: io::Error,
    },
}

/// A setting of [`GatewayBuilder`](super::GatewayBuilder) that the layers it configures can
/// refuse ([`Error::InvalidSetting`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// [`trusted_proxies`](super::GatewayBuilder::trusted_proxies).
    TrustedProxies,
    /// [`known_senders`](super::GatewayBuilder::known_senders).
    KnownSenders,
    /// [`allow_ips`](super::GatewayBuilder::allow_ips).
    AllowIps,
    /// [`max_failures_per_minute`](super::GatewayBuilder::max_failures_per_minute) and
    /// [`failure_cooldown`](super::GatewayBuilder::failure_cooldown).
    FailureLimit,
    /// [`dedupe_ttl`](super::GatewayBuilder::dedupe_ttl).
    DedupeTtl,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TrustedProxies => "trusted proxy",
            Self::KnownSenders => "known sender",
            Self::AllowIps => "allow-list",
            Self::FailureLimit => "failure limit",
            Self::DedupeTtl => "dedupe TTL",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPath { path } => write!(f, "path {path:?} must start with /"),
            Self::AddressInUse { addr } => write!(
                f,
                "cannot listen on {addr}: the address is already in use by another process \
                 (another hookgate instance?); stop it or choose another address to listen on"
            ),
            Self::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Self::AdminListen { addr, source } => {
                write!(f, "cannot listen on the admin address {addr}: {source}")
            }
            Self::SinkDirectory { dir, source } => {
                write!(f, "cannot use sink directory {}: {source}", dir.display())
            }
            Self::UpstreamUrl { url, reason } => write!(f, "upstream {url:?}: {reason}"),
            Self::TlsCertificate { path, reason } => {
                write!(f, "TLS certificate {}: {reason}", path.display())
            }
            Self::TlsKey { path, reason } => write!(f, "TLS key {}: {reason}", path.display()),
            Self::TlsConfig { reason } => write!(f, "TLS certificate and key do not fit: {reason}"),
            Self::InvalidSetting { setting, source } => write!(f, "{setting}: {source}"),
            Self::Worker { source } => write!(f, "cannot start the gateway's workers: {source}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Listen { source, .. }
            | Self::AdminListen { source, .. }
            | Self::SinkDirectory { source, .. }
            | Self::Worker { source } => Some(source),
            Self::InvalidSetting { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_setting_and_the_cause() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let in_use = Error::AddressInUse { addr }.to_string();
        assert!(in_use.contains("127.0.0.1:8080"), "{in_use}");
        assert!(in_use.contains("already in use"), "{in_use}");
        let sink = Error::SinkDirectory {
            dir: "events".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(sink
            .to_string()
            .starts_with("cannot use sink directory events: "));
        assert!(sink.source().is_some());
        let path = Error::InvalidPath {
            path: "hook".into(),
        };
        assert_eq!(path.to_string(), r#"path "hook" must start with /"#);
    }
}
