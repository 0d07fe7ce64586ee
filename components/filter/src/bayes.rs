//! A statistical classifier: word tokens, Robinson's per-token probability and Fisher's
//! chi-square combination (as SpamBayes and Rspamd's `bayes` classifier do). Token counts sit
//! behind [`TokenStore`], so replicas can share them. One global classifier, or one per
//! recipient domain (`filter.bayes_per_domain`): a domain's tokens are hashed with its name
//! and its message counts have their own row, so classifiers never mix.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::checks::{Check, Outcome, Scan};
use crate::learn::{LearnError, Learner};
use crate::protocol::Envelope;

/// Counts of learnt messages and, per token, of the spam and ham messages that carried it.
pub trait TokenStore: Send + Sync {
    /// (spam messages, ham messages) learnt by the classifier `scope`.
    fn totals(&self, scope: i64) -> BoxFuture<'_, Result<(u64, u64), LearnError>>;
    /// (spam, ham) counts for each token, in order; unknown tokens count (0, 0).
    fn counts<'a>(
        &'a self,
        tokens: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, LearnError>>;
    /// Adds one message's tokens; `message_key` makes learning the same message twice an
    /// `AlreadyLearned` error.
    fn add<'a>(
        &'a self,
        scope: i64,
        message_key: &'a str,
        tokens: &'a [u64],
        spam: bool,
    ) -> BoxFuture<'a, Result<(), LearnError>>;
}

/// Tokens in memory, for tests and a single process.
#[derive(Default)]
pub struct MemoryTokens {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    totals: HashMap<i64, (u64, u64)>,
    tokens: HashMap<u64, (u64, u64)>,
    learnt: HashMap<String, bool>,
}

impl TokenStore for MemoryTokens {
    fn totals(&self, scope: i64) -> BoxFuture<'_, Result<(u64, u64), LearnError>> {
        let totals = self
            .inner
            .lock()
            .expect("not poisoned")
            .totals
            .get(&scope)
            .copied()
            .unwrap_or_default();
        Box::pin(async move { Ok(totals) })
    }

    fn counts<'a>(
        &'a self,
        tokens: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, LearnError>> {
        let inner = self.inner.lock().expect("not poisoned");
        let counts = tokens
            .iter()
            .map(|t| inner.tokens.get(t).copied().unwrap_or((0, 0)))
            .collect();
        Box::pin(async move { Ok(counts) })
    }

    fn add<'a>(
        &'a self,
        scope: i64,
        message_key: &'a str,
        tokens: &'a [u64],
        spam: bool,
    ) -> BoxFuture<'a, Result<(), LearnError>> {
        let mut guard = self.inner.lock().expect("not poisoned");
        let inner = &mut *guard;
        let result = if inner.learnt.get(message_key) == Some(&spam) {
            Err(LearnError::AlreadyLearned(
                message_key.to_string(),
                if spam { "spam" } else { "ham" },
            ))
        } else {
            // Relearning as the other class moves the message's tokens over.
            let previous = inner.learnt.insert(message_key.to_string(), spam);
            for t in tokens {
                let entry = inner.tokens.entry(*t).or_default();
                match (previous, spam) {
                    (Some(_), true) => {
                        entry.1 = entry.1.saturating_sub(1);
                        entry.0 += 1;
                    }
                    (Some(_), false) => {
                        entry.0 = entry.0.saturating_sub(1);
                        entry.1 += 1;
                    }
                    (None, true) => entry.0 += 1,
                    (None, false) => entry.1 += 1,
                }
            }
            let totals = inner.totals.entry(scope).or_default();
            match (previous, spam) {
                (Some(_), true) => {
                    totals.1 = totals.1.saturating_sub(1);
                    totals.0 += 1;
                }
                (Some(_), false) => {
                    totals.0 = totals.0.saturating_sub(1);
                    totals.1 += 1;
                }
                (None, true) => totals.0 += 1,
                (None, false) => totals.1 += 1,
            }
            Ok(())
        };
        Box::pin(async move { result })
    }
}

/// Tokens in the database, shared by every replica (MariaDB in production, SQLite in dev).
pub struct StoreTokens(pub postbay_store::Store);

fn storage(e: postbay_store::Error) -> LearnError {
    LearnError::Storage(e.to_string())
}

