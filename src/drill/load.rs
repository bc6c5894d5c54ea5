//! Loading a drill file: the same located diagnostics as playbooks (file, line, field), from
//! the schema of [`super::spec::Drill`] and the checks a schema cannot express (unique ids,
//! decoys that exist, one alert name per expectation, JSONPaths that parse, a playbook that
//! loads).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::spec::{Drill, Pattern};
use crate::diagnostics::Problem;
use crate::source::Span;
use crate::yaml::node::Node;

/// A drill file, checked.
pub struct LoadedDrill {
    pub drill: Drill,
    pub path: PathBuf,
    pub sha256: String,
    /// The containment playbook, loaded and checked with the drill.
    pub playbook: Option<crate::playbook::load::Loaded>,
}

/// The drill format's JSON schema.
pub fn drill_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Drill)).expect("schema serializes")
}

pub use crate::document::DocumentError as DrillLoadError;

pub fn load(path: &Path) -> Result<LoadedDrill, DrillLoadError> {
    let document = crate::document::load::<Drill>(path, "drill", &drill_schema())?;
    let (drill, root) = (&document.value, &document.root);
    let invalid = |problems: Vec<Problem>| document.invalid(problems);
    let mut problems = Vec::new();
    check_references(drill, root, &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let playbook = match &drill.spec.contain {
        Some(contain) => {
            let playbook_path = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&contain.playbook);
            match crate::playbook::load::load_file(&playbook_path) {
                Ok(loaded) => {
                    let problems = check_params(contain, &loaded, root);
                    if !problems.is_empty() {
                        return Err(invalid(problems));
                    }
                    Some(loaded)
                }
                Err(crate::playbook::load::LoadError::Invalid(report)) => {
                    return Err(DrillLoadError::Invalid(vec![report]));
                }
                Err(e) => {
                    let span = span_at(root, "/spec/contain/playbook");
                    return Err(invalid(vec![Problem::new(
                        format!("spec.contain.playbook: {e}"),
                        span,
                    )]));
                }
            }
        }
        None => None,
    };
    Ok(LoadedDrill {
        drill: document.value.clone(),
        path: path.to_path_buf(),
        sha256: document.sha256.clone(),
        playbook,
    })
}

/// The drill's params against the playbook's own: each one the playbook declares, and every
/// param the playbook requires given (found now, not after the detonations).
fn check_params(
    contain: &super::spec::ContainSpec,
    playbook: &crate::playbook::load::Loaded,
    root: &Node,
) -> Vec<Problem> {
    let declared = &playbook.playbook.params;
    let known: Vec<&str> = declared.keys().map(String::as_str).collect();
    let mut problems = Vec::new();
    for name in contain.params.keys() {
        if !declared.contains_key(name) {
            // The key itself, where it was written.
            let span = key_span(root, "/spec/contain/params", name)
                .or_else(|| span_at(root, "/spec/contain/params"));
            problems.push(Problem::new(
                format!(
                    "spec.contain.params.{name}: playbook {} has no param `{name}` (it has: {})",
                    playbook.playbook.metadata.name,
                    known.join(", ")
                ),
                span,
            ));
        }
    }
    for (name, spec) in declared {
        if spec.required && spec.default.is_none() && !contain.params.contains_key(name) {
            problems.push(Problem::new(
                format!(
                    "spec.contain.params: playbook {} requires param `{name}`, which the drill does not give",
                    playbook.playbook.metadata.name
                ),
                key_span(root, "/spec/contain", "params")
                    .or_else(|| key_span(root, "/spec", "contain")),
            ));
        }
    }
    problems
}

/// Where the key `key` of the mapping at `pointer` was written.
fn key_span(root: &Node, pointer: &str, key: &str) -> Option<Span> {
    root.pointer(pointer)?
        .as_map()?
        .iter()
        .find(|(k, _)| k.name == key)
        .map(|(k, _)| k.span)
}

fn span_at(root: &Node, pointer: &str) -> Option<Span> {
    root.pointer(pointer).map(|n| n.span)
}

