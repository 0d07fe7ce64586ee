//! Which TLS an MX host is held to, and what a TLS report records about it. Per host, in the
//! order RFC 8461 §2 gives: DANE when its records are DNSSEC-validated (RFC 7672), else the
//! domain's MTA-STS policy (`enforce`: listed hosts only, STARTTLS with a certificate valid
//! for the host's name; `testing`: as opportunistic, failures only counted), else
//! opportunistic STARTTLS (RFC 7435).

use std::net::IpAddr;

use tokio_rustls::rustls::{self, CertificateError};

use super::client::{ClientError, Session, TlsMode};
use super::dane::{self, DaneCheck, HostDane};
use super::dnssec::SecureDns;
use super::mta_sts::{Mode, Policy};
use super::tls::CertStatus;
use super::tlsrpt::{FailureKey, PolicyKey, PolicyType, ResultType, TlsRpt};

/// What is known about the recipient domain before its hosts are tried.
#[derive(Debug, Clone)]
pub struct DomainTls {
    pub domain: String,
    /// Its MTA-STS policy in force (enforce or testing).
    pub sts: Option<Policy>,
    /// DANE is on and the domain's MX RRset is validated (RFC 7672 §2.2.1).
    pub mx_secure: bool,
}

/// How to connect to one host.
#[derive(Debug, Clone)]
pub struct HostTls {
    pub tls: TlsMode,
    pub dane: Option<DaneCheck>,
    pub report: Option<Report>,
}

/// What a session to a host under a policy is counted as.
#[derive(Debug, Clone)]
pub struct Report {
    key: PolicyKey,
    /// MTA-STS `testing`: the session went opportunistic; whether the host is in the policy.
    testing: Option<bool>,
}

const OPPORTUNISTIC: HostTls = HostTls {
    tls: TlsMode::Opportunistic,
    dane: None,
    report: None,
};

/// The TLS `host` (an MX name of `d.domain`) is held to; `Err` when it must not be used
/// (a DNSSEC failure, or not in an enforced MTA-STS policy): the reason.
pub async fn for_host(
    secure: &SecureDns,
    rpt: &TlsRpt,
    d: &DomainTls,
    host: &str,
    port: u16,
) -> Result<HostTls, String> {
    if d.mx_secure {
        match dane::host(secure, host, port).await {
            Ok(HostDane::Records(records)) => {
                let key = PolicyKey {
                    policy_type: PolicyType::Tlsa,
                    policy_string: records.iter().map(presentation).collect(),
                    policy_domain: d.domain.clone(),
                    mx_host: vec![host.to_string()],
                };
                return Ok(HostTls {
                    tls: TlsMode::RequireStartTls,
                    dane: Some(DaneCheck {
                        records,
                        names: vec![host.to_string(), d.domain.clone()],
                    }),
                    report: Some(Report { key, testing: None }),
                });
            }
            Ok(HostDane::Unusable) => {
                tracing::info!(
                    mx = host,
                    "TLSA records all unusable: TLS required, unauthenticated (RFC 7672 §2.2)"
                );
                return Ok(HostTls {
                    tls: TlsMode::Encrypt,
                    ..OPPORTUNISTIC
                });
            }
            Ok(HostDane::NotProtected) => {}
            Err(e) => {
                rpt.record(
                    &PolicyKey {
                        policy_type: PolicyType::Tlsa,
                        policy_string: Vec::new(),
                        policy_domain: d.domain.clone(),
                        mx_host: vec![host.to_string()],
                    },
                    Some(FailureKey {
                        result_type: ResultType::DnssecInvalid,
                        receiving_mx_hostname: host.to_string(),
                        receiving_ip: String::new(),
                    }),
                );
                return Err(format!("{host}: DANE: {e}"));
            }
        }
    }
    let Some(policy) = &d.sts else {
        return Ok(OPPORTUNISTIC);
    };
    let key = PolicyKey {
        policy_type: PolicyType::Sts,
        policy_string: policy.text.clone(),
        policy_domain: d.domain.clone(),
        mx_host: policy.mx.clone(),
    };
    let listed = policy.mx_matches(host);
    match policy.mode {
        Mode::Enforce if !listed => {
            rpt.record(
                &key,
                Some(FailureKey {
                    result_type: ResultType::ValidationFailure,
                    receiving_mx_hostname: host.to_string(),
                    receiving_ip: String::new(),
                }),
            );
            Err(format!(
                "{host} is not an MX host of the MTA-STS policy of {} (mode enforce)",
                d.domain
            ))
        }
        Mode::Enforce => Ok(HostTls {
            tls: TlsMode::RequireStartTls,
            dane: None,
            report: Some(Report { key, testing: None }),
        }),
        Mode::Testing => Ok(HostTls {
            tls: TlsMode::Opportunistic,
            dane: None,
            report: Some(Report {
                key,
                testing: Some(listed),
            }),
        }),
        Mode::None => Ok(OPPORTUNISTIC),
    }
}

