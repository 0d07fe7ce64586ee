//! Who declared a row.

use std::fmt;

/// The resource that declared a row, written `namespace/name` into the row's `owner` column.
///
/// The `aliases` table is shared by `MailAlias` resources and the `aliases` list of
/// `Mailbox` resources, which may have the same name in one namespace; the latter are written
/// as `Mailbox:namespace/name` (see [`Owner::mailbox_aliases`]) so neither can remove the
/// other's rows. Kubernetes names never contain `:` or `/`, so the forms cannot collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl Owner {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Owner {
        Owner {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The owner of alias rows declared by a Mailbox's `spec.aliases`.
    pub fn mailbox_aliases(&self) -> String {
        format!("Mailbox:{self}")
    }

    /// The namespace of a stored owner string (`ns/name` or `Kind:ns/name`).
    pub fn namespace_of(stored: &str) -> Option<&str> {
        let plain = stored.split_once(':').map_or(stored, |(_, rest)| rest);
        plain.split_once('/').map(|(ns, _)| ns)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_reads_back_namespaces() {
        let owner = Owner::new("mail", "alice");
        assert_eq!(owner.to_string(), "mail/alice");
        assert_eq!(owner.mailbox_aliases(), "Mailbox:mail/alice");
        assert_eq!(Owner::namespace_of("mail/alice"), Some("mail"));
        assert_eq!(Owner::namespace_of("Mailbox:mail/alice"), Some("mail"));
        assert_eq!(Owner::namespace_of("legacy"), None);
    }
}
