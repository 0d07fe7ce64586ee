//! `DkimKey`: a DKIM signing key for one domain and selector.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::dns::DnsRecord;
use crate::refs::SecretRef;
use crate::validate::{DOMAIN_PATTERN, SELECTOR_PATTERN};

/// A DKIM key. Its public half is reported as a DNS record to publish.
// Clippy reads kube's repeated `printcolumn(type_ = "string")` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "postbay.dev",
    version = "v1alpha1",
    kind = "DkimKey",
    doc = "A DKIM signing key for one domain and selector.",
    namespaced,
    status = "DkimKeyStatus",
    shortname = "dkim",
    category = "postbay",
    derive = "PartialEq",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Selector", type_ = "string", json_path = ".spec.selector"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".spec.algorithm"),
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
pub struct DkimKeySpec {
    /// The signing domain (`d=`), a declared `MailDomain`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DOMAIN_PATTERN),
        extend("x-kubernetes-validations" = [
            {"rule": "self == oldSelf", "message": "domain is immutable: create a new DkimKey instead"}
        ])
    )]
    pub domain: String,
    /// The selector (`s=`); the key is published at `<selector>._domainkey.<domain>`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = SELECTOR_PATTERN),
        extend("x-kubernetes-validations" = [
            {"rule": "self == oldSelf", "message": "selector is immutable: rotate by adding a new DkimKey"}
        ])
    )]
    pub selector: String,
    /// Signature algorithm.
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    /// Secret holding the private key (PEM under `tls.key` or `private.key`); absent: the
    /// operator generates a key into a Secret it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// DKIM `a=` values, spelled as in the signature header. RSA is understood by every
/// verifier; Ed25519 (RFC 8463) is not, and is usually deployed beside an RSA key.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DkimAlgorithm {
    #[default]
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

/// What the operator observed for a key.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DkimKeyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The TXT record carrying the public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_record: Option<DnsRecord>,
}
