//! HTTPS with rustls (ring provider): HTTP/2 and HTTP/1.1 by ALPN.

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;

use super::Error;

/// A TLS acceptor for the PEM certificate chain and private key at these paths.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let cert_error = |reason: String| Error::TlsCertificate {
        path: cert.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::TlsKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|config| config.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::TlsConfig {
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("hookgate-tls-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let error = acceptor(&missing, &missing).err().unwrap();
        assert!(matches!(error, Error::TlsCertificate { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.pem"), "{error}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let error = acceptor(&empty, &missing).err().unwrap();
        assert!(
            error.to_string().contains("no certificate found"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
