//! `MailAlias`: an address that forwards to one or more other addresses.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::validate::ADDRESS_PATTERN;

/// An alias. Destinations may be local mailboxes or external addresses.
// Clippy reads kube's repeated `printcolumn(type_ = "string")` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "postbay.dev",
    version = "v1alpha1",
    kind = "MailAlias",
    doc = "An address forwarding to one or more other addresses.",
    namespaced,
    status = "MailAliasStatus",
    shortname = "mal",
    category = "postbay",
    derive = "PartialEq",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(
        name = "Destinations",
        type_ = "string",
        json_path = ".spec.destinations"
    ),
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
pub struct MailAliasSpec {
    /// The alias address, `local@domain`, under a declared `MailDomain`.
    #[schemars(length(min = 3, max = 254), regex(pattern = ADDRESS_PATTERN))]
    pub address: String,
    /// Where mail for the alias goes; at least one address.
    #[schemars(length(min = 1), inner(regex(pattern = ADDRESS_PATTERN)))]
    pub destinations: Vec<String>,
}

/// What the operator observed for an alias.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailAliasStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
