//! Cross-document checks, run before anything is written: every address under a declared
//! domain, every Secret reference resolvable from the applied files, no name claimed twice,
//! and nothing held by another owner in the store. The manifest parser has already checked
//! each document on its own.

use std::collections::HashMap;

use anyhow::Result;
use postbay_api::{Bundle, DkimKey, MailAlias, Mailbox, Resource};
use postbay_reconcile::{alias, dkim, domain, mailbox, password, DkimPrivateKey, Owner};
use postbay_store::directory::{canonical_address, split_address};
use postbay_store::Store;

use super::inputs::Document;

/// One problem, already phrased for the terminal.
pub struct Invalid {
    pub at: String,
    pub message: String,
}

/// Collects every problem of the whole set; empty means it may be applied.
pub async fn check(docs: &[Document], bundle: &Bundle, store: &Store) -> Result<Vec<Invalid>> {
    let mut checker = Checker {
        docs,
        bundle,
        store,
        problems: Vec::new(),
        domains: HashMap::new(),
        addresses: HashMap::new(),
    };
    checker.duplicates();
    for doc in docs {
        if let Resource::Domain(d) = &doc.resource {
            checker.domain(doc, &d.spec.domain).await?;
        }
    }
    for doc in docs {
        match &doc.resource {
            Resource::Mailbox(m) => checker.mailbox(doc, m).await?,
            Resource::Alias(a) => checker.alias(doc, a).await?,
            Resource::DkimKey(k) => checker.dkim(doc, k).await?,
            Resource::Domain(_) | Resource::Secret(_) => {}
        }
    }
    Ok(checker.problems)
}

struct Checker<'a> {
    docs: &'a [Document],
    bundle: &'a Bundle,
    store: &'a Store,
    problems: Vec<Invalid>,
    /// Domain → (namespace, description) of the MailDomain declaring it in these files.
    domains: HashMap<String, (String, String)>,
    /// Canonical address → description of the document that claimed it first.
    addresses: HashMap<String, String>,
}

