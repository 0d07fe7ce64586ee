//! `MailDomain`: a DNS domain Postbay accepts mail for.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::dns::DnsRecord;
use crate::validate::{ADDRESS_OR_LOCAL_PART_PATTERN, DOMAIN_PATTERN};

/// A mail domain. Mailboxes and aliases may only use domains declared here.
// Clippy reads kube's repeated `printcolumn(type_ = "string")` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "postbay.dev",
    version = "v1alpha1",
    kind = "MailDomain",
    doc = "A mail domain Postbay accepts mail for.",
    namespaced,
    status = "MailDomainStatus",
    shortname = "md",
    category = "postbay",
    derive = "PartialEq",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "DMARC",
        type_ = "string",
        json_path = ".spec.dmarc.policy",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainSpec {
    /// Lowercase DNS name, e.g. `example.com`. Immutable: mailboxes, keys and stored mail are
    /// keyed by it, so renaming means creating a new domain.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DOMAIN_PATTERN),
        extend("x-kubernetes-validations" = [
            {"rule": "self == oldSelf", "message": "domain is immutable"}
        ])
    )]
    pub domain: String,
    /// Where mail for unknown local parts goes: a full address, or a bare local part meaning
    /// that local part at this domain. Absent: unknown recipients are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ADDRESS_OR_LOCAL_PART_PATTERN))]
    pub catch_all: Option<String>,
    /// The DMARC record to publish for the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<DmarcSpec>,
    /// The MTA-STS policy to serve for the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<MtaStsSpec>,
    /// Spam filter thresholds and symbol scores for mail to this domain, over the filter's
    /// settings (docs/filter.md). Absent: the settings alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam_filter: Option<SpamFilterSpec>,
}

/// Per-domain overrides of `postbay filter`'s scoring. A message to several domains is
/// scored with the strictest of their values (the lowest thresholds, the highest scores).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpamFilterSpec {
    /// Score from which mail is tagged `X-Spam: Yes` and filed in Junk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub add_header: Option<f64>,
    /// Score from which mail is refused (`550 5.7.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub reject: Option<f64>,
    /// Symbol name → score, e.g. `{BAYES_SPAM: 8}` (the names docs/filter.md lists).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scores: std::collections::BTreeMap<String, f64>,
}

/// DMARC settings (RFC 7489).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmarcSpec {
    /// What receivers should do with mail failing DMARC.
    #[serde(default)]
    pub policy: DmarcPolicy,
    /// Address for aggregate reports (`rua=mailto:...`); absent: no reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_address: Option<String>,
}

/// DMARC `p=` values; `none` (monitor only) is the safe start.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    #[default]
    None,
    Quarantine,
    Reject,
}

/// MTA-STS settings (RFC 8461).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtaStsSpec {
    /// Policy mode served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    pub mode: MtaStsMode,
}

/// MTA-STS `mode:` values.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MtaStsMode {
    None,
    Testing,
    Enforce,
}

/// What the operator observed and wants published for a domain.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Records to publish in the domain's zone (MX, SPF, DMARC, MTA-STS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<DnsRecord>,
}
