//! DANE for SMTP (RFC 7672): an MX host whose MX RRset, addresses and TLSA RRset
//! (`_<port>._tcp.<host>`) are all DNSSEC-validated must present a certificate those records
//! match, over STARTTLS, or it gets no mail. Only the usages RFC 7672 §3.1 gives SMTP count:
//! DANE-EE(3), where the record pins the server's own certificate or key and neither its
//! names nor its dates matter (§3.1.1), and DANE-TA(2), where it pins a trust anchor in the
//! server's chain and the certificate must chain to it and name the host (§3.1.2, §3.2).
//! PKIX-TA(0)/PKIX-EE(1) records are unusable (§3.1.3); a secure RRset with none usable still
//! makes TLS mandatory, unauthenticated (§2.2).

use std::sync::Arc;

use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_resolver::proto::rr::{RData, RecordType};
use sha2::Digest;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::dnssec::{DnssecError, SecureDns};

/// Which certificate a record pins (RFC 6698 §2.1.1), of the two usable in SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// DANE-TA(2): a CA certificate in the server's chain.
    TrustAnchor,
    /// DANE-EE(3): the server's own certificate.
    EndEntity,
}

/// One usable TLSA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: Usage,
    /// The whole certificate (0) or its SubjectPublicKeyInfo (1).
    pub spki: bool,
    pub matching: Matching,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether `cert` (DER) is what this record pins.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = if self.spki {
            match webpki::EndEntityCert::try_from(cert) {
                Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            }
        } else {
            cert.as_ref().to_vec()
        };
        match self.matching {
            Matching::Raw => selected == self.data,
            Matching::Sha256 => sha2::Sha256::digest(&selected).as_slice() == self.data,
            Matching::Sha512 => sha2::Sha512::digest(&selected).as_slice() == self.data,
            _ => false,
        }
    }
}

/// What DNS says about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDane {
    /// No validated TLSA records: DANE does not apply (an MTA-STS policy may).
    NotProtected,
    /// Validated TLSA records, none usable: TLS required, certificate not checked (§2.2).
    Unusable,
    /// Validated, usable records: the certificate must match one of them.
    Records(Arc<Vec<Tlsa>>),
}

