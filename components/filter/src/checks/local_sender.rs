//! A sender claiming one of our own domains from outside: the From domain is a domain this
//! installation hosts, yet the client neither logged in nor is one of our relays. The check
//! reports `FROM_LOCAL_DOMAIN` (no score); the engine turns it into `FORGED_LOCAL_SENDER`
//! when no SPF, DKIM or DMARC pass vouches for the message (a composite, as Rspamd's).

use futures::future::BoxFuture;

use super::{Check, Outcome, Scan};

pub struct LocalSender {
    store: postbay_store::Store,
    local: Vec<ipnet::IpNet>,
}

impl LocalSender {
    /// `local`: our relays (`filter.local_networks`), whose mail is ours by definition.
    pub fn new(store: postbay_store::Store, local: Vec<ipnet::IpNet>) -> LocalSender {
        LocalSender { store, local }
    }
}

/// The symbol this check reports and the composite the engine derives from it.
pub const FROM_LOCAL_DOMAIN: &str = "FROM_LOCAL_DOMAIN";
pub const FORGED_LOCAL_SENDER: &str = "FORGED_LOCAL_SENDER";
/// Any of these means some authentication passed for the message.
pub const VOUCHERS: &[&str] = &["DMARC_POLICY_ALLOW", "R_DKIM_ALLOW", "R_SPF_ALLOW"];

impl Check for LocalSender {
    fn name(&self) -> &'static str {
        "local_sender"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let env = scan.envelope;
            if env.outside_client(&self.local).is_none() {
                return out;
            }
            let Some(domain) = scan
                .message
                .and_then(|m| m.from())
                .and_then(|f| f.first())
                .and_then(|a| a.address())
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase())
            else {
                return out;
            };
            match self.store.is_local_domain(&domain).await {
                Ok(true) => out.add(
                    FROM_LOCAL_DOMAIN,
                    0.0,
                    "From is a domain hosted here",
                    vec![domain],
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "local domain lookup failed"),
            }
            out
        })
    }
}
