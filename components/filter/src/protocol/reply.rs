//! What the filter answers, in the JSON shape of Rspamd's `/checkv2` reply, so rspamc, Rspamd's
//! milter clients and Postbay's SMTP read it alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Action, Verdict};

/// One symbol as Rspamd reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolReply {
    pub name: String,
    pub score: f64,
    /// Rspamd's metric score; the same as `score` here (one metric).
    pub metric_score: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Headers the MTA should add and remove (Rspamd's `milter` block).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MilterReply {
    /// Name → value; added at the top of the header, in this order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_headers: BTreeMap<String, HeaderAdd>,
    /// Name → which occurrence to remove; 0 removes every occurrence (Rspamd's meaning).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remove_headers: BTreeMap<String, i32>,
}

/// A header to add: Rspamd's `{value, order}` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderAdd {
    pub value: String,
    pub order: u32,
}

/// The body of a `/checkv2` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReply {
    pub is_skipped: bool,
    pub score: f64,
    pub required_score: f64,
    pub action: String,
    pub symbols: BTreeMap<String, SymbolReply>,
    /// `smtp_message`: the text an MTA should give with a reject.
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
    #[serde(
        rename = "message-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_id: Option<String>,
    #[serde(default)]
    pub milter: MilterReply,
    /// For "rewrite subject": the new Subject, encoded for the header, as Rspamd sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub time_real: f64,
}

impl CheckReply {
    pub fn from_verdict(verdict: &Verdict, elapsed: std::time::Duration) -> CheckReply {
        let symbols = verdict
            .symbols
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    SymbolReply {
                        name: s.name.to_string(),
                        score: round(s.score),
                        metric_score: round(s.score),
                        description: s.description.to_string(),
                        options: s.options.clone(),
                    },
                )
            })
            .collect();
        let mut messages = BTreeMap::new();
        if let Some(text) = &verdict.smtp_message {
            messages.insert("smtp_message".to_string(), text.clone());
        }
        let mut milter = MilterReply::default();
        for (order, (name, value)) in verdict.add_headers.iter().enumerate() {
            milter.add_headers.insert(
                name.clone(),
                HeaderAdd {
                    value: value.clone(),
                    order: order as u32,
                },
            );
        }
        for name in &verdict.remove_headers {
            milter.remove_headers.insert(name.clone(), 0);
        }
        CheckReply {
            is_skipped: false,
            score: round(verdict.score),
            required_score: round(verdict.required_score),
            action: verdict.action.as_str().to_string(),
            symbols,
            messages,
            message_id: verdict.message_id.clone(),
            milter,
            subject: verdict.subject.clone(),
            time_real: elapsed.as_secs_f64(),
        }
    }

    /// The action named by the reply; an unknown name reads as no action.
    pub fn action(&self) -> Action {
        Action::parse(&self.action).unwrap_or(Action::NoAction)
    }
}

/// Scores as Rspamd prints them (two decimals are what rspamc shows).
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The reply to `/learnspam` and `/learnham`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LearnReply {
    pub success: bool,
}

/// An error body, as Rspamd sends it: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}
