//! Postbay's Kubernetes resource types (API group `postbay.dev`, version `v1alpha1`) and the
//! parsing of manifest files that carry them.
//!
//! The same types serve the operator, which reads them from the API server, and
//! `postbay apply`, which reads them from YAML files without a cluster; that is why the
//! manifest parser validates what the API server would (and a little more) before anything is
//! applied.
//!
//! ```
//! let manifest = r#"
//! apiVersion: postbay.dev/v1alpha1
//! kind: MailDomain
//! metadata: {name: example-com}
//! spec: {domain: example.com}
//! ---
//! apiVersion: postbay.dev/v1alpha1
//! kind: Mailbox
//! metadata: {name: alice}
//! spec:
//!   address: "alice%relay@example.com"
//!   passwordSecretRef: {name: passwords, key: alice}
//! "#;
//! let err = postbay_api::parse_stream(manifest).unwrap_err();
//! assert_eq!(err.document, 2);
//! assert!(err.to_string().starts_with(r#"document 2 (Mailbox "alice"): spec.address: "#));
//! ```

pub mod condition;
pub mod crd;
pub mod dkim;
pub mod dns;
pub mod domain;
pub mod mail_alias;
pub mod mailbox;
pub mod manifest;
pub mod quota;
pub mod refs;
pub mod validate;

pub use condition::{Condition, ConditionStatus};
pub use crd::{crds, crds_yaml};
pub use dkim::{DkimAlgorithm, DkimKey, DkimKeySpec, DkimKeyStatus};
pub use dns::{DnsRecord, DnsRecordType};
pub use domain::{
    DmarcPolicy, DmarcSpec, MailDomain, MailDomainSpec, MailDomainStatus, MtaStsMode, MtaStsSpec,
    SpamFilterSpec,
};
pub use mail_alias::{MailAlias, MailAliasSpec, MailAliasStatus};
pub use mailbox::{Mailbox, MailboxSpec, MailboxStatus, SendingLimits};
pub use manifest::{parse_stream, Bundle, DocumentProblem, ManifestError, Resource};
pub use quota::{parse_quota, QuotaError};
pub use refs::{SecretKeyRef, SecretRef};
pub use validate::{validate_address, validate_domain, ValidationError};

/// The API group of every Postbay resource.
pub const GROUP: &str = "postbay.dev";
/// The only served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "postbay.dev/v1alpha1";
