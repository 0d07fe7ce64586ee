//! What applying one resource did, or why it could not.

use std::fmt;

/// The result of applying one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rows now match the resource.
    Applied(Change),
    /// Nothing was written; the reason is for a status condition or an error line.
    Blocked(Blocked),
}

/// How the rows changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    /// Already as declared: re-applying a file or re-reconciling writes nothing.
    Unchanged,
}

/// Why a resource was not applied. None of these is retried by hammering: the world must
/// change (another resource deleted, a domain declared) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// `what` (e.g. `domain example.com`) is held by another resource.
    Conflict { what: String, owner: String },
    /// The address's or key's domain is not declared by any MailDomain.
    DomainNotFound { domain: String },
    /// The domain is declared, but by a MailDomain in another namespace: a namespace may only
    /// create addresses under its own domains.
    DomainInOtherNamespace { domain: String, owner: String },
}

impl Outcome {
    pub fn conflict(what: impl Into<String>, owner: impl Into<String>) -> Outcome {
        Outcome::Blocked(Blocked::Conflict {
            what: what.into(),
            owner: owner.into(),
        })
    }
}

impl Change {
    /// The word `postbay apply` prints after the resource.
    pub fn verb(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }

    /// Combines the changes of the rows one resource owns.
    pub fn and(self, other: Change) -> Change {
        match (self, other) {
            (Change::Created, _) | (_, Change::Created) => Change::Created,
            (Change::Updated, _) | (_, Change::Updated) => Change::Updated,
            _ => Change::Unchanged,
        }
    }
}

impl Blocked {
    /// CamelCase reason for a status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Blocked::Conflict { .. } => "Conflict",
            Blocked::DomainNotFound { .. } => "DomainNotFound",
            Blocked::DomainInOtherNamespace { .. } => "DomainInOtherNamespace",
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Conflict { what, owner } => {
                write!(f, "{what} is already declared by {owner}")
            }
            Blocked::DomainNotFound { domain } => {
                write!(f, "domain {domain} is not declared by any MailDomain")
            }
            Blocked::DomainInOtherNamespace { domain, owner } => write!(
                f,
                "domain {domain} is declared by {owner}, in another namespace"
            ),
        }
    }
}
