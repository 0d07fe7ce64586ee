//! Turning PEM bytes into rustls configurations.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::TlsError;

/// TLS 1.3 first; 1.2 stays because many MTAs and mail clients still need it.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// An explicit provider, so nothing depends on a process-wide default being installed.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses all certificates in `pem`; the leaf must come first.
fn parse_chain(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = pem;
    let chain = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            origin: origin.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(origin.to_owned()));
    }
    Ok(chain)
}

/// Parses the first PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key in `pem`.
fn parse_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = pem;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| TlsError::Pem {
            origin: origin.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey(origin.to_owned()))
}

/// Builds the server configuration for a PEM certificate chain and key.
/// `origin` names where they came from, for error messages.
pub(super) fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = parse_chain(cert_pem, origin)?;
    let key = parse_key(key_pem, origin)?;
    let expires = chain
        .first()
        .and_then(|leaf| super::expiry::not_after(leaf));
    // with_single_cert also checks that the key belongs to the leaf certificate.
    let rustls_err = |source| TlsError::Rustls {
        origin: origin.to_owned(),
        source,
    };
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rustls_err)?;
    if let Some(at) = expires {
        postbay_telemetry::certificate_expiry(at);
    }
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the certificates in `cert_pem`
/// (e.g. a self-signed server certificate); for tests and internal clients.
pub fn client_config_trusting(cert_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    const ORIGIN: &str = "trusted certificate PEM";
    let rustls_err = |source| TlsError::Rustls {
        origin: ORIGIN.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(cert_pem, ORIGIN)? {
        roots.add(cert).map_err(rustls_err)?;
    }
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)
        .map_err(rustls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