/// The checks a schema cannot express, each located.
fn check_references(drill: &Drill, root: &Node, problems: &mut Vec<Problem>) {
    for key in drill.spec.target.run_namespace_labels.keys() {
        if [super::types::RUN_LABEL, super::types::TARGET_LABEL].contains(&key.as_str()) {
            problems.push(Problem::new(
                format!("spec.target.run_namespace_labels: `{key}` is set by the drill itself"),
                span_at(root, &format!("/spec/target/run_namespace_labels/{key}")),
            ));
        }
    }
    let decoys: Vec<&str> = drill.spec.decoys.iter().map(|d| d.name.as_str()).collect();
    for (i, decoy) in drill.spec.decoys.iter().enumerate() {
        if decoys[..i].contains(&decoy.name.as_str()) {
            problems.push(Problem::new(
                format!(
                    "spec.decoys[{i}].name: decoy `{}` is declared twice",
                    decoy.name
                ),
                span_at(root, &format!("/spec/decoys/{i}/name")),
            ));
        }
    }
    let unknown_decoy =
        |name: &str, pointer: String, field: String, problems: &mut Vec<Problem>| {
            if !decoys.contains(&name) {
                let hint = crate::diagnostics::did_you_mean(name, decoys.iter().copied())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("; decoys: {}", decoys.join(", ")));
                problems.push(Problem::new(
                    format!("{field}: no decoy `{name}`{hint}"),
                    span_at(root, &pointer),
                ));
            }
        };
    for (i, detonation) in drill.spec.detonations.iter().enumerate() {
        if drill.spec.detonations[..i]
            .iter()
            .any(|d| d.id == detonation.id)
        {
            problems.push(Problem::new(
                format!(
                    "spec.detonations[{i}].id: `{}` is used twice",
                    detonation.id
                ),
                span_at(root, &format!("/spec/detonations/{i}/id")),
            ));
        }
        if let Some(decoy) = detonation.abuse.decoy() {
            let pattern = detonation.abuse.name();
            unknown_decoy(
                decoy,
                format!("/spec/detonations/{i}/abuse/{pattern}/decoy"),
                format!("spec.detonations[{i}].abuse.{pattern}.decoy"),
                problems,
            );
        }
        if let Pattern::ExecBurst { command, .. } = &detonation.abuse
            && command.is_empty()
        {
            problems.push(Problem::new(
                format!("spec.detonations[{i}].abuse.exec_burst.command: give a command to exec"),
                span_at(
                    root,
                    &format!("/spec/detonations/{i}/abuse/exec_burst/command"),
                ),
            ));
        }
        for (j, expect) in detonation.expect.iter().enumerate() {
            if expect.rule.is_some() == expect.alertname.is_some() {
                problems.push(Problem::new(
                    format!(
                        "spec.detonations[{i}].expect[{j}]: name the alert with exactly one of `rule` (Falco) or `alertname` (Alertmanager)"
                    ),
                    span_at(root, &format!("/spec/detonations/{i}/expect/{j}")),
                ));
            }
        }
    }
    for (i, condition) in drill.spec.verify.iter().enumerate() {
        let key = match condition {
            super::spec::PostCondition::Isolated { .. } => "isolated",
            super::spec::PostCondition::Labelled { .. } => "labelled",
            super::spec::PostCondition::Revoked { .. } => "revoked",
            super::spec::PostCondition::Suspended { .. } => "suspended",
        };
        unknown_decoy(
            condition.decoy(),
            format!("/spec/verify/{i}/{key}/decoy"),
            format!("spec.verify[{i}].{key}.decoy"),
            problems,
        );
    }
    if let Some(generic) = &drill.spec.receiver.generic {
        let fields = [
            ("rule", Some(&generic.rule)),
            ("time", generic.time.as_ref()),
            ("namespace", generic.namespace.as_ref()),
            ("name", generic.name.as_ref()),
            ("user_agent", generic.user_agent.as_ref()),
            ("fingerprint", generic.fingerprint.as_ref()),
        ];
        for (field, path) in fields {
            if let Some(path) = path
                && let Err(problem) = super::alerts::parse_path(path)
            {
                problems.push(Problem::new(
                    format!("spec.receiver.generic.{field}: `{path}`: {problem}"),
                    span_at(root, &format!("/spec/receiver/generic/{field}")),
                ));
            }
        }
    }
    if drill
        .spec
        .receiver
        .listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        problems.push(Problem::new(
            format!(
                "spec.receiver.listen: `{}` is not an address:port (e.g. 127.0.0.1:9095 or 0.0.0.0:9095)",
                drill.spec.receiver.listen
            ),
            span_at(root, "/spec/receiver/listen"),
        ));
    }
}