impl TokenStore for StoreTokens {
    fn totals(&self, scope: i64) -> BoxFuture<'_, Result<(u64, u64), LearnError>> {
        Box::pin(async move { self.0.bayes_totals(scope).await.map_err(storage) })
    }

    fn counts<'a>(
        &'a self,
        tokens: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, LearnError>> {
        Box::pin(async move { self.0.bayes_counts(tokens).await.map_err(storage) })
    }

    fn add<'a>(
        &'a self,
        scope: i64,
        message_key: &'a str,
        tokens: &'a [u64],
        spam: bool,
    ) -> BoxFuture<'a, Result<(), LearnError>> {
        Box::pin(async move {
            match self.0.bayes_learn(scope, message_key, tokens, spam).await {
                Ok(postbay_store::bayes::Learned::Already) => Err(LearnError::AlreadyLearned(
                    message_key.to_string(),
                    if spam { "spam" } else { "ham" },
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(storage(e)),
            }
        })
    }
}

/// Classifier settings.
#[derive(Debug, Clone)]
pub struct BayesSettings {
    /// Messages of each class learnt before the classifier speaks (Rspamd: 200).
    pub min_learns: u64,
    /// Probability at or above which BAYES_SPAM is reported, at or below 1 − this BAYES_HAM.
    pub threshold: f64,
    pub spam_score: f64,
    pub ham_score: f64,
    /// One classifier per recipient domain instead of one for all.
    pub per_domain: bool,
}

impl Default for BayesSettings {
    fn default() -> Self {
        BayesSettings {
            min_learns: 200,
            threshold: 0.9,
            spam_score: 5.1,
            ham_score: -3.0,
            per_domain: false,
        }
    }
}

/// The classifier: a check (BAYES_SPAM / BAYES_HAM) and the learner behind the endpoints.
pub struct Bayes {
    store: Arc<dyn TokenStore>,
    settings: BayesSettings,
}

impl Bayes {
    pub fn new(store: Arc<dyn TokenStore>, settings: BayesSettings) -> Bayes {
        Bayes { store, settings }
    }

    /// The classifier a message belongs to: the global one, or (per domain) that of
    /// `domain`, the recipient's; `None` when per-domain and there is no recipient.
    pub fn scope(&self, domain: Option<&str>) -> Option<Scope> {
        if !self.settings.per_domain {
            return Some(Scope::global());
        }
        domain.map(Scope::domain)
    }

    /// The spam probability of a message (0 ham … 1 spam), `None` before enough learning.
    pub async fn classify(&self, scope: &Scope, tokens: &[u64]) -> Result<Option<f64>, LearnError> {
        let (spams, hams) = self.store.totals(scope.id).await?;
        if spams < self.settings.min_learns || hams < self.settings.min_learns {
            return Ok(None);
        }
        let counts = self.store.counts(tokens).await?;
        Ok(Some(combine(&counts, spams, hams)))
    }
}

/// Robinson's f(w) with s = 1, x = 0.5, then Fisher's method over the 150 most telling
/// tokens (|f − 0.5| > 0.1), as SpamBayes' chi-combining does.
pub fn combine(counts: &[(u64, u64)], spams: u64, hams: u64) -> f64 {
    const S: f64 = 1.0;
    const X: f64 = 0.5;
    let mut probs: Vec<f64> = counts
        .iter()
        .filter(|(s, h)| s + h > 0)
        .map(|&(s, h)| {
            let spam_ratio = s as f64 / spams.max(1) as f64;
            let ham_ratio = h as f64 / hams.max(1) as f64;
            let p = spam_ratio / (spam_ratio + ham_ratio);
            let n = (s + h) as f64;
            ((S * X + n * p) / (S + n)).clamp(0.01, 0.99)
        })
        .filter(|f| (f - 0.5).abs() > 0.1)
        .collect();
    if probs.is_empty() {
        return 0.5;
    }
    probs.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
    probs.truncate(150);
    let n = probs.len();
    let ln_f: f64 = probs.iter().map(|f| f.ln()).sum();
    let ln_1f: f64 = probs.iter().map(|f| (1.0 - f).ln()).sum();
    let h = chi2q(-2.0 * ln_f, 2 * n);
    let s = chi2q(-2.0 * ln_1f, 2 * n);
    (1.0 + h - s) / 2.0
}

/// P(χ² ≥ x2) for `v` (even) degrees of freedom.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// Which classifier: its `bayes_totals` row and the salt its tokens are hashed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub id: i64,
    salt: String,
}

