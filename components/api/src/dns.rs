//! DNS records that a resource needs published, as reported in its status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A record the operator wants in the zone (MX, SPF, DMARC, MTA-STS, DKIM, ...).
///
/// Postbay does not own the zone; it tells the administrator what to publish and, where it can
/// look the name up, whether the published value matches.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// Record type.
    #[serde(rename = "type")]
    pub type_: DnsRecordType,
    /// Fully qualified owner name, without trailing dot.
    pub name: String,
    /// Record data in zone-file presentation form.
    pub value: String,
    /// Why the record is needed, e.g. `dmarc` or `dkim:default`.
    pub purpose: String,
    /// `true` when a lookup found exactly this value, `false` when it found none or another
    /// value, absent when not checked yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
}

/// The record types Postbay asks for.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Tlsa,
    Srv,
}
