//! TLS for the SMTP client (tokio-rustls). Between MX hosts TLS is opportunistic (RFC 3207,
//! RFC 7435): STARTTLS is used whenever offered, and since without MTA-STS or DANE there is
//! no policy saying which certificate to expect, an unverifiable one does not stop delivery
//! (plain text would be the alternative). It is still checked against the system's roots
//! and the host name, and the outcome is recorded: logged with each delivery and kept in
//! [`TlsOutcome`]. Signatures of the handshake are always verified. A smarthost with
//! required TLS uses the strict verifier.

use std::sync::{Arc, Mutex};

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// How the peer's certificate fared.
#[derive(Debug, Clone, PartialEq)]
pub enum CertStatus {
    Verified,
    /// Not checked (no trust roots, no certificate): why.
    Unverified(String),
    /// Checked and refused (self-signed, expired, wrong name...): rustls's reason, which a
    /// TLS report classifies (RFC 8460 §4.3.2).
    Rejected(rustls::Error),
}

/// What one handshake learned, for the logs.
#[derive(Debug, Clone, Default)]
pub struct TlsOutcome {
    pub cert: Option<CertStatus>,
}

/// The system's trust roots, loaded once.
pub fn root_store() -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for err in &loaded.errors {
        tracing::debug!(error = %err, "loading system trust roots");
    }
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    tracing::debug!(added, "system trust roots for outbound TLS");
    Arc::new(roots)
}

/// The system's roots plus the certificates of a PEM file (a relay with a private CA).
pub fn root_store_with(pem: &std::path::Path) -> Result<Arc<rustls::RootCertStore>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = (*root_store()).clone();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(pem)
        .map_err(|e| format!("{}: {e}", pem.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", pem.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", pem.display()));
    }
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 || added == 0 {
        return Err(format!(
            "{}: {ignored} certificates unusable",
            pem.display()
        ));
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that verifies strictly (a smarthost with required TLS).
pub fn strict_config(roots: Arc<rustls::RootCertStore>) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client config for opportunistic TLS, and the slot its one handshake reports into.
pub fn opportunistic_config(
    roots: Arc<rustls::RootCertStore>,
) -> (Arc<rustls::ClientConfig>, Arc<Mutex<TlsOutcome>>) {
    let outcome = Arc::new(Mutex::new(TlsOutcome::default()));
    let inner = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .ok()
    };
    let verifier = Arc::new(Opportunistic {
        inner,
        outcome: outcome.clone(),
        schemes: provider()
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    (Arc::new(config), outcome)
}

#[derive(Debug)]
struct Opportunistic {
    inner: Option<Arc<WebPkiServerVerifier>>,
    outcome: Arc<Mutex<TlsOutcome>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let status = match &self.inner {
            None => CertStatus::Unverified("no trust roots on this system".into()),
            Some(inner) => {
                match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                    Ok(_) => CertStatus::Verified,
                    Err(e) => CertStatus::Rejected(e),
                }
            }
        };
        if let Ok(mut slot) = self.outcome.lock() {
            slot.cert = Some(status);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}
