//! The HTTP/1.1 client of `send`: one keep-alive connection per worker, plain TCP or rustls.
//!
//! A worker owns its connection outright (no pool lock on the request path) and reconnects when
//! the receiver closes it.

use std::{fmt, path::Path, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where to send: everything about the URL worked out once.
pub(crate) struct Target {
    host: String,
    port: u16,
    /// The `Host` header.
    pub(crate) authority: HeaderValue,
    /// The request target (origin form).
    pub(crate) path: Uri,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Where the system's CA bundle usually is, when `SSL_CERT_FILE` does not say.
const CA_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // macOS, BSDs
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// The roots to trust: `ca_cert` when given, otherwise the system bundle.
fn roots(ca_cert: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let certificates = match ca_cert {
        Some(path) => read_certificates(path)?,
        None => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let path = from_env
                .or_else(|| {
                    CA_BUNDLES
                        .iter()
                        .map(std::path::PathBuf::from)
                        .find(|p| p.is_file())
                })
                .ok_or("no system CA bundle found: pass --ca-cert PEM or set SSL_CERT_FILE")?;
            read_certificates(&path)?
        }
    };
    let mut store = rustls::RootCertStore::empty();
    for certificate in certificates {
        store
            .add(certificate)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    Ok(store)
}

fn tls_connector(ca_cert: Option<&Path>) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots(ca_cert)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Target {
    /// Parses an `http://` or `https://` URL; `ca_cert` is only read for `https://`.
    pub(crate) fn new(url: &str, ca_cert: Option<&Path>) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid --url {url}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("--url {url} must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("invalid path in --url {url}: {e}"))?;
        let tls = if https {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("invalid TLS server name {host}: {e}"))?;
            Some((tls_connector(ca_cert)?, name))
        } else {
            if ca_cert.is_some() {
                tracing::warn!("--ca-cert is ignored for an http:// URL");
            }
            None
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("invalid host in --url {url}: {e}"))?,
            path,
            tls,
        })
    }

    /// Opens a connection and returns its request sender; the connection runs on its own task.
    pub(crate) async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
        match &self.tls {
            None => handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {} failed: {e}", self.host))?;
                handshake(TokioIo::new(stream)).await
            }
        }
    }
}

async fn handshake<I>(io: I) -> Result<http1::SendRequest<Full<Bytes>>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        // The receiver closing an idle keep-alive connection is normal.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A worker's connection, opened on first use and again after the receiver closes it.
pub(crate) struct Connection {
    target: Arc<Target>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.sender.is_some())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// The request headers every delivery carries.
    pub(crate) fn request(&self, body: Bytes, signature: HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.target.path.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.target.authority.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("hookgate/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(hookgate::scheme::ElevenLabs::HEADER, signature);
        request
    }

    /// Sends `request`, reusing the open connection when the receiver kept it alive. A request
    /// the closed connection never sent is sent again on a fresh one. Also returns when the
    /// request was handed to a ready connection (latency leaves out connecting).
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Instant), String> {
        let mut request = request;
        let mut fresh = false;
        loop {
            let kept = match self.sender.take() {
                Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
                None => None,
            };
            let mut sender = match kept {
                Some(sender) => sender,
                None => {
                    fresh = true;
                    self.target.connect().await?
                }
            };
            let sent = Instant::now();
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.sender = Some(sender);
                    return Ok((response, sent));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the kept-alive connection was closed under us.
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(format!("request failed: {}", error.into_error())),
                },
            }
        }
    }

    /// Drops the connection (after a timeout: its state is unknown).
    pub(crate) fn reset(&mut self) {
        self.sender = None;
    }
}
