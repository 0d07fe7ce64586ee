//! The scoring engine: runs the table of checks over a message, adds their symbols' scores
//! (overridable by name), and maps the total to one of Rspamd's actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checks::{Check, Outcome, Scan};
use crate::domains::{recipient_domains, DomainOverrides, OverrideSource};
use crate::protocol::Envelope;

/// Rspamd's actions, from least to most severe (the order `max` relies on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    NoAction,
    Greylist,
    AddHeader,
    RewriteSubject,
    SoftReject,
    Reject,
}

impl Action {
    /// The name in Rspamd's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoAction => "no action",
            Action::Greylist => "greylist",
            Action::AddHeader => "add header",
            Action::RewriteSubject => "rewrite subject",
            Action::SoftReject => "soft reject",
            Action::Reject => "reject",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "no action" => Action::NoAction,
            "greylist" => Action::Greylist,
            "add header" | "add_header" => Action::AddHeader,
            "rewrite subject" | "rewrite_subject" => Action::RewriteSubject,
            "soft reject" | "soft_reject" => Action::SoftReject,
            "reject" => Action::Reject,
            _ => return None,
        })
    }
}

/// Score thresholds. Defaults are Rspamd's (`add_header = 6`, `reject = 15`), greylisting and
/// subject rewriting off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub add_header: f64,
    pub reject: f64,
    /// Unset: no greylist action by score.
    pub greylist: Option<f64>,
    /// Unset: no "rewrite subject" action by score.
    pub rewrite_subject: Option<f64>,
    /// The new Subject of a "rewrite subject" verdict; `%s` is the old one (Rspamd's
    /// `subject` setting and default).
    pub subject: String,
}

/// Rspamd's default `subject` for the "rewrite subject" action (as Rspamd 3.4 answers).
pub const DEFAULT_SUBJECT: &str = "*** SPAM *** %s";

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            add_header: 6.0,
            reject: 15.0,
            greylist: None,
            rewrite_subject: None,
            subject: DEFAULT_SUBJECT.to_string(),
        }
    }
}

impl Thresholds {
    pub fn action_for(&self, score: f64) -> Action {
        if score >= self.reject {
            Action::Reject
        } else if self.rewrite_subject.is_some_and(|r| score >= r) {
            Action::RewriteSubject
        } else if score >= self.add_header {
            Action::AddHeader
        } else if self.greylist.is_some_and(|g| score >= g) {
            Action::Greylist
        } else {
            Action::NoAction
        }
    }
}

/// A symbol a check found, with its score after overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
    pub description: String,
    pub options: Vec<String>,
}

/// The result of one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    /// The reject threshold, as Rspamd reports it.
    pub required_score: f64,
    pub symbols: Vec<Symbol>,
    pub smtp_message: Option<String>,
    /// Headers for the MTA to prepend, in order.
    pub add_headers: Vec<(String, String)>,
    /// Header names for the MTA to remove (every occurrence).
    pub remove_headers: Vec<String>,
    pub message_id: Option<String>,
    /// For "rewrite subject": the new Subject, ready for the header (RFC 2047 encoded
    /// words where it is not ASCII), as Rspamd's reply `subject` carries it.
    pub subject: Option<String>,
}

/// Engine settings.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub thresholds: Thresholds,
    /// Symbol name → score, replacing a check's default.
    pub scores: BTreeMap<String, f64>,
    /// Our authserv-id (RFC 8601 §2.5): names our Authentication-Results header.
    pub authserv_id: String,
}

/// The checks and how their findings add up. Cheap to share (`Arc`).
pub struct Engine {
    checks: Vec<Arc<dyn Check>>,
    settings: EngineSettings,
    /// Per-domain thresholds and scores for the recipients' domains.
    overrides: Option<Arc<dyn OverrideSource>>,
}

impl Engine {
    pub fn new(checks: Vec<Arc<dyn Check>>, settings: EngineSettings) -> Engine {
        Engine {
            checks,
            settings,
            overrides: None,
        }
    }

