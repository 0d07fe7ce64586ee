//! Rate limits (off by default, `filter.ratelimits`), Rspamd's ratelimit module simply: rules
//! like `from:100/1h` allow so many messages per period from one key, the client (`ip`,
//! IPv4 /32, IPv6 /64), the envelope sender (`from`), each recipient (`rcpt`) or the login
//! (`user`). A message over any rule is answered "try again later" (soft reject, 451 4.7.1
//! at the MX) and counts nowhere. The counters are in the database (a sliding window over
//! two fixed windows), so every filter replica counts the same messages. Local networks and
//! logged-in senders are not limited by `ip`, `from` and `rcpt` rules, as for greylisting;
//! `user` rules apply to logged-in mail only.

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::Digest;

use super::{Check, Outcome, Scan};
use crate::engine::Action;

/// What a rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    From,
    Rcpt,
    User,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::From => "from",
            Kind::Rcpt => "rcpt",
            Kind::User => "user",
        }
    }
}

/// One rule: at most `limit` messages per `period` from one key of `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub limit: u64,
    pub period: Duration,
    /// As written in the settings, for the symbol's options.
    pub text: String,
}

impl Rule {
    /// `kind:N/period`: kind `ip`, `from`, `rcpt` or `user`; N a whole number > 0; period a
    /// whole number > 0 with `s`, `m`, `h` or `d` (a bare unit is one of it: `100/h`).
    pub fn parse(spec: &str) -> Result<Rule, String> {
        let text = spec.trim();
        let bad = |why: &str| {
            format!("rate limit {spec:?}: {why} (write kind:N/period, e.g. from:100/1h)")
        };
        let (kind, rate) = text.split_once(':').ok_or_else(|| bad("no kind"))?;
        let kind = match kind.trim().to_ascii_lowercase().as_str() {
            "ip" => Kind::Ip,
            "from" => Kind::From,
            "rcpt" => Kind::Rcpt,
            "user" => Kind::User,
            _ => return Err(bad("the kind is not ip, from, rcpt or user")),
        };
        let (limit, period) = rate.split_once('/').ok_or_else(|| bad("no /period"))?;
        let limit: u64 = limit
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0 && *n <= i64::MAX as u64)
            .ok_or_else(|| bad("the count is not a whole number above 0"))?;
        let period = period.trim();
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad("the period has no unit (s, m, h or d)"))?;
        let (number, unit) = period.split_at(unit_at);
        let number: u64 = if number.is_empty() {
            1
        } else {
            number
                .parse()
                .map_err(|_| bad("the period is not a whole number"))?
        };
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad("the period's unit is not s, m, h or d")),
        };
        let secs = number
            .checked_mul(unit)
            .filter(|s| *s > 0 && *s <= 366 * 86_400)
            .ok_or_else(|| bad("the period is not between 1s and 366d"))?;
        Ok(Rule {
            kind,
            limit,
            period: Duration::from_secs(secs),
            text: text.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct RatelimitSettings {
    pub rules: Vec<Rule>,
    /// Clients not limited by ip, from and rcpt rules (our relays).
    pub local: Vec<ipnet::IpNet>,
}

pub struct Ratelimit {
    store: postbay_store::Store,
    settings: RatelimitSettings,
    prune: super::EveryGate,
}

/// The key of a client address: the address itself (IPv4), its /64 (IPv6).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The bucket of a rule and a key: SHA-256 hex of the kind, the period and the key (so a
/// changed count keeps counting in the same bucket).
pub fn bucket(rule: &Rule, key: &str) -> String {
    let text = format!("{}:{}\n{key}", rule.kind.as_str(), rule.period.as_secs());
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The (rule, key) pairs a message is counted in.
pub fn keys(
    rules: &[Rule],
    local: &[ipnet::IpNet],
    env: &crate::protocol::Envelope,
) -> Vec<(usize, String)> {
    let user = env.user.as_deref().map(str::trim);
    let outside = env.outside_client(local);
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match rule.kind {
            Kind::User => {
                if let Some(user) = user {
                    out.push((i, user.to_lowercase()));
                }
            }
            Kind::Ip => {
                if let Some(ip) = outside {
                    out.push((i, ip_key(ip)));
                }
            }
            Kind::From => {
                // The null sender (bounces) is not a sender to count.
                let from = env.mail_from.as_deref().map(str::trim).unwrap_or("");
                if outside.is_some() && !from.is_empty() && from != "<>" {
                    out.push((i, from.to_lowercase()));
                }
            }
            Kind::Rcpt => {
                if outside.is_some() {
                    let mut rcpts: Vec<String> = env
                        .rcpt_to
                        .iter()
                        .map(|r| r.trim().to_lowercase())
                        .collect();
                    rcpts.sort();
                    rcpts.dedup();
                    out.extend(rcpts.into_iter().filter(|r| !r.is_empty()).map(|r| (i, r)));
                }
            }
        }
    }
    out
}

impl Ratelimit {
    pub fn new(store: postbay_store::Store, settings: RatelimitSettings) -> Ratelimit {
        Ratelimit {
            store,
            settings,
            prune: super::EveryGate::default(),
        }
    }
}

impl Check for Ratelimit {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let keys = keys(&self.settings.rules, &self.settings.local, scan.envelope);
            if keys.is_empty() {
                return out;
            }
            let now = postbay_store::now_unix();
            // Windows that no longer count go at most once an hour per process.
            if self.prune.due(now, 3600) {
                match self.store.ratelimit_prune(now).await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "old rate limit windows removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning rate limit windows"),
                }
            }
            let buckets: Vec<postbay_store::ratelimit::Bucket> = keys
                .iter()
                .map(|(rule, key)| {
                    let rule = &self.settings.rules[*rule];
                    postbay_store::ratelimit::Bucket {
                        id: bucket(rule, key),
                        period: rule.period.as_secs() as i64,
                        limit: rule.limit as i64,
                    }
                })
                .collect();
            match self.store.ratelimit(&buckets, now).await {
                Ok(over) if over.is_empty() => {
                    out.add("RATELIMIT_CHECK", 0.0, "under the rate limits", Vec::new());
                }
                Ok(over) => {
                    let options = over
                        .iter()
                        .filter_map(|&i| keys.get(i))
                        .map(|(rule, key)| format!("{} {key}", self.settings.rules[*rule].text))
                        .collect();
                    out.add("RATELIMIT", 0.0, "over a rate limit", options);
                    out.force = Some((
                        Action::SoftReject,
                        "Rate limit exceeded, try again later".into(),
                    ));
                }
                // The database is down: rate limits must not stop mail.
                Err(e) => tracing::warn!(error = %e, "rate limits skipped"),
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Envelope;

    #[test]
    fn rules_parse_and_bad_ones_say_why() {
        let r = Rule::parse("from:100/1h").unwrap();
        assert_eq!(
            (r.kind, r.limit, r.period.as_secs()),
            (Kind::From, 100, 3600)
        );
        assert_eq!(Rule::parse(" IP:5/30s").unwrap().kind, Kind::Ip);
        assert_eq!(Rule::parse("user:1000/d").unwrap().period.as_secs(), 86_400);
        assert_eq!(Rule::parse("rcpt:2/10m").unwrap().period.as_secs(), 600);
        for (bad, why) in [
            ("from100/1h", "no kind"),
            ("helo:1/1h", "not ip, from, rcpt or user"),
            ("from:0/1h", "above 0"),
            ("from:x/1h", "above 0"),
            ("from:5", "no /period"),
            ("from:5/10", "no unit"),
            ("from:5/10w", "unit is not"),
            ("from:5/0s", "between 1s"),
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    fn env(ip: &str, user: Option<&str>) -> Envelope {
        Envelope {
            ip: Some(ip.parse().unwrap()),
            mail_from: Some("Alice@Example.ORG".into()),
            rcpt_to: vec!["b@y.test".into(), "B@Y.test".into(), "c@y.test".into()],
            user: user.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn keys_follow_who_is_checked() {
        let rules: Vec<Rule> = ["ip:1/1h", "from:1/1h", "rcpt:1/1h", "user:1/1h"]
            .iter()
            .map(|r| Rule::parse(r).unwrap())
            .collect();
        let local = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            keys(&rules, &local, &env("192.0.2.1", None)),
            vec![
                (0, "192.0.2.1".to_string()),
                (1, "alice@example.org".to_string()),
                (2, "b@y.test".to_string()),
                (2, "c@y.test".to_string()),
            ]
        );
        assert_eq!(keys(&rules, &local, &env("10.1.2.3", None)), vec![]);
        assert_eq!(
            keys(&rules, &local, &env("192.0.2.1", Some("Alice@x.test"))),
            vec![(3, "alice@x.test".to_string())]
        );
        assert_eq!(
            ip_key("2001:db8:1:2::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        let (a, b) = (&rules[0], &rules[1]);
        assert_ne!(bucket(a, "k"), bucket(b, "k"));
        assert_eq!(
            bucket(a, "k"),
            bucket(&Rule::parse("ip:99/60m").unwrap(), "k")
        );
        assert_eq!(bucket(a, "k").len(), 64);
    }
}
