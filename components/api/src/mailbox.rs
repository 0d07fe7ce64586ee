//! `Mailbox`: an account that receives and stores mail and may log in.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::quota::QUOTA_PATTERN;
use crate::refs::SecretKeyRef;
use crate::validate::ADDRESS_PATTERN;

/// A mailbox. Its address's domain must be declared by a `MailDomain`.
// Clippy reads kube's repeated `printcolumn(type_ = "string")` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "postbay.dev",
    version = "v1alpha1",
    kind = "Mailbox",
    doc = "A mailbox: an account that stores mail and may log in.",
    namespaced,
    status = "MailboxStatus",
    shortname = "mbx",
    category = "postbay",
    derive = "PartialEq",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Quota", type_ = "string", json_path = ".spec.quota"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MailboxSpec {
    /// The mailbox's primary address and login name, `local@domain`. Immutable: the stored
    /// mail and its row are keyed by it, so a new address means a new Mailbox (declare the
    /// old one as an alias to keep receiving its mail).
    #[schemars(
        length(min = 3, max = 254),
        regex(pattern = ADDRESS_PATTERN),
        extend("x-kubernetes-validations" = [
            {"rule": "self == oldSelf", "message": "address is immutable: create a new Mailbox instead"}
        ])
    )]
    pub address: String,
    /// The Secret key holding the password: either cleartext, or a Dovecot-style hash such as
    /// `{ARGON2ID}$argon2id$...` so that the cleartext never has to exist in the cluster.
    pub password_secret_ref: SecretKeyRef,
    /// Storage limit as a Kubernetes quantity (`1Gi`, `500Mi`, `2G`); absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUOTA_PATTERN))]
    pub quota: Option<String>,
    /// Further addresses delivered into this mailbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = ADDRESS_PATTERN)))]
    pub aliases: Vec<String>,
    /// A disabled mailbox keeps its mail but cannot log in and receives nothing.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Further addresses this user may send as on the submission ports (the address and its
    /// aliases are always allowed); `@domain` allows every address of a domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = SEND_AS_PATTERN)))]
    pub send_as: Vec<String>,
    /// Hourly sending limits on the submission ports; absent: the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_limits: Option<SendingLimits>,
}

/// `local@domain`, or `@domain` for a whole domain.
pub const SEND_AS_PATTERN: &str = r"^([^@\s]+)?@[^@\s]+\.[^@\s]+$";

/// How much a user may send per hour (0 = no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendingLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_per_hour: Option<u32>,
}

fn enabled_default() -> bool {
    true
}

impl MailboxSpec {
    /// The quota in bytes; `Ok(None)` for unlimited.
    pub fn quota_bytes(&self) -> Result<Option<u64>, crate::quota::QuotaError> {
        self.quota
            .as_deref()
            .map(crate::quota::parse_quota)
            .transpose()
    }
}

/// What the operator observed for a mailbox.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailboxStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