/// Why a host may not be used now: a validating resolver failed (SERVFAIL: bogus data, or
/// the zone is unreachable). RFC 7672 §2.2: such a host is skipped, mail is deferred.
#[derive(Debug, thiserror::Error)]
pub enum DaneError {
    #[error("{0}")]
    Dns(#[from] DnssecError),
    #[error("DNSSEC lookup of {name} {rtype} failed ({rcode}): bogus or unreachable")]
    Lookup {
        name: String,
        rtype: RecordType,
        rcode: String,
    },
}

/// The TLSA records that protect `host` on `port`: only looked up when its address records
/// are validated (§2.2.2), else the host is [`HostDane::NotProtected`].
pub async fn host(dns: &SecureDns, host: &str, port: u16) -> Result<HostDane, DaneError> {
    let addresses = dns.query(host, RecordType::A).await?;
    check(&addresses, host, RecordType::A)?;
    if !addresses.secure {
        return Ok(HostDane::NotProtected);
    }
    let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
    let answer = dns.query(&name, RecordType::TLSA).await?;
    check(&answer, &name, RecordType::TLSA)?;
    if !answer.secure {
        return Ok(HostDane::NotProtected);
    }
    let mut seen = false;
    let mut usable = Vec::new();
    for data in answer.data(RecordType::TLSA) {
        let RData::TLSA(tlsa) = data else { continue };
        seen = true;
        let usage = match tlsa.cert_usage {
            CertUsage::DaneEe => Usage::EndEntity,
            CertUsage::DaneTa => Usage::TrustAnchor,
            _ => continue,
        };
        let spki = match tlsa.selector {
            Selector::Full => false,
            Selector::Spki => true,
            _ => continue,
        };
        if !matches!(
            tlsa.matching,
            Matching::Raw | Matching::Sha256 | Matching::Sha512
        ) {
            continue;
        }
        usable.push(Tlsa {
            usage,
            spki,
            matching: tlsa.matching,
            data: tlsa.cert_data.clone(),
        });
    }
    Ok(match (seen, usable.is_empty()) {
        (false, _) => HostDane::NotProtected,
        (true, true) => HostDane::Unusable,
        (true, false) => HostDane::Records(Arc::new(usable)),
    })
}

/// Whether the MX RRset of `domain` is validated (DANE needs it, §2.2.1). `Err` when the
/// resolver failed on it.
pub async fn mx_secure(dns: &SecureDns, domain: &str) -> Result<bool, DaneError> {
    let answer = dns.query(domain, RecordType::MX).await?;
    check(&answer, domain, RecordType::MX)?;
    Ok(answer.secure)
}

fn check(answer: &super::dnssec::Answer, name: &str, rtype: RecordType) -> Result<(), DaneError> {
    if answer.answered() {
        Ok(())
    } else {
        Err(DaneError::Lookup {
            name: name.to_string(),
            rtype,
            rcode: answer.rcode.to_string(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a DANE-protected connection checks: the host's records, and the reference
/// identifiers a DANE-TA chain may name (§3.2.2): the MX host and the next-hop domain.
#[derive(Debug, Clone)]
pub struct DaneCheck {
    pub records: Arc<Vec<Tlsa>>,
    pub names: Vec<String>,
}

impl DaneCheck {
    /// A client config whose certificate check is the TLSA records'.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config(self.records.clone(), self.names.clone())
    }
}

fn client_config(records: Arc<Vec<Tlsa>>, names: Vec<String>) -> Arc<rustls::ClientConfig> {
    let verifier = Arc::new(DaneVerifier {
        records,
        names,
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
    Arc::new(config)
}

#[derive(Debug)]
struct DaneVerifier {
    records: Arc<Vec<Tlsa>>,
    names: Vec<String>,
    schemes: Vec<SignatureScheme>,
}

impl DaneVerifier {
    /// DANE-TA: a certificate of the chain the record pins becomes the one trust anchor, and
    /// the server's certificate must chain to it and name one of `names` (within its dates).
    fn trust_anchor_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut last = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        for record in self
            .records
            .iter()
            .filter(|r| r.usage == Usage::TrustAnchor)
        {
            for anchor in intermediates.iter().filter(|c| record.matches(c)) {
                let mut roots = rustls::RootCertStore::empty();
                if roots.add(anchor.clone().into_owned()).is_err() {
                    continue;
                }
                let Ok(webpki) =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                else {
                    continue;
                };
                for name in &self.names {
                    let Ok(server_name) = ServerName::try_from(name.clone()) else {
                        continue;
                    };
                    match webpki.verify_server_cert(
                        end_entity,
                        intermediates,
                        &server_name,
                        &[],
                        now,
                    ) {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e,
                    }
                }
            }
        }
        Err(last)
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // §3.1.1: a DANE-EE match is the whole check.
        if self
            .records
            .iter()
            .any(|r| r.usage == Usage::EndEntity && r.matches(end_entity))
        {
            return Ok(ServerCertVerified::assertion());
        }
        let has_anchor_records = self.records.iter().any(|r| r.usage == Usage::TrustAnchor);
        if has_anchor_records {
            return match self.trust_anchor_chain(end_entity, intermediates, now) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                // No pinned anchor in the chain at all: the records do not match.
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::ApplicationVerificationFailure,
                    ))
                }
                Err(e) => Err(e),
            };
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let spki = key.public_key_der();
        let params = rcgen::CertificateParams::new(vec!["mx.example.test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), spki)
    }

    #[test]
    fn records_match_the_certificate_or_its_key_by_each_matching_type() {
        let (der, spki) = cert();
        let record = |spki_sel: bool, matching, data: Vec<u8>| Tlsa {
            usage: Usage::EndEntity,
            spki: spki_sel,
            matching,
            data,
        };
        assert!(record(true, Matching::Sha256, sha2::Sha256::digest(&spki).to_vec()).matches(&der));
        assert!(record(true, Matching::Sha512, sha2::Sha512::digest(&spki).to_vec()).matches(&der));
        assert!(record(true, Matching::Raw, spki.clone()).matches(&der));
        assert!(record(
            false,
            Matching::Sha256,
            sha2::Sha256::digest(der.as_ref()).to_vec()
        )
        .matches(&der));
        assert!(record(false, Matching::Raw, der.as_ref().to_vec()).matches(&der));
        // Another key, a selector mix-up, a truncated hash.
        let (other, _) = cert();
        assert!(
            !record(true, Matching::Sha256, sha2::Sha256::digest(&spki).to_vec()).matches(&other)
        );
        assert!(!record(
            false,
            Matching::Sha256,
            sha2::Sha256::digest(&spki).to_vec()
        )
        .matches(&der));
        assert!(!record(
            true,
            Matching::Sha256,
            sha2::Sha256::digest(&spki)[..31].to_vec()
        )
        .matches(&der));
    }
}
