//! The Postbay operator: one kube-rs `Controller` per resource kind, each reconciling its
//! resources into the store through `postbay-reconcile` (the same core `postbay apply` runs),
//! reporting conditions and DNS records in status, and cleaning rows up behind a finalizer.
//!
//! One file per concern: `controller` for the reconcile every kind shares (finalizer, error
//! policy, status, Events), a module per kind for what differs (its rows, messages and
//! status fields, and its tests), `status` for conditions and server-side-apply status
//! patches, `key_mirror` for the DKIM key Secret the smtp pods mount, `leader` for the Lease,
//! `metrics` and `http` for /metrics, /healthz and /readyz, `run` for the wiring.

pub mod alias;
pub mod context;
pub mod controller;
pub mod dkim;
pub mod dns_check;
pub mod dns_endpoint;
pub mod domain;
pub mod http;
pub mod key_mirror;
pub mod leader;
pub mod mailbox;
pub mod metrics;
pub mod run;
pub mod settings;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use context::Context;
pub use run::run;
pub use settings::Settings;

/// Everything a reconcile or the operator's startup can fail with, one variant per kind of
/// failing call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{0}")]
    Reconcile(#[source] postbay_reconcile::Error),
    #[error("store: {0}")]
    Store(#[source] postbay_store::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("encoding JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    #[error("the leader Lease was lost")]
    LeadershipLost,
    #[error("settings: {0}")]
    Settings(String),
    #[error("i/o: {0}")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// A short stable label for the `error` dimension of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Reconcile(postbay_reconcile::Error::Store(_))
            | Error::Reconcile(postbay_reconcile::Error::Database(_))
            | Error::Store(_) => "store",
            Error::Reconcile(_) => "reconcile",
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::Json(_) => "json",
            Error::NoNamespace(_) => "namespace",
            Error::LeadershipLost => "leader",
            Error::Settings(_) => "settings",
            Error::Io(_) => "io",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<postbay_reconcile::Error> for Error {
    fn from(e: postbay_reconcile::Error) -> Self {
        Error::Reconcile(e)
    }
}

impl From<postbay_store::Error> for Error {
    fn from(e: postbay_store::Error) -> Self {
        Error::Store(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