impl Checker<'_> {
    fn fail(&mut self, doc: &Document, message: impl Into<String>) {
        self.problems.push(Invalid {
            at: doc.describe(),
            message: message.into(),
        });
    }

    /// The manifest parser finds duplicates within one stream; these are across `-f` files.
    fn duplicates(&mut self) {
        let mut seen: HashMap<(&str, &str, &str), &Document> = HashMap::new();
        for doc in self.docs {
            let r = &doc.resource;
            let key = (r.kind(), r.namespace(), r.name());
            if let Some(first) = seen.get(&key) {
                let message = format!(
                    "same {} {}/{} as {}",
                    r.kind(),
                    r.namespace(),
                    r.name(),
                    first.describe()
                );
                self.fail(doc, message);
            } else {
                seen.insert(key, doc);
            }
        }
    }

    async fn domain(&mut self, doc: &Document, name: &str) -> Result<()> {
        let namespace = doc.resource.namespace().to_string();
        if let Some((_, first)) = self.domains.get(name) {
            let message = format!("spec.domain: {name} is also declared by {first}");
            self.fail(doc, message);
            return Ok(());
        }
        self.domains
            .insert(name.to_string(), (namespace, doc.describe()));
        if let Some(blocked) = domain::check_claim(self.store, &owner(doc), name).await? {
            self.fail(doc, format!("spec.domain: {blocked}"));
        }
        Ok(())
    }

    /// Whether `doc` may use `name`: declared in these files in the same namespace, or in
    /// the store by this namespace.
    async fn domain_usable(&mut self, doc: &Document, field: &str, name: &str) -> Result<()> {
        let namespace = doc.resource.namespace();
        if let Some((declared_in, by)) = self.domains.get(name) {
            if declared_in != namespace {
                let message = format!(
                    "{field}: domain {name} is declared by {by}, in namespace {declared_in:?}, not {namespace:?}"
                );
                self.fail(doc, message);
            }
            return Ok(());
        }
        if let Some(blocked) = domain::check_usable(self.store, &owner(doc), name).await? {
            let message = format!(
                "{field}: {blocked}; declare it with a MailDomain in these files or apply one first"
            );
            self.fail(doc, message);
        }
        Ok(())
    }

    fn claim_address(&mut self, doc: &Document, field: &str, address: &str) {
        let address = canonical_address(address);
        match self.addresses.get(&address) {
            Some(first) => {
                let message = format!("{field}: {address} is also claimed by {first}");
                self.fail(doc, message);
            }
            None => {
                self.addresses.insert(address, doc.describe());
            }
        }
    }

    async fn mailbox(&mut self, doc: &Document, m: &Mailbox) -> Result<()> {
        let spec = &m.spec;
        for domain in mailbox::domains(spec) {
            let field = if split_address(&spec.address).is_some_and(|(_, d)| d == domain) {
                "spec.address"
            } else {
                "spec.aliases"
            };
            self.domain_usable(doc, field, &domain).await?;
        }
        self.claim_address(doc, "spec.address", &spec.address);
        for (i, alias) in spec.aliases.iter().enumerate() {
            self.claim_address(doc, &format!("spec.aliases[{i}]"), alias);
        }
        let reference = &spec.password_secret_ref;
        match self.bundle.mailbox_password(m) {
            None => {
                let message = format!(
                    "spec.passwordSecretRef: {}",
                    self.missing_secret(doc, &reference.name, &[&reference.key])
                );
                self.fail(doc, message);
            }
            Some(value) => {
                if let Err(e) = password::classify(&value) {
                    let message = format!(
                        "spec.passwordSecretRef: Secret {:?} key {:?}: {e}",
                        reference.name, reference.key
                    );
                    self.fail(doc, message);
                }
            }
        }
        if let Some(blocked) = mailbox::check_claims(self.store, &owner(doc), spec).await? {
            self.fail(doc, format!("spec.address: {blocked}"));
        }
        Ok(())
    }

    async fn alias(&mut self, doc: &Document, a: &MailAlias) -> Result<()> {
        if let Some((_, domain)) = split_address(&a.spec.address) {
            self.domain_usable(doc, "spec.address", &domain).await?;
        }
        self.claim_address(doc, "spec.address", &a.spec.address);
        let owner = owner(doc).to_string();
        let held = alias::check_address(self.store, &owner, &a.spec.address).await?;
        if let Some(blocked) = held {
            self.fail(doc, format!("spec.address: {blocked}"));
        }
        Ok(())
    }

    async fn dkim(&mut self, doc: &Document, k: &DkimKey) -> Result<()> {
        let spec = &k.spec;
        self.domain_usable(doc, "spec.domain", &spec.domain).await?;
        let selector = format!("{}._domainkey.{}", spec.selector, spec.domain);
        self.claim_address(doc, "spec.selector", &selector);
        if let Some(secret) = &spec.secret_ref {
            match dkim_secret(self.bundle, doc, &secret.name) {
                None => {
                    let message = format!(
                        "spec.secretRef: {}",
                        self.missing_secret(doc, &secret.name, &dkim::SECRET_KEYS)
                    );
                    self.fail(doc, message);
                }
                Some((key, pem)) => {
                    let problem = match DkimPrivateKey::from_pem(&pem) {
                        Err(e) => Some(e.to_string()),
                        Ok(found) if found.algorithm() != spec.algorithm => Some(format!(
                            "the key is {} but spec.algorithm is {}",
                            postbay_reconcile::keys::algorithm_name(found.algorithm()),
                            postbay_reconcile::keys::algorithm_name(spec.algorithm)
                        )),
                        Ok(_) => None,
                    };
                    if let Some(problem) = problem {
                        let message = format!(
                            "spec.secretRef: Secret {:?} key {key:?}: {problem}",
                            secret.name
                        );
                        self.fail(doc, message);
                    }
                }
            }
        }
        if let Some(blocked) = dkim::check_claim(self.store, &owner(doc), spec).await? {
            self.fail(doc, format!("spec.selector: {blocked}"));
        }
        Ok(())
    }

    /// Says whether the Secret is absent or only lacks the key.
    fn missing_secret(&self, doc: &Document, name: &str, keys: &[&str]) -> String {
        let namespace = doc.resource.namespace();
        let exists = self.bundle.secrets.iter().any(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.metadata.namespace.as_deref().unwrap_or("default") == namespace
        });
        if exists {
            format!("Secret {name:?} has no key {}", keys.join(" or "))
        } else {
            format!(
                "Secret {name:?} is not in the applied files (namespace {namespace:?}); \
                 add it to the same apply"
            )
        }
    }
}

/// The `(key, PEM)` of a DkimKey's Secret, from the applied files.
pub fn dkim_secret(bundle: &Bundle, doc: &Document, name: &str) -> Option<(String, String)> {
    let namespace = doc.resource.metadata().namespace.as_deref();
    dkim::SECRET_KEYS.iter().find_map(|key| {
        bundle.secret_value(namespace, name, key).map(|bytes| {
            (
                key.to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
    })
}

/// The owner every row of `doc` records.
pub fn owner(doc: &Document) -> Owner {
    Owner::new(doc.resource.namespace(), doc.resource.name())
}
