//! Status conditions shaped like `metav1.Condition`.
//!
//! Our own type rather than k8s-openapi's: that one makes `lastTransitionTime`, `reason` and
//! `message` required, which forces every status writer to carry a timestamp type; here the
//! timestamp is an RFC 3339 string that may be absent, and the wire format stays the same.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type every Postbay resource reports.
pub const READY: &str = "Ready";

/// One observation about a resource, e.g. `Ready=True`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The tri-state of a condition, spelled as Kubernetes spells it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl Condition {
    /// A condition without timestamp or generation; the controller fills those in.
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }
}