/// A TLSA record as in a zone file: `3 1 1 <hex>`.
fn presentation(t: &dane::Tlsa) -> String {
    let usage = match t.usage {
        dane::Usage::TrustAnchor => 2,
        dane::Usage::EndEntity => 3,
    };
    let matching = match t.matching {
        hickory_resolver::proto::rr::rdata::tlsa::Matching::Raw => 0,
        hickory_resolver::proto::rr::rdata::tlsa::Matching::Sha256 => 1,
        _ => 2,
    };
    let hex: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
    format!("{usage} {} {matching} {hex}", u8::from(t.spki))
}

impl Report {
    /// The session is up: under a binding policy that is a success; under `testing`, a
    /// success only if the host is listed and its certificate verified.
    pub fn connected(&self, rpt: &TlsRpt, session: &Session, host: &str, ip: IpAddr) {
        let failure = match self.testing {
            None => None,
            Some(listed) => match (&session.tls, listed) {
                (None, _) => Some(ResultType::StarttlsNotSupported),
                (Some(CertStatus::Rejected(e)), _) => Some(certificate_result(e)),
                (Some(CertStatus::Unverified(_)), _) => Some(ResultType::CertificateNotTrusted),
                (Some(CertStatus::Verified), false) => Some(ResultType::ValidationFailure),
                (Some(CertStatus::Verified), true) => None,
            },
        };
        if let Some(result) = failure {
            tracing::info!(mx = host, result = ?result, domain = self.key.policy_domain, "MTA-STS testing: the session would have failed the policy");
        }
        rpt.record(&self.key, failure.map(|r| failed(r, host, ip)));
    }

    /// The session failed; TLS failures are counted, others (no TCP connection, a
    /// timeout before TLS) are not sessions the policy judged.
    pub fn failed(&self, rpt: &TlsRpt, error: &ClientError, host: &str, ip: IpAddr) {
        if let Some(result) = classify(error) {
            rpt.record(&self.key, Some(failed(result, host, ip)));
        }
    }
}

fn failed(result_type: ResultType, host: &str, ip: IpAddr) -> FailureKey {
    FailureKey {
        result_type,
        receiving_mx_hostname: host.to_string(),
        receiving_ip: ip.to_string(),
    }
}

/// The RFC 8460 result type of a failed session, when TLS was what failed.
pub fn classify(error: &ClientError) -> Option<ResultType> {
    match error {
        ClientError::StartTlsMissing => Some(ResultType::StarttlsNotSupported),
        ClientError::Refused {
            stage: "STARTTLS", ..
        } => Some(ResultType::StarttlsNotSupported),
        ClientError::Handshake(e) => Some(certificate_result(e)),
        ClientError::Tls(_) => Some(ResultType::ValidationFailure),
        _ => None,
    }
}

fn certificate_result(e: &rustls::Error) -> ResultType {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ResultType::CertificateExpired
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                ResultType::CertificateNotTrusted
            }
            // A self-signed server certificate (webpki: a CA certificate as end entity).
            CertificateError::Other(other)
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                ResultType::CertificateNotTrusted
            }
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_map_to_rfc_8460_result_types() {
        let cert = |c| ClientError::Handshake(rustls::Error::InvalidCertificate(c));
        assert_eq!(
            classify(&ClientError::StartTlsMissing),
            Some(ResultType::StarttlsNotSupported)
        );
        assert_eq!(
            classify(&cert(CertificateError::NotValidForName)),
            Some(ResultType::CertificateHostMismatch)
        );
        assert_eq!(
            classify(&cert(CertificateError::Expired)),
            Some(ResultType::CertificateExpired)
        );
        assert_eq!(
            classify(&cert(CertificateError::UnknownIssuer)),
            Some(ResultType::CertificateNotTrusted)
        );
        assert_eq!(
            classify(&cert(CertificateError::ApplicationVerificationFailure)),
            Some(ResultType::ValidationFailure)
        );
        assert_eq!(classify(&ClientError::Closed), None, "not a TLS failure");
        assert_eq!(classify(&ClientError::Timeout("the greeting")), None);
    }
}