impl Scope {
    /// The one global classifier: row 1, unsalted tokens (as before per-domain ones).
    pub fn global() -> Scope {
        Scope {
            id: postbay_store::bayes::GLOBAL_SCOPE,
            salt: String::new(),
        }
    }

    /// `domain`'s classifier: a row id and a token salt from its name.
    pub fn domain(domain: &str) -> Scope {
        let domain = domain.to_ascii_lowercase();
        let id = (fnv1a("scope:", &domain) as i64).max(2);
        Scope {
            id,
            salt: format!("{domain}\0"),
        }
    }
}

/// Word tokens of the subject and text parts (3 to 24 characters, lowercased, each once),
/// hashed with FNV-1a (salted with the scope's domain) so every replica and version names a
/// token alike.
pub fn tokens(
    scope: &Scope,
    scan_raw: &[u8],
    message: Option<&mail_parser::Message<'_>>,
) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut push = |prefix: &str, text: &str| {
        let prefix = format!("{}{prefix}", scope.salt);
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '$')) {
            let len = word.chars().count();
            if (3..=24).contains(&len) {
                seen.insert(fnv1a(&prefix, &word.to_lowercase()));
            }
        }
    };
    match message {
        Some(m) => {
            if let Some(subject) = m.subject() {
                push("s:", subject);
            }
            if let Some(from) = m.from().and_then(|f| f.first()).and_then(|a| a.address()) {
                push("f:", from);
            }
            for i in 0..m.text_body_count() {
                if let Some(text) = m.body_text(i) {
                    push("", &text);
                }
            }
        }
        None => push("", &String::from_utf8_lossy(scan_raw)),
    }
    let mut out: Vec<u64> = seen.into_iter().collect();
    out.sort_unstable();
    out
}

fn fnv1a(prefix: &str, word: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in prefix.bytes().chain(word.bytes()) {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    // Stored as a signed 64-bit column; keep it positive for every database.
    hash >> 1
}

/// The key a learnt message is remembered by: its Message-ID, else a hash of its tokens.
fn message_key(message: Option<&mail_parser::Message<'_>>, tokens: &[u64]) -> String {
    message
        .and_then(|m| m.message_id())
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut hash: u64 = 0xcbf29ce484222325;
            for t in tokens {
                hash ^= t;
                hash = hash.wrapping_mul(0x100000001b3);
            }
            format!("tokens:{hash:016x}")
        })
}

impl Learner for Bayes {
    fn learn<'a>(
        &'a self,
        raw: &'a [u8],
        spam: bool,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), LearnError>> {
        Box::pin(async move {
            // Rspamd's per-user statistics read Deliver-To; a recipient serves as well.
            let recipient = envelope
                .deliver_to
                .as_deref()
                .or(envelope.rcpt_to.first().map(String::as_str));
            let domain = recipient.and_then(|r| r.rsplit_once('@')).map(|(_, d)| d);
            let scope = self.scope(domain).ok_or(LearnError::NoRecipient)?;
            let message = mail_parser::MessageParser::default().parse(raw);
            let tokens = tokens(&scope, raw, message.as_ref());
            let key = message_key(message.as_ref(), &tokens);
            let key = if scope.salt.is_empty() {
                key
            } else {
                format!("{}{key}", scope.salt.replace('\0', ":"))
            };
            self.store.add(scope.id, &key, &tokens, spam).await
        })
    }
}

