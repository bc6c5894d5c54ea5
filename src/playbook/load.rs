//! The only place that reads playbook files: bytes → bounded UTF-8 → spanned tree → validated
//! playbook. Also binds `--set` values to the playbook's params.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::types::{ParamType, Playbook};
use super::validate::{self, check_param_value};
use crate::diagnostics::{Problem, Report, did_you_mean};
use crate::source::{Source, Span};
use crate::yaml::node::{self, Limits, Node};

/// A validated playbook with the text it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub source: Source,
    pub root: Node,
    pub playbook: Playbook,
    /// sha256 of the file's bytes, recorded in the journal so `resume` can refuse a changed file.
    pub sha256: String,
}

/// Why a playbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in {}", .0.problems.len(), .0.source.name())]
    Invalid(Report),
}

/// Reads and validates a playbook file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let bytes = crate::yaml::read_bounded(path, Limits::PLAYBOOK.max_bytes).map_err(|source| {
        LoadError::Io {
            path: name.clone(),
            source,
        }
    })?;
    load_bytes(&name, bytes)
}

/// Validates playbook bytes named `name`.
pub fn load_bytes(name: &str, bytes: Vec<u8>) -> Result<Loaded, LoadError> {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let invalid =
        |source: Source, problem: Problem| LoadError::Invalid(Report::new(source, vec![problem]));
    let text = match node::text_from_bytes(name, bytes, Limits::PLAYBOOK) {
        Ok(text) => text,
        Err(e @ node::ParseError::NotUtf8 { line, column, .. }) => {
            let span = Span {
                offset: 0,
                len: 0,
                line,
                column,
            };
            return Err(invalid(
                Source::new(name, ""),
                Problem::new(e.to_string(), Some(span)),
            ));
        }
        Err(e) => {
            return Err(invalid(
                Source::new(name, ""),
                Problem::new(e.to_string(), None),
            ));
        }
    };
    let source = Source::new(name, text);
    let root = node::parse_document(&source, Limits::PLAYBOOK).map_err(|e| {
        let span = match &e {
            node::ParseError::Yaml { span, .. } => *span,
            _ => None,
        };
        invalid(
            source.clone(),
            Problem::new(format!("invalid YAML: {e}"), span).label("here"),
        )
    })?;
    let playbook = validate::validate(&root)
        .map_err(|problems| LoadError::Invalid(Report::new(source.clone(), problems)))?;
    Ok(Loaded {
        source,
        root,
        playbook,
        sha256,
    })
}

/// The name under which `--set` values are reported.
pub const SET_SOURCE: &str = "--set";

/// Binds `name=value` assignments to the playbook's params, applying defaults. Problems with
/// the assignments point into the command line; a missing required param points at its
/// declaration in the playbook.
pub fn bind_params(
    loaded: &Loaded,
    assignments: &[String],
) -> Result<Map<String, Value>, Vec<Report>> {
    bind(loaded, assignments, true)
}

/// Checks only the values `assignments` give (their names, types, patterns and allowed
/// values), not that every required param is there: what `validate -n` can know.
pub fn check_given_params(loaded: &Loaded, assignments: &[String]) -> Result<(), Vec<Report>> {
    bind(loaded, assignments, false).map(|_| ())
}

fn bind(
    loaded: &Loaded,
    assignments: &[String],
    require_all: bool,
) -> Result<Map<String, Value>, Vec<Report>> {
    let text = assignments.join("\n");
    let set_source = Source::new(SET_SOURCE, text.clone());
    let mut set_problems = Vec::new();
    let mut values = Map::new();
    // Params given on the command line, valid or not: a bad value is not also "missing".
    let mut given = std::collections::HashSet::new();
    let params = &loaded.playbook.params;
    let mut offset = 0;
    for assignment in assignments {
        let span = set_source.span_at(offset, assignment.len());
        offset += assignment.len() + 1;
        let Some((name, raw)) = assignment.split_once('=') else {
            set_problems.push(
                Problem::new(format!("`{assignment}` is not name=value"), Some(span))
                    .label("expected name=value"),
            );
            continue;
        };
        let Some(spec) = params.get(name) else {
            let mut p = Problem::new(
                format!("the playbook has no param `{name}`"),
                Some(span.narrow(0, name.len())),
            )
            .label("unknown param");
            p = match did_you_mean(name, params.keys().map(String::as_str)) {
                Some(close) => p.help(format!("did you mean `{close}`?")),
                None => p.help(format!(
                    "params: {}",
                    params.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            };
            set_problems.push(p);
            continue;
        };
        given.insert(name.to_string());
        let value_span = span.narrow(name.len() + 1, raw.len());
        let value = match parse_value(spec.ty, raw) {
            Ok(value) => value,
            Err(message) => {
                set_problems.push(
                    Problem::new(format!("param `{name}` {message}"), Some(value_span))
                        .label(format!("expected {}", spec.ty.as_str())),
                );
                continue;
            }
        };
        let pattern = spec
            .pattern
            .as_ref()
            .and_then(|p| regex::Regex::new(&format!("^(?:{p})$")).ok());
        let allowed = spec
            .allowed
            .as_ref()
            .map(|a| Node::from_json(&Value::Array(a.clone()), Span::default()));
        let node = Node::from_json(&value, value_span);
        if let Err(message) =
            check_param_value(spec.ty.as_str(), &node, pattern.as_ref(), allowed.as_ref())
        {
            set_problems.push(
                Problem::new(format!("param `{name}` {message}"), Some(value_span))
                    .label("not allowed"),
            );
            continue;
        }
        values.insert(name.to_string(), value);
    }
    let mut missing = Vec::new();
    for (name, spec) in params {
        if values.contains_key(name) || given.contains(name) {
            continue;
        }
        match &spec.default {
            Some(default) => {
                values.insert(name.clone(), default.clone());
            }
            None if spec.required && require_all => {
                let span = loaded
                    .root
                    .get("params")
                    .and_then(Node::as_map)
                    .and_then(|m| m.iter().find(|(k, _)| &k.name == name))
                    .map(|(k, _)| k.span);
                missing.push(
                    Problem::new(format!("param `{name}` is required"), span)
                        .label("declared here")
                        .help(format!("pass --set {name}=<{}>", spec.ty.as_str())),
                );
            }
            None => {
                values.insert(name.clone(), Value::Null);
            }
        }
    }
    let mut reports = Vec::new();
    if !set_problems.is_empty() {
        reports.push(Report::new(set_source, set_problems));
    }
    if !missing.is_empty() {
        reports.push(Report::new(loaded.source.clone(), missing));
    }
    if reports.is_empty() {
        Ok(values)
    } else {
        Err(reports)
    }
}

fn parse_value(ty: ParamType, raw: &str) -> Result<Value, String> {
    match ty {
        ParamType::String => Ok(Value::String(raw.to_string())),
        ParamType::Int => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("must be an integer, found `{raw}`")),
        ParamType::Bool => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("must be true or false, found `{raw}`")),
        },
        ParamType::List => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
    }
}
