//! Reading `-f` arguments: files, folders of `*.yaml`/`*.yml`, or `-` for standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use postbay_api::{parse_stream, Resource};

/// One YAML stream and where it came from.
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub label: String,
    pub text: String,
}

/// One resource with its position, for error messages.
pub struct Document {
    pub source: String,
    /// 1-based position in its stream, counted as the manifest parser counts.
    pub index: usize,
    pub resource: Resource,
}

impl Document {
    /// `FILE: document N (Kind "name")`, the prefix of every message about it.
    pub fn describe(&self) -> String {
        format!(
            "{}: document {} ({} {:?})",
            self.source,
            self.index,
            self.resource.kind(),
            self.resource.name()
        )
    }
}

/// Expands the `-f` arguments in order; a folder contributes its `*.yaml` and `*.yml` files
/// sorted by name (not recursively, as `kubectl apply -f DIR` does).
pub fn read(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading manifests from standard input")?;
            out.push(Source {
                label: "<stdin>".into(),
                text,
            });
        } else if arg.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(arg)
                .with_context(|| format!("reading folder {}", arg.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_yaml(p))
                .collect();
            files.sort();
            if files.is_empty() {
                anyhow::bail!("{}: no *.yaml or *.yml files in this folder", arg.display());
            }
            for file in files {
                out.push(read_file(&file)?);
            }
        } else {
            out.push(read_file(arg)?);
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Source> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Source {
        label: path.display().to_string(),
        text,
    })
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parses every source; the first broken document anywhere stops everything, with the
/// parser's message (document, kind, name, field).
pub fn parse(sources: &[Source]) -> Result<Vec<Document>, String> {
    let mut out = Vec::new();
    for source in sources {
        let resources = parse_stream(&source.text).map_err(|e| format!("{}: {e}", source.label))?;
        let positions = positions(&source.text);
        for (resource, index) in resources.into_iter().zip(positions) {
            out.push(Document {
                source: source.label.clone(),
                index,
                resource,
            });
        }
    }
    Ok(out)
}

/// Positions of the non-empty documents, which `parse_stream` returns in order: it skips
/// empty documents but counts them, and so do we.
fn positions(text: &str) -> Vec<usize> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).ok()?;
            (!value.is_null()).then_some(i + 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_empty_documents() {
        let text = "---\n---\na: 1\n---\n\n---\nb: 2\n";
        assert_eq!(positions(text), [2, 4]);
    }
}