    pub fn push_check(&mut self, check: Arc<dyn Check>) {
        self.checks.push(check);
    }

    pub fn with_overrides(mut self, overrides: Arc<dyn OverrideSource>) -> Engine {
        self.overrides = Some(overrides);
        self
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Scans one message. Checks run concurrently (the DNS ones wait on the network).
    pub async fn scan(&self, raw: &[u8], envelope: &Envelope) -> Verdict {
        let message = mail_parser::MessageParser::default().parse(raw);
        let scan = Scan {
            raw,
            message: message.as_ref(),
            envelope,
            authserv_id: &self.settings.authserv_id,
        };
        let domains = recipient_domains(&envelope.rcpt_to);
        let overrides = async {
            match &self.overrides {
                Some(source) if !domains.is_empty() => source.for_domains(&domains).await,
                _ => None,
            }
        };
        let checks = futures::future::join_all(self.checks.iter().map(|c| c.run(&scan)));
        let (outcomes, overrides) = futures::join!(checks, overrides);
        self.combine(outcomes, &scan, overrides.as_ref())
    }

    fn combine(
        &self,
        outcomes: Vec<Outcome>,
        scan: &Scan<'_>,
        overrides: Option<&DomainOverrides>,
    ) -> Verdict {
        let mut thresholds = self.settings.thresholds.clone();
        if let Some(o) = overrides {
            thresholds.add_header = o.add_header.unwrap_or(thresholds.add_header);
            thresholds.reject = o.reject.unwrap_or(thresholds.reject);
        }
        let mut symbols = Vec::new();
        let mut forced: Option<(Action, String)> = None;
        let mut auth_results = Vec::new();
        let mut outcomes = outcomes;
        let composite = composites(&outcomes);
        outcomes.push(composite);
        for outcome in outcomes {
            for mut found in outcome.symbols {
                let domain_score = overrides.and_then(|o| o.scores.get(&found.name));
                if let Some(score) = domain_score.or_else(|| self.settings.scores.get(&found.name))
                {
                    found.score = *score;
                }
                symbols.push(found);
            }
            if let Some((action, text)) = outcome.force {
                if forced.as_ref().is_none_or(|(a, _)| action > *a) {
                    forced = Some((action, text));
                }
            }
            auth_results.extend(outcome.auth_results);
        }
        symbols.sort_by(|a, b| a.name.cmp(&b.name));
        let score: f64 = symbols.iter().map(|s| s.score).sum();
        let by_score = thresholds.action_for(score);
        let (action, smtp_message) = match forced {
            Some((action, text)) if action >= by_score => (action, Some(text)),
            _ => (by_score, None),
        };
        let smtp_message = smtp_message.or_else(|| match action {
            Action::Reject => Some("Spam message rejected".to_string()),
            Action::SoftReject | Action::Greylist => Some("Try again later".to_string()),
            _ => None,
        });
        let mut add_headers = Vec::new();
        if !auth_results.is_empty() {
            add_headers.push((
                "Authentication-Results".to_string(),
                crate::authres::header_value(&self.settings.authserv_id, &auth_results),
            ));
        }
        if action >= Action::AddHeader {
            add_headers.push(("X-Spam".to_string(), "Yes".to_string()));
            add_headers.push(("X-Spam-Score".to_string(), format!("{score:.2}")));
        }
        let mut remove_headers = Vec::new();
        if scan
            .message
            .is_some_and(|m| crate::authres::claims_id(m, &self.settings.authserv_id))
        {
            remove_headers.push("Authentication-Results".to_string());
        }
        let subject = (action == Action::RewriteSubject).then(|| {
            let old = scan.message.and_then(|m| m.subject()).unwrap_or("");
            postbay_mime::encode_text(&thresholds.subject.replace("%s", old))
        });
        Verdict {
            action,
            score,
            required_score: thresholds.reject,
            symbols,
            smtp_message,
            add_headers,
            remove_headers,
            message_id: scan
                .message
                .and_then(|m| m.message_id())
                .map(str::to_string),
            subject,
        }
    }
}

/// Symbols derived from other checks' findings (Rspamd's composites): a From in one of our
/// domains (`FROM_LOCAL_DOMAIN`) with no SPF, DKIM or DMARC pass is a forged local sender.
fn composites(outcomes: &[Outcome]) -> Outcome {
    use crate::checks::local_sender::{FORGED_LOCAL_SENDER, FROM_LOCAL_DOMAIN, VOUCHERS};
    let mut out = Outcome::default();
    let found = |name: &str| {
        outcomes
            .iter()
            .find_map(|o| o.symbols.iter().find(|s| s.name == name))
    };
    if let Some(local) = found(FROM_LOCAL_DOMAIN) {
        if !VOUCHERS.iter().any(|v| found(v).is_some()) {
            out.add(
                FORGED_LOCAL_SENDER,
                4.0,
                "From is a domain hosted here, from outside and unauthenticated",
                local.options.clone(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_from_without_a_pass_is_forged() {
        let local = {
            let mut o = Outcome::default();
            o.add("FROM_LOCAL_DOMAIN", 0.0, "", vec!["example.test".into()]);
            o
        };
        let forged = composites(std::slice::from_ref(&local));
        assert_eq!(forged.symbols[0].name, "FORGED_LOCAL_SENDER");
        assert_eq!(forged.symbols[0].options, vec!["example.test"]);
        let mut vouched = Outcome::default();
        vouched.add("R_DKIM_ALLOW", -0.2, "", vec![]);
        assert!(composites(&[local, vouched]).symbols.is_empty());
        assert!(composites(&[]).symbols.is_empty());
    }

    #[test]
    fn thresholds_map_scores_to_actions() {
        let t = Thresholds::default();
        assert_eq!(t.action_for(0.0), Action::NoAction);
        assert_eq!(t.action_for(5.99), Action::NoAction);
        assert_eq!(t.action_for(6.0), Action::AddHeader);
        assert_eq!(t.action_for(15.0), Action::Reject);
        let grey = Thresholds {
            greylist: Some(4.0),
            ..Thresholds::default()
        };
        assert_eq!(grey.action_for(4.5), Action::Greylist);
        let rewrite = Thresholds {
            rewrite_subject: Some(8.0),
            ..Thresholds::default()
        };
        assert_eq!(rewrite.action_for(7.0), Action::AddHeader);
        assert_eq!(rewrite.action_for(8.0), Action::RewriteSubject);
        assert_eq!(rewrite.action_for(15.0), Action::Reject);
    }

    /// "rewrite subject" carries the new Subject (Rspamd's template, `%s` the old one
    /// decoded, then encoded for the header); other verdicts carry none.
    #[tokio::test]
    async fn a_rewrite_subject_verdict_names_the_new_subject() {
        let engine = Engine::new(
            vec![Arc::new(crate::checks::gtube::Gtube)],
            EngineSettings::default(),
        );
        let tail = "JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
        let raw = format!("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nZ{tail}\r\n");
        let verdict = engine.scan(raw.as_bytes(), &Envelope::default()).await;
        assert_eq!(verdict.action, Action::RewriteSubject);
        assert_eq!(
            verdict.subject,
            Some(postbay_mime::encode_text("*** SPAM *** Grüße"))
        );
        let raw = format!("Subject: hi\r\n\r\nY{tail}\r\n");
        let verdict = engine.scan(raw.as_bytes(), &Envelope::default()).await;
        assert_eq!(verdict.action, Action::AddHeader);
        assert_eq!(verdict.subject, None);
    }

    #[test]
    fn action_names_round_trip() {
        for a in [
            Action::NoAction,
            Action::Greylist,
            Action::AddHeader,
            Action::RewriteSubject,
            Action::SoftReject,
            Action::Reject,
        ] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }
}
