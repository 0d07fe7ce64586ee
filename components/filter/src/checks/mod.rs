//! The table of checks. Each check is one file: it looks at a message and its envelope and
//! reports symbols with default scores (the engine applies overrides and thresholds).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::engine::{Action, Symbol};
use crate::protocol::Envelope;

pub mod auth;
pub mod dnsbl;
pub mod greylist;
pub mod gtube;
pub mod headers;
pub mod links;
pub mod local_sender;
pub mod mime;
pub mod ratelimit;

/// Lets a periodic clean-up through at most once an `interval` per process, whichever
/// scan comes first (greylisting triplets, rate-limit windows).
#[derive(Debug, Default)]
pub struct EveryGate {
    last: std::sync::atomic::AtomicI64,
}

impl EveryGate {
    /// Whether the clean-up is due at `now` (Unix seconds); only one caller gets `true`.
    pub fn due(&self, now: i64, interval: i64) -> bool {
        use std::sync::atomic::Ordering;
        let last = self.last.load(Ordering::Relaxed);
        now - last > interval
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// What a check sees.
pub struct Scan<'a> {
    pub raw: &'a [u8],
    /// `None` when the bytes are not a message mail-parser can read.
    pub message: Option<&'a mail_parser::Message<'a>>,
    pub envelope: &'a Envelope,
    pub authserv_id: &'a str,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub symbols: Vec<Symbol>,
    /// An action regardless of score, with its SMTP text (GTUBE, DMARC p=reject).
    pub force: Option<(Action, String)>,
    /// Method clauses for our Authentication-Results (`spf=pass smtp.mailfrom=...`).
    pub auth_results: Vec<String>,
}

impl Outcome {
    pub fn add(&mut self, name: &str, score: f64, description: &str, options: Vec<String>) {
        self.symbols.push(Symbol {
            name: name.to_string(),
            score,
            description: description.to_string(),
            options,
        });
    }

    pub fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|s| s.name == name)
    }
}

/// One check of the table.
pub trait Check: Send + Sync {
    fn name(&self) -> &'static str;
    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome>;
}

/// The content checks that need nothing but the message.
pub fn content_checks() -> Vec<Arc<dyn Check>> {
    vec![
        Arc::new(gtube::Gtube),
        Arc::new(headers::HeaderSanity),
        Arc::new(mime::MimeSanity),
        Arc::new(links::Links),
    ]
}

#[cfg(test)]
pub(crate) mod fixture {
    //! Runs one check over a fixture message and lists the symbol names it reported.
    use super::*;

    pub fn symbols(check: &dyn Check, raw: &str, envelope: &Envelope) -> Outcome {
        let raw = raw.replace('\n', "\r\n");
        let message = mail_parser::MessageParser::default().parse(raw.as_bytes());
        let scan = Scan {
            raw: raw.as_bytes(),
            message: message.as_ref(),
            envelope,
            authserv_id: "mx.example.test",
        };
        futures::executor::block_on(check.run(&scan))
    }

    pub fn names(outcome: &Outcome) -> Vec<&str> {
        let mut names: Vec<&str> = outcome.symbols.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        names
    }
}
