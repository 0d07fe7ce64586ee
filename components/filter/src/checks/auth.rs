//! Sender authentication with mail-auth: SPF (RFC 7208) for the envelope sender, DKIM
//! (RFC 6376; RSA and Ed25519, RFC 8463), ARC (RFC 8617) and DMARC (RFC 7489: identifier
//! alignment, `p=`, `sp=` for subdomains; mail-auth follows DMARCbis, where `pct` became
//! the testing flag `t=y`, which disables enforcement here). One check, because DMARC needs
//! the SPF and DKIM results; its results become our Authentication-Results (RFC 8601).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::BoxFuture;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::ResolverOpts;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};

use super::{Check, Outcome, Scan};
use crate::engine::Action;

pub struct Authentication {
    auth: MessageAuthenticator,
    timeout: Duration,
    local: Vec<ipnet::IpNet>,
}

#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct ResolverError(String);

impl ResolverError {
    pub fn new(reason: String) -> ResolverError {
        ResolverError(reason)
    }
}

impl Authentication {
    /// `nameservers` empty: the system's (`/etc/resolv.conf`). Tests and sites with a local
    /// resolver name theirs (UDP and TCP, any port).
    pub fn new(
        nameservers: &[SocketAddr],
        timeout: Duration,
        local: Vec<ipnet::IpNet>,
    ) -> Result<Self, ResolverError> {
        let auth = if nameservers.is_empty() {
            MessageAuthenticator::new_system_conf()
        } else {
            let mut opts = ResolverOpts::default();
            opts.timeout = timeout / 2;
            opts.attempts = 1;
            MessageAuthenticator::new(postbay_net::dns::nameservers_config(nameservers), opts)
        }
        .map_err(|e| ResolverError(e.to_string()))?;
        Ok(Authentication {
            auth,
            timeout,
            local,
        })
    }