impl Check for Bayes {
    fn name(&self) -> &'static str {
        "bayes"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            // Per domain: the first recipient's classifier (one message, one verdict).
            let domain = scan
                .envelope
                .rcpt_to
                .first()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(_, d)| d);
            let Some(scope) = self.scope(domain) else {
                return out;
            };
            let tokens = tokens(&scope, scan.raw, scan.message);
            match self.classify(&scope, &tokens).await {
                Ok(Some(p)) if p >= self.settings.threshold => out.add(
                    "BAYES_SPAM",
                    self.settings.spam_score,
                    "Message probably spam, probability",
                    vec![format!("{:.2}%", p * 100.0)],
                ),
                Ok(Some(p)) if p <= 1.0 - self.settings.threshold => out.add(
                    "BAYES_HAM",
                    self.settings.ham_score,
                    "Message probably ham, probability",
                    vec![format!("{:.2}%", (1.0 - p) * 100.0)],
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "bayes classification skipped"),
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Envelope;

    fn msg(id: usize, subject: &str, body: &str) -> String {
        format!("From: x{id}@example.org\r\nMessage-ID: <{id}@example.org>\r\nSubject: {subject}\r\n\r\n{body}\r\n")
    }

    #[test]
    fn chi2q_bounds() {
        assert!((chi2q(0.0, 4) - 1.0).abs() < 1e-9);
        assert!(chi2q(1000.0, 4) < 1e-9);
    }

    #[test]
    fn learns_and_classifies() {
        let bayes = Bayes::new(
            Arc::new(MemoryTokens::default()),
            BayesSettings {
                min_learns: 5,
                ..Default::default()
            },
        );
        futures::executor::block_on(async {
            for i in 0..10 {
                let spam = msg(
                    i,
                    "cheap pills now",
                    &format!("buy viagra casino winner money {i}"),
                );
                bayes
                    .learn(spam.as_bytes(), true, &Envelope::default())
                    .await
                    .unwrap();
                let ham = msg(
                    100 + i,
                    "meeting notes",
                    &format!("agenda for tuesday project review {i}"),
                );
                bayes
                    .learn(ham.as_bytes(), false, &Envelope::default())
                    .await
                    .unwrap();
            }
            // The same message again is refused, as Rspamd does.
            let again = msg(0, "cheap pills now", "buy viagra casino winner money 0");
            assert!(matches!(
                bayes
                    .learn(again.as_bytes(), true, &Envelope::default())
                    .await,
                Err(LearnError::AlreadyLearned(..))
            ));
        });
        {
            let check = |raw: String| {
                let env = Envelope::default();
                let out = crate::checks::fixture::symbols(&bayes, &raw, &env);
                crate::checks::fixture::names(&out)
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                check(msg(500, "cheap casino", "winner money viagra")),
                ["BAYES_SPAM"]
            );
            assert_eq!(
                check(msg(501, "project meeting", "tuesday agenda review")),
                ["BAYES_HAM"]
            );
            assert!(check(msg(502, "unrelated", "zebra quokka")).is_empty());
        }
    }

    #[test]
    fn domains_have_classifiers_of_their_own() {
        let a = Scope::domain("A.test");
        let b = Scope::domain("b.test");
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, Scope::global().id);
        let raw = msg(1, "cheap pills", "casino winner");
        let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes());
        let ta = tokens(&a, raw.as_bytes(), parsed.as_ref());
        let tb = tokens(&b, raw.as_bytes(), parsed.as_ref());
        let tg = tokens(&Scope::global(), raw.as_bytes(), parsed.as_ref());
        assert_eq!(ta.len(), tg.len());
        assert!(ta.iter().all(|t| !tb.contains(t) && !tg.contains(t)));
        let per_domain = Bayes::new(
            Arc::new(MemoryTokens::default()),
            BayesSettings {
                per_domain: true,
                ..Default::default()
            },
        );
        assert_eq!(per_domain.scope(None), None);
        assert_eq!(per_domain.scope(Some("a.test")), Some(a));
        let envelope = Envelope {
            deliver_to: Some("u@a.test".into()),
            ..Envelope::default()
        };
        futures::executor::block_on(async {
            assert!(matches!(
                per_domain
                    .learn(raw.as_bytes(), true, &Envelope::default())
                    .await,
                Err(LearnError::NoRecipient)
            ));
            per_domain
                .learn(raw.as_bytes(), true, &envelope)
                .await
                .unwrap();
            let store = &per_domain.store;
            assert_eq!(
                store.totals(Scope::domain("a.test").id).await.unwrap(),
                (1, 0)
            );
            assert_eq!(store.totals(Scope::global().id).await.unwrap(), (0, 0));
        });
    }

    #[test]
    fn silent_before_min_learns() {
        futures::executor::block_on(async {
            let bayes = Bayes::new(Arc::new(MemoryTokens::default()), BayesSettings::default());
            bayes
                .learn(
                    msg(1, "a b c", "spammy words").as_bytes(),
                    true,
                    &Envelope::default(),
                )
                .await
                .unwrap();
            assert_eq!(
                bayes.classify(&Scope::global(), &[1, 2, 3]).await.unwrap(),
                None
            );
        });
    }
}
