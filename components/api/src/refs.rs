//! References from Postbay resources to Kubernetes Secrets in the same namespace.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One key of a Secret, e.g. the password of a mailbox.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the referring resource.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret's `data` or `stringData`.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A whole Secret, e.g. the one holding a DKIM private key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the namespace of the referring resource.
    #[schemars(length(min = 1))]
    pub name: String,
}