    async fn verify(&self, scan: &Scan<'_>, ip: IpAddr, out: &mut Outcome) {
        let Some(message) = AuthenticatedMessage::parse(scan.raw) else {
            return;
        };
        let env = scan.envelope;
        let helo = env.helo.as_deref().unwrap_or("");
        let mail_from = env.mail_from.as_deref().unwrap_or("");
        let host = scan.authserv_id;
        let spf = self
            .auth
            .verify_spf(SpfParameters::verify(ip, helo, host, mail_from))
            .await;
        let dkim = self.auth.verify_dkim(&message).await;
        let arc = self.auth.verify_arc(&message).await;
        let spf_domain = env.mail_from_domain().unwrap_or(helo);
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&message, &dkim, spf_domain, &spf))
            .await;

        let (name, score) = match spf.result() {
            SpfResult::Pass => ("R_SPF_ALLOW", -0.2),
            SpfResult::Fail => ("R_SPF_FAIL", 1.0),
            SpfResult::SoftFail => ("R_SPF_SOFTFAIL", 0.0),
            SpfResult::Neutral => ("R_SPF_NEUTRAL", 0.0),
            SpfResult::TempError => ("R_SPF_DNSFAIL", 0.0),
            SpfResult::PermError => ("R_SPF_PERMFAIL", 0.0),
            SpfResult::None => ("R_SPF_NA", 0.0),
        };
        out.add(
            name,
            score,
            "SPF result for the envelope sender",
            vec![spf_domain.into()],
        );

        let dkim_symbol = |r: &DkimResult| match r {
            DkimResult::Pass => ("R_DKIM_ALLOW", -0.2),
            DkimResult::Fail(_) | DkimResult::Neutral(_) => ("R_DKIM_REJECT", 1.0),
            DkimResult::TempError(_) => ("R_DKIM_TEMPFAIL", 0.0),
            DkimResult::PermError(_) => ("R_DKIM_PERMFAIL", 0.0),
            DkimResult::None => ("R_DKIM_NA", 0.0),
        };
        if dkim.is_empty() {
            out.add("R_DKIM_NA", 0.0, "No DKIM signature", vec![]);
        }
        for d in &dkim {
            let (name, score) = dkim_symbol(d.result());
            if !out.has(name) {
                let domain = d.signature().map(|s| s.d.clone()).unwrap_or_default();
                out.add(name, score, "DKIM signature result", vec![domain]);
            }
        }
        let (name, score) = match arc.result() {
            DkimResult::Pass => ("ARC_ALLOW", -1.0),
            DkimResult::None => ("ARC_NA", 0.0),
            DkimResult::TempError(_) => ("ARC_DNSFAIL", 0.0),
            _ => ("ARC_REJECT", 1.0),
        };
        out.add(name, score, "ARC chain result", vec![]);

        let domain = dmarc.domain().to_string();
        let testing = dmarc.dmarc_record().is_some_and(|r| r.t);
        match dmarc.result() {
            DmarcResult::Pass => out.add("DMARC_POLICY_ALLOW", -0.5, "DMARC pass", vec![domain]),
            DmarcResult::None => out.add("DMARC_NA", 0.0, "No DMARC record", vec![]),
            DmarcResult::TempError(_) => out.add("DMARC_DNSFAIL", 0.0, "DMARC DNS error", vec![]),
            DmarcResult::PermError(_) => {
                out.add("DMARC_BAD_POLICY", 0.5, "Broken DMARC record", vec![domain])
            }
            DmarcResult::Fail(_) => match (dmarc.policy(), testing) {
                (Policy::Reject, false) => {
                    out.add(
                        "DMARC_POLICY_REJECT",
                        2.0,
                        "DMARC failed, p=reject",
                        vec![domain.clone()],
                    );
                    out.force = Some((
                        Action::Reject,
                        format!("DMARC policy of {domain} rejects this message"),
                    ));
                }
                (Policy::Quarantine, false) => {
                    out.add(
                        "DMARC_POLICY_QUARANTINE",
                        1.5,
                        "DMARC failed, p=quarantine",
                        vec![domain.clone()],
                    );
                    out.force = Some((
                        Action::AddHeader,
                        format!("DMARC policy of {domain} quarantines this message"),
                    ));
                }
                _ => out.add(
                    "DMARC_POLICY_SOFTFAIL",
                    0.1,
                    "DMARC failed, p=none",
                    vec![domain],
                ),
            },
        }

        let header_from = message.from();
        let results = AuthenticationResults::new(scan.authserv_id)
            .with_dkim_results(&dkim, header_from)
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc)
            .to_string();
        out.auth_results
            .extend(results.split(";\r\n\t").skip(1).map(str::to_string));
    }
}

impl Check for Authentication {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            // Without the client's address there is no SPF, and mail from a logged-in user
            // is not the sender's to authenticate.
            let (Some(ip), None) = (scan.envelope.ip, &scan.envelope.user) else {
                return out;
            };
            if self.local.iter().any(|net| net.contains(&ip)) {
                return out;
            }
            if tokio::time::timeout(self.timeout, self.verify(scan, ip, &mut out))
                .await
                .is_err()
            {
                tracing::warn!("sender authentication timed out");
                out = Outcome::default();
                out.add(
                    "AUTH_TIMEOUT",
                    0.0,
                    "SPF/DKIM/DMARC lookups timed out",
                    vec![],
                );
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture;
    use crate::protocol::Envelope;

    /// No client address, or a logged-in sender: nothing to authenticate, no lookups.
    /// (Lookups themselves are tested end to end against a local DNS server,
    /// tests/test_filter.py.)
    #[test]
    fn skips_without_ip_or_with_login() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let check = Authentication::new(
            &["127.0.0.1:9".parse().unwrap()],
            Duration::from_secs(1),
            vec![],
        )
        .unwrap();
        let raw = "From: a@example.org\nSubject: t\n\nhi\n";
        let out = fixture::symbols(&check, raw, &Envelope::default());
        assert!(out.symbols.is_empty() && out.auth_results.is_empty());
        let logged_in = Envelope {
            ip: Some("127.0.0.1".parse().unwrap()),
            user: Some("alice@example.test".into()),
            ..Envelope::default()
        };
        let out = fixture::symbols(&check, raw, &logged_in);
        assert!(out.symbols.is_empty() && out.auth_results.is_empty());
    }
}
