//! A parsed manifest grouped by kind, with Secret lookups for what the resources reference.

use k8s_openapi::api::core::v1::Secret;

use super::{namespace_or_default, parse_stream, ManifestError, Resource};
use crate::{DkimKey, MailAlias, MailDomain, Mailbox};

/// Everything one `postbay apply` run works from, in stream order within each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    pub domains: Vec<MailDomain>,
    pub mailboxes: Vec<Mailbox>,
    pub aliases: Vec<MailAlias>,
    pub dkim_keys: Vec<DkimKey>,
    pub secrets: Vec<Secret>,
}

impl Bundle {
    /// Parses a YAML stream (see [`parse_stream`]) and groups it.
    pub fn parse(text: &str) -> Result<Bundle, ManifestError> {
        parse_stream(text).map(Bundle::from_iter)
    }

    /// The value of `key` in Secret `name`, from `stringData` if it is there (as the API
    /// server merges it over `data`), else from `data`. A missing namespace means `default`,
    /// both in the question and on the Secret.
    pub fn secret_value(&self, namespace: Option<&str>, name: &str, key: &str) -> Option<Vec<u8>> {
        let namespace = namespace_or_default(namespace);
        let secret = self.secrets.iter().find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && namespace_or_default(s.metadata.namespace.as_deref()) == namespace
        })?;
        let from_string_data = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec());
        from_string_data.or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.0.clone())
        })
    }

    /// The password (cleartext or hash) a mailbox's `passwordSecretRef` points at, looked up
    /// in the mailbox's own namespace.
    pub fn mailbox_password(&self, mailbox: &Mailbox) -> Option<Vec<u8>> {
        let reference = &mailbox.spec.password_secret_ref;
        self.secret_value(
            mailbox.metadata.namespace.as_deref(),
            &reference.name,
            &reference.key,
        )
    }
}

impl FromIterator<Resource> for Bundle {
    fn from_iter<I: IntoIterator<Item = Resource>>(resources: I) -> Bundle {
        let mut bundle = Bundle::default();
        for resource in resources {
            match resource {
                Resource::Domain(r) => bundle.domains.push(r),
                Resource::Mailbox(r) => bundle.mailboxes.push(r),
                Resource::Alias(r) => bundle.aliases.push(r),
                Resource::DkimKey(r) => bundle.dkim_keys.push(r),
                Resource::Secret(r) => bundle.secrets.push(r),
            }
        }
        bundle
    }
}
