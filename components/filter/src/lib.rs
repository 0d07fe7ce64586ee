//! `postbay filter`: Rspamd's job (SPF/DKIM/DMARC/ARC, blocklists, content checks, Bayes, greylisting, rate limits), speaking Rspamd's
//! HTTP protocol so rspamc, Rspamd's clients and Postbay's SMTP use it alike, and so it can
//! be swapped for a real Rspamd.
//!
//! - `protocol/`: the protocol, parsing and encoding only;
//! - `server`: the HTTP listener and its limits;
//! - `milter/`: the milter listener (Postfix's `smtpd_milters`), the same engine;
//! - `engine`: checks → symbols → score → action;
//! - `checks/`: one file per check; `bayes`: the classifier; `authres`: RFC 8601 headers;
//! - `domains`: per-domain thresholds and scores (MailDomain `spec.spamFilter`).

pub mod authres;
pub mod bayes;
pub mod checks;
pub mod domains;
pub mod engine;
pub mod learn;
pub mod milter;
pub mod protocol;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use engine::{Action, Engine, EngineSettings, Thresholds, Verdict};
pub use server::{serve, Filter, Limits};

/// Everything `postbay filter` needs besides its listener.
#[derive(Debug, Clone)]
pub struct FilterSettings {
    pub limits: Limits,
    pub thresholds: Thresholds,
    pub scores: BTreeMap<String, f64>,
    pub authserv_id: String,
    pub bayes: bayes::BayesSettings,
    /// DNS servers for SPF, DKIM, DMARC and ARC; empty: the system's.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Time for all of a message's authentication lookups.
    pub dns_timeout: std::time::Duration,
    /// Clients not authenticated (no SPF/DKIM/DMARC): our own relays (Rspamd's `local_addrs`).
    pub local_networks: Vec<ipnet::IpNet>,
    /// DNS blocklists for the client address and for the message's domains.
    pub dnsbl_sites: Vec<checks::dnsbl::Site>,
    pub domain_dnsbl_sites: Vec<checks::dnsbl::Site>,
    /// Greylisting (needs the store given to [`build`]); `None`: off.
    pub greylist: Option<checks::greylist::GreylistSettings>,
    /// Rate limits (need the store given to [`build`]); `None`: off.
    pub ratelimit: Option<checks::ratelimit::RatelimitSettings>,
}

/// Builds the filter: the content checks, the classifier over `tokens`.
pub fn build(
    settings: FilterSettings,
    tokens: Arc<dyn bayes::TokenStore>,
    store: Option<postbay_store::Store>,
) -> Result<Filter, checks::auth::ResolverError> {
    let bayes = Arc::new(bayes::Bayes::new(tokens, settings.bayes.clone()));
    let mut checks = checks::content_checks();
    checks.push(bayes.clone());
    checks.push(Arc::new(checks::auth::Authentication::new(
        &settings.nameservers,
        settings.dns_timeout,
        settings.local_networks.clone(),
    )?));
    match (&settings.greylist, store.clone()) {
        (Some(grey), Some(store)) => checks.push(Arc::new(checks::greylist::Greylist::new(
            store,
            grey.clone(),
        ))),
        (Some(_), None) => tracing::warn!("greylisting needs the store; off"),
        _ => {}
    }
    match (&settings.ratelimit, store.clone()) {
        (Some(limits), Some(store)) => checks.push(Arc::new(checks::ratelimit::Ratelimit::new(
            store,
            limits.clone(),
        ))),
        (Some(_), None) => tracing::warn!("rate limits need the store; off"),
        _ => {}
    }
    if !settings.dnsbl_sites.is_empty() || !settings.domain_dnsbl_sites.is_empty() {
        checks.push(Arc::new(checks::dnsbl::Dnsbl::new(
            &settings.nameservers,
            settings.dns_timeout,
            settings.dnsbl_sites.clone(),
            settings.domain_dnsbl_sites.clone(),
            settings.local_networks.clone(),
        )?));
    }
    let mut engine = Engine::new(
        checks,
        EngineSettings {
            thresholds: settings.thresholds,
            scores: settings.scores,
            authserv_id: settings.authserv_id,
        },
    );
    if let Some(store) = store {
        engine = engine.with_overrides(Arc::new(domains::StoreOverrides::new(store.clone())));
        engine.push_check(Arc::new(checks::local_sender::LocalSender::new(
            store,
            settings.local_networks.clone(),
        )));
    }
    Ok(Filter {
        engine,
        learner: bayes,
        limits: settings.limits,
    })
}
