//! Greylisting (off by default, `filter.greylisting`): the first attempt of a (client
//! network, sender, recipients) triplet is answered "try again later" (451 4.7.1 at the MX);
//! a retry after `filter.greylist_delay` passes, and the triplet stays known while it keeps
//! coming (`filter.greylist_lifetime`), Postgrey's defaults: 5 minutes, 35 days. Clients
//! are grouped by /24 (IPv4) and /64 (IPv6), since big senders retry from another address of
//! their pool. The triplets are in the database, so every filter replica agrees.

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::Digest;

use super::{Check, Outcome, Scan};
use crate::engine::Action;

#[derive(Debug, Clone)]
pub struct GreylistSettings {
    pub delay: Duration,
    pub lifetime: Duration,
    /// Clients never greylisted (our relays).
    pub local: Vec<ipnet::IpNet>,
}

pub struct Greylist {
    store: postbay_store::Store,
    settings: GreylistSettings,
    prune: super::EveryGate,
}

/// The triplet's key: SHA-256 hex of the client's network, the sender and the recipients
/// (lower case, sorted).
pub fn triplet(ip: IpAddr, sender: &str, recipients: &[String]) -> String {
    let network = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let mut rcpts: Vec<String> = recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
    rcpts.sort();
    rcpts.dedup();
    let text = format!(
        "{network}\n{}\n{}",
        sender.to_ascii_lowercase(),
        rcpts.join(",")
    );
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Greylist {
    pub fn new(store: postbay_store::Store, settings: GreylistSettings) -> Greylist {
        Greylist {
            store,
            settings,
            prune: super::EveryGate::default(),
        }
    }
}

impl Check for Greylist {
    fn name(&self) -> &'static str {
        "greylist"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let env = scan.envelope;
            let Some(ip) = env.outside_client(&self.settings.local) else {
                return out;
            };
            let key = triplet(ip, env.mail_from.as_deref().unwrap_or(""), &env.rcpt_to);
            let now = postbay_store::now_unix();
            let lifetime = self.settings.lifetime.as_secs() as i64;
            // Old triplets go at most once an hour per process.
            if self.prune.due(now, 3600) {
                match self.store.greylist_prune(now - lifetime).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(removed = n, "old greylisting triplets removed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning greylisting triplets"),
                }
            }
            match self
                .store
                .greylist(&key, now, self.settings.delay.as_secs() as i64, lifetime)
                .await
            {
                Ok(postbay_store::greylist::Grey::Pass) => {
                    out.add("GREYLIST_PASS", 0.0, "triplet seen before", Vec::new());
                }
                Ok(postbay_store::greylist::Grey::Wait(secs)) => {
                    out.add(
                        "GREYLIST",
                        0.0,
                        "first attempt of this triplet",
                        vec![format!("retry in {secs}s")],
                    );
                    out.force = Some((Action::Greylist, "Greylisted, try again later".into()));
                }
                // The database is down: greylisting must not stop mail.
                Err(e) => tracing::warn!(error = %e, "greylisting skipped"),
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::triplet;

    #[test]
    fn triplets_group_networks_and_ignore_case_and_order() {
        let a = triplet(
            "192.0.2.1".parse().unwrap(),
            "A@x.test",
            &["b@y.test".into(), "c@y.test".into()],
        );
        let b = triplet(
            "192.0.2.200".parse().unwrap(),
            "a@X.TEST",
            &["C@y.test".into(), "b@y.test".into()],
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            triplet(
                "192.0.3.1".parse().unwrap(),
                "a@x.test",
                &["b@y.test".into(), "c@y.test".into()]
            )
        );
        assert_ne!(
            a,
            triplet(
                "192.0.2.1".parse().unwrap(),
                "other@x.test",
                &["b@y.test".into(), "c@y.test".into()]
            )
        );
        let v6 = |s: &str| triplet(s.parse().unwrap(), "", &[]);
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(a.len(), 64);
    }
}
