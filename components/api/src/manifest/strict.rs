//! Unknown-field detection against the CRD schemas.
//!
//! serde ignores fields it does not know, and the API server silently prunes them, so a
//! misspelt optional field (`catchall:` for `catchAll:`) would be dropped without a word. Like
//! `kubectl apply --validate=strict`, we refuse it instead, and suggest the likely spelling.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::{CustomResourceExt, Resource};
use serde_yaml::Value;

use super::DocumentProblem;

/// Fields every object may carry beside those in its schema.
const OBJECT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];
/// Top-level fields of a v1 Secret.
const SECRET_FIELDS: [&str; 4] = ["data", "stringData", "type", "immutable"];

/// Checks a Postbay resource's fields against its CRD's structural schema.
pub(super) fn check<K: Resource<DynamicType = ()> + CustomResourceExt>(
    doc: &Value,
) -> Result<(), DocumentProblem> {
    let schema = schemas()
        .get(K::kind(&()).as_ref())
        .expect("every Postbay kind has a CRD schema");
    check_root(doc, &[], Some(schema))
}

/// Checks the top level of a Secret; `metadata` and the data maps are free-form.
pub(super) fn check_secret(doc: &Value) -> Result<(), DocumentProblem> {
    check_root(doc, &SECRET_FIELDS, None)
}

fn check_root(
    doc: &Value,
    extra: &[&str],
    schema: Option<&JSONSchemaProps>,
) -> Result<(), DocumentProblem> {
    let Some(map) = doc.as_mapping() else {
        return Ok(());
    };
    let properties = schema.and_then(|s| s.properties.as_ref());
    for (key, value) in map {
        let name = key_name(key);
        if OBJECT_FIELDS.contains(&name.as_str()) || extra.contains(&name.as_str()) {
            continue;
        }
        match properties.and_then(|p| p.get(&name)) {
            Some(sub) => walk(value, sub, &name)?,
            None => {
                let known = OBJECT_FIELDS
                    .iter()
                    .chain(extra)
                    .map(|s| s.to_string())
                    .chain(properties.into_iter().flat_map(|p| p.keys().cloned()));
                return Err(unknown(name.clone(), &name, known));
            }
        }
    }
    Ok(())
}

fn walk(value: &Value, schema: &JSONSchemaProps, path: &str) -> Result<(), DocumentProblem> {
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        return Ok(());
    }
    match value {
        Value::Mapping(map) => {
            let additional = match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => Some(&**s),
                _ => None,
            };
            let empty = BTreeMap::new();
            let properties = schema.properties.as_ref().unwrap_or(&empty);
            if properties.is_empty() && additional.is_none() {
                return Ok(()); // a free-form object: nothing to check against
            }
            for (key, sub_value) in map {
                let name = key_name(key);
                let sub_path = format!("{path}.{name}");
                match properties.get(&name).or(additional) {
                    Some(sub) => walk(sub_value, sub, &sub_path)?,
                    None => return Err(unknown(sub_path, &name, properties.keys().cloned())),
                }
            }
        }
        Value::Sequence(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
                for (i, sub_value) in items.iter().enumerate() {
                    walk(sub_value, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}

fn unknown(path: String, name: &str, known: impl Iterator<Item = String>) -> DocumentProblem {
    DocumentProblem::UnknownField {
        path,
        hint: closest(name, known),
    }
}

/// The known field a misspelling most likely meant: same letters in another case, or at most
/// two edits away from a name long enough for that to be telling.
fn closest(name: &str, known: impl Iterator<Item = String>) -> Option<String> {
    known
        .map(|k| {
            let d = if k.eq_ignore_ascii_case(name) {
                0
            } else {
                edit_distance(&k.to_ascii_lowercase(), &name.to_ascii_lowercase())
            };
            (d, k)
        })
        .filter(|(d, k)| *d <= 2 && *d * 3 <= k.len())
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Root schemas of the four CRDs by kind, built once.
fn schemas() -> &'static HashMap<String, JSONSchemaProps> {
    static SCHEMAS: OnceLock<HashMap<String, JSONSchemaProps>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crate::crds()
            .into_iter()
            .filter_map(|crd| {
                let schema = crd
                    .spec
                    .versions
                    .into_iter()
                    .next()?
                    .schema?
                    .open_api_v3_schema?;
                Some((crd.spec.names.kind, schema))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let known = || {
            ["catchAll", "domain", "dmarc", "mtaSts"]
                .map(String::from)
                .into_iter()
        };
        assert_eq!(closest("catchall", known()).as_deref(), Some("catchAll"));
        assert_eq!(closest("domian", known()).as_deref(), Some("domain"));
        assert_eq!(closest("mtasts", known()).as_deref(), Some("mtaSts"));
        assert_eq!(closest("relay", known()), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("quota", "quote"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
