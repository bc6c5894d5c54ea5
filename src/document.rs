//! Loading a YAML document of one of the project's formats (a drill, a scenario) with the
//! playbooks' located diagnostics: bounded read, YAML parse, the format's JSON schema checked
//! node by node (so every problem names its line and field), then the typed value. What a schema
//! cannot express, each format checks on the returned tree.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::diagnostics::{Problem, Report};
use crate::source::{Source, Span};
use crate::yaml::node::{self, Limits, Node};
use crate::yaml::schema_check;

/// A document that passed its schema: the value, its tree (for locating later problems), its
/// source and the sha256 of its bytes.
pub struct Document<T> {
    pub value: T,
    pub root: Node,
    pub source: Source,
    pub sha256: String,
}

/// Why a document was not taken: its problems, located, or an unreadable file.
pub enum DocumentError {
    Invalid(Vec<Report>),
    Io(String),
}

impl<T> Document<T> {
    /// The problems found after loading, as an error located in this document.
    pub fn invalid(&self, problems: Vec<Problem>) -> DocumentError {
        DocumentError::Invalid(vec![Report::new(self.source.clone(), problems)])
    }

    /// Where the node at `pointer` (`/spec/modules/0/id`) is.
    pub fn span(&self, pointer: &str) -> Option<Span> {
        self.root.pointer(pointer).map(|n| n.span)
    }
}

/// Reads `path` as a `what` (`drill`, `scenario`) checked against `schema`.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    schema: &Value,
) -> Result<Document<T>, DocumentError> {
    let name = path.display().to_string();
    let bytes = crate::yaml::read_bounded(path, Limits::PLAYBOOK.max_bytes)
        .map_err(|e| DocumentError::Io(format!("cannot read {what} {name}: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let text = node::text_from_bytes(&name, bytes, Limits::PLAYBOOK)
        .map_err(|e| DocumentError::Io(e.to_string()))?;
    let source = Source::new(name.clone(), text);
    let invalid = |problems: Vec<Problem>| {
        DocumentError::Invalid(vec![Report::new(source.clone(), problems)])
    };
    let root = node::parse_document(&source, Limits::PLAYBOOK).map_err(|e| {
        let span = match &e {
            node::ParseError::Yaml { span, .. } => *span,
            _ => None,
        };
        invalid(vec![
            Problem::new(format!("invalid YAML: {e}"), span).label("here"),
        ])
    })?;
    let mut problems = Vec::new();
    schema_check::check(&root, schema, schema, "", &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let value: T = serde_json::from_value(root.to_json()).map_err(|e| {
        invalid(vec![Problem::new(
            format!("invalid {what}: {e}"),
            Some(root.span),
        )])
    })?;
    Ok(Document {
        value,
        root,
        source,
        sha256,
    })
}
