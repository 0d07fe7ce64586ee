//! Reading manifest files: a YAML stream of Postbay resources and the Secrets they refer to.
//!
//! Parsing is all or nothing. Every document is checked for shape (what the CRD schema would
//! reject, unknown fields included, as `kubectl apply` does with strict field validation) and
//! for content (domain and address syntax, quotas), and the first failure is reported with the
//! document's position, kind, name and the offending field. Cross-document rules (a mailbox's
//! domain must be declared) belong to the caller, which sees the whole [`Bundle`].

mod bundle;
mod checks;
mod strict;

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_yaml::Value;

use crate::quota::QuotaError;
use crate::validate::ValidationError;
use crate::{DkimKey, MailAlias, MailDomain, Mailbox, API_VERSION};

pub use bundle::Bundle;

/// One parsed document.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Domain(MailDomain),
    Mailbox(Mailbox),
    Alias(MailAlias),
    DkimKey(DkimKey),
    Secret(Secret),
}

impl Resource {
    /// The `kind` as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Domain(_) => "MailDomain",
            Resource::Mailbox(_) => "Mailbox",
            Resource::Alias(_) => "MailAlias",
            Resource::DkimKey(_) => "DkimKey",
            Resource::Secret(_) => "Secret",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Resource::Domain(r) => &r.metadata,
            Resource::Mailbox(r) => &r.metadata,
            Resource::Alias(r) => &r.metadata,
            Resource::DkimKey(r) => &r.metadata,
            Resource::Secret(r) => &r.metadata,
        }
    }

    /// `metadata.name`; always present on what [`parse_stream`] returns.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`, or `default` when the manifest leaves it out.
    pub fn namespace(&self) -> &str {
        namespace_or_default(self.metadata().namespace.as_deref())
    }
}

/// Kubernetes puts objects without a namespace into `default`; so do we.
pub(crate) fn namespace_or_default(namespace: Option<&str>) -> &str {
    namespace.unwrap_or("default")
}

/// A document that could not be used, and where it is.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// 1-based position in the stream, counting empty documents too so that it matches what
    /// an editor shows between `---` lines.
    pub document: usize,
    /// `kind`, when the document has one.
    pub kind: Option<String>,
    /// `metadata.name`, when the document has one.
    pub name: Option<String>,
    /// What is wrong (boxed to keep `Result`s small).
    #[source]
    pub problem: Box<DocumentProblem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " ({kind} {name:?})")?,
            (Some(kind), None) => write!(f, " ({kind})")?,
            (None, Some(name)) => write!(f, " ({name:?})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.problem)
    }
}

