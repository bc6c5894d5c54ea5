//! Loading a scenario: located problems (file, line, field) from its schema, then what a schema
//! cannot express: unique ids, durations that parse, expectations naming an objective of the
//! scenario and a step of its playbook, and a playbook that loads with the scenario's params.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::spec::Scenario;
use crate::diagnostics::{Problem, did_you_mean};
use crate::document::{self, Document, DocumentError};
use crate::duration::parse_duration;
use crate::playbook::load::{LoadError, Loaded};

/// A scenario, checked, with its playbook and bound params.
pub struct LoadedScenario {
    pub scenario: Scenario,
    pub path: PathBuf,
    pub sha256: String,
    pub playbook: Loaded,
    pub params: Map<String, Value>,
}

pub fn scenario_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema serializes")
}

pub fn load(path: &Path) -> Result<LoadedScenario, DocumentError> {
    let document = document::load::<Scenario>(path, "scenario", &scenario_schema())?;
    let mut problems = Vec::new();
    check_ids_and_times(&document, &mut problems);
    let playbook_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&document.value.spec.playbook);
    let playbook = match crate::playbook::load::load_file(&playbook_path) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(report)) => return Err(DocumentError::Invalid(vec![report])),
        Err(e) => {
            problems.push(Problem::new(
                format!("spec.playbook: {e}"),
                document.span("/spec/playbook"),
            ));
            return Err(document.invalid(problems));
        }
    };
    check_steps(&document, &playbook, &mut problems);
    if !problems.is_empty() {
        return Err(document.invalid(problems));
    }
    let assignments: Vec<String> = document
        .value
        .spec
        .params
        .iter()
        .map(|(name, value)| match value {
            Value::String(s) => format!("{name}={s}"),
            Value::Array(items) => format!(
                "{name}={}",
                items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => format!("{name}={other}"),
        })
        .collect();
    let params = crate::playbook::load::bind_params(&playbook, &assignments)
        .map_err(DocumentError::Invalid)?;
    Ok(LoadedScenario {
        scenario: document.value,
        path: path.to_path_buf(),
        sha256: document.sha256,
        playbook,
        params,
    })
}

fn check_ids_and_times(document: &Document<Scenario>, problems: &mut Vec<Problem>) {
    let spec = &document.value.spec;
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut unique = |id: &str, pointer: String, problems: &mut Vec<Problem>| {
        if let Some((_, first)) = seen.iter().find(|(seen_id, _)| seen_id == id) {
            problems.push(Problem::new(
                format!("{}: id `{id}` is already used at {first}", field(&pointer)),
                document.span(&pointer),
            ));
        } else {
            seen.push((id.to_string(), field(&pointer)));
        }
    };
    for (i, objective) in spec.objectives.iter().enumerate() {
        unique(&objective.id, format!("/spec/objectives/{i}/id"), problems);
    }
    for (m, module) in spec.modules.iter().enumerate() {
        unique(&module.id, format!("/spec/modules/{m}/id"), problems);
        for (i, inject) in module.injects.iter().enumerate() {
            let at = format!("/spec/modules/{m}/injects/{i}");
            unique(&inject.id, format!("{at}/id"), problems);
            duration(document, &inject.at, &format!("{at}/at"), problems);
            for (e, expect) in inject.expect.iter().enumerate() {
                let pointer = format!("{at}/expect/{e}");
                duration(
                    document,
                    &expect.within,
                    &format!("{pointer}/within"),
                    problems,
                );
                let objectives = spec.objectives.iter().map(|o| o.id.as_str());
                if !spec.objectives.iter().any(|o| o.id == expect.objective) {
                    problems.push(Problem::new(
                        format!(
                            "{}: no objective `{}`{}",
                            field(&format!("{pointer}/objective")),
                            expect.objective,
                            hint(&expect.objective, objectives)
                        ),
                        document.span(&format!("{pointer}/objective")),
                    ));
                }
            }
        }
    }
}

fn check_steps(document: &Document<Scenario>, playbook: &Loaded, problems: &mut Vec<Problem>) {
    let steps = || playbook.playbook.steps.iter().map(|s| s.id.as_str());
    for (m, module) in document.value.spec.modules.iter().enumerate() {
        for (i, inject) in module.injects.iter().enumerate() {
            for (e, expect) in inject.expect.iter().enumerate() {
                if !steps().any(|s| s == expect.step) {
                    let pointer = format!("/spec/modules/{m}/injects/{i}/expect/{e}/step");
                    problems.push(Problem::new(
                        format!(
                            "{}: the playbook has no step `{}`{}",
                            field(&pointer),
                            expect.step,
                            hint(&expect.step, steps())
                        ),
                        document.span(&pointer),
                    ));
                }
            }
        }
    }
}

fn duration(document: &Document<Scenario>, text: &str, pointer: &str, problems: &mut Vec<Problem>) {
    if parse_duration(text).is_none() {
        problems.push(Problem::new(
            format!(
                "{}: `{text}` is not a duration (e.g. 30s, 5m, 1h30m)",
                field(pointer)
            ),
            document.span(pointer),
        ));
    }
}

/// `/spec/modules/0/injects/1/at` → `spec.modules[0].injects[1].at`.
fn field(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn hint<'a>(name: &str, candidates: impl Iterator<Item = &'a str> + Clone) -> String {
    did_you_mean(name, candidates.clone())
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_else(|| format!("; known: {}", candidates.collect::<Vec<_>>().join(", ")))
}