/// What is wrong with one document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentProblem {
    /// The stream is not YAML; the message carries line and column.
    #[error("invalid YAML: {0}")]
    Syntax(#[source] serde_yaml::Error),
    #[error("not a mapping with apiVersion, kind and metadata")]
    NotAMapping,
    /// `apiVersion`, `kind` or `metadata.name` is absent or not a string.
    #[error("{0}: required")]
    Missing(&'static str),
    #[error("unsupported resource {kind:?} in apiVersion {api_version:?} (expected {API_VERSION} MailDomain, Mailbox, MailAlias or DkimKey, or v1 Secret)")]
    UnsupportedKind { api_version: String, kind: String },
    /// A field the schema does not know, e.g. a misspelling.
    #[error("{path}: unknown field{}", hint.as_ref().map(|h| format!(" (did you mean {h:?}?)")).unwrap_or_default())]
    UnknownField { path: String, hint: Option<String> },
    /// Wrong type, missing required field, unknown enum value, bad base64: serde's message,
    /// which starts with the field path and ends with the line and column.
    #[error("{0}")]
    Shape(#[source] serde_yaml::Error),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{field}: {source}")]
    Quota {
        field: String,
        #[source]
        source: QuotaError,
    },
    #[error("{field}: {message}")]
    Rule { field: String, message: String },
    #[error("same {kind} {namespace}/{name} as document {first}")]
    Duplicate {
        kind: String,
        namespace: String,
        name: String,
        first: usize,
    },
}

/// What a document claims to be, read before its typed parse.
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
}

impl Header {
    fn read(doc: &Value) -> Header {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        Header {
            api_version: text(doc.get("apiVersion")),
            kind: text(doc.get("kind")),
            name: text(doc.get("metadata").and_then(|m| m.get("name"))),
        }
    }
}

/// Parses a `---` separated YAML stream; empty documents are skipped. Returns every resource
/// in stream order, or the first error.
pub fn parse_stream(text: &str) -> Result<Vec<Resource>, ManifestError> {
    let mut resources = Vec::new();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();

    // Two readers over the same text, in step: the first yields a loose `Value` to learn the
    // kind and check field names, the second feeds the typed parse, whose errors then carry
    // the field path and the line in the original text (a `Value` round trip would lose both).
    let loose = serde_yaml::Deserializer::from_str(text);
    let typed = serde_yaml::Deserializer::from_str(text);
    for (index, (loose, typed)) in loose.zip(typed).enumerate() {
        let document = index + 1;
        let fail = |header: Option<&Header>, problem| ManifestError {
            document,
            kind: header.and_then(|h| h.kind.clone()),
            name: header.and_then(|h| h.name.clone()),
            problem: Box::new(problem),
        };

        let value =
            Value::deserialize(loose).map_err(|e| fail(None, DocumentProblem::Syntax(e)))?;
        if value.is_null() {
            continue;
        }
        if !value.is_mapping() {
            return Err(fail(None, DocumentProblem::NotAMapping));
        }
        let header = Header::read(&value);
        let resource =
            parse_document(&header, &value, typed).map_err(|p| fail(Some(&header), p))?;

        let key = (
            resource.kind().to_string(),
            resource.namespace().to_string(),
            resource.name().to_string(),
        );
        if let Some(first) = seen.get(&key) {
            let (kind, namespace, name) = key;
            return Err(fail(
                Some(&header),
                DocumentProblem::Duplicate {
                    kind,
                    namespace,
                    name,
                    first: *first,
                },
            ));
        }
        seen.insert(key, document);
        resources.push(resource);
    }
    Ok(resources)
}

fn parse_document(
    header: &Header,
    value: &Value,
    typed: serde_yaml::Deserializer<'_>,
) -> Result<Resource, DocumentProblem> {
    let api_version = header
        .api_version
        .as_deref()
        .ok_or(DocumentProblem::Missing("apiVersion"))?;
    let kind = header
        .kind
        .as_deref()
        .ok_or(DocumentProblem::Missing("kind"))?;

    let shape = DocumentProblem::Shape;
    let resource = match (api_version, kind) {
        (API_VERSION, "MailDomain") => {
            strict::check::<MailDomain>(value)?;
            Resource::Domain(MailDomain::deserialize(typed).map_err(shape)?)
        }
        (API_VERSION, "Mailbox") => {
            strict::check::<Mailbox>(value)?;
            Resource::Mailbox(Mailbox::deserialize(typed).map_err(shape)?)
        }
        (API_VERSION, "MailAlias") => {
            strict::check::<MailAlias>(value)?;
            Resource::Alias(MailAlias::deserialize(typed).map_err(shape)?)
        }
        (API_VERSION, "DkimKey") => {
            strict::check::<DkimKey>(value)?;
            Resource::DkimKey(DkimKey::deserialize(typed).map_err(shape)?)
        }
        ("v1", "Secret") => {
            strict::check_secret(value)?;
            Resource::Secret(Secret::deserialize(typed).map_err(shape)?)
        }
        _ => {
            return Err(DocumentProblem::UnsupportedKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
        }
    };
    checks::check(&resource)?;
    Ok(resource)
}

#[cfg(test)]
mod tests;
