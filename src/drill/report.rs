//! The drill's reports: JSON (the result itself, under a versioned schema id), a Markdown
//! after-action report and JUnit XML, the last two rendered by handlebars templates shipped in
//! the binary and overridable from a directory (`report.md.hbs`, `junit.xml.hbs`). Strict mode:
//! a template naming a field that does not exist is an error, not an empty string. Each format
//! escapes what it must: Markdown's own punctuation and table pipes, XML's five characters;
//! control characters (terminal escapes from hostile alert text) are dropped from both.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::score::{DrillResult, Verdict};
use crate::escape::{escape_markdown, escape_xml};
use crate::report::templates::{render, template};

const MARKDOWN: &str = include_str!("templates/report.md.hbs");
const JUNIT: &str = include_str!("templates/junit.xml.hbs");

/// The files written for one run.
#[derive(Debug)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub junit: PathBuf,
}

/// The view the Markdown template sees: the result, its failures, and the trend.
pub fn markdown_view(result: &DrillResult, previous: &[DrillResult]) -> Value {
    let mut view = serde_json::to_value(result).unwrap_or(Value::Null);
    let failures: Vec<Value> = result
        .expectations
        .iter()
        .filter(|e| !e.verdict.passed())
        .map(|e| {
            json!({
                "phase": e.phase.as_str(),
                "detonation": e.detonation,
                "pattern": e.pattern,
                "alert": e.alert,
                "verdict": e.verdict,
                "guardrail": e.guardrail.clone().unwrap_or_default(),
            })
        })
        .collect();
    view["failures"] = Value::Array(failures);
    let trend: Vec<Value> = previous
        .iter()
        .rev()
        .take(9)
        .rev()
        .map(|p| json!({"run": p.run, "status": p.status, "score": p.score}))
        .collect();
    view["trend"] = Value::Array(trend);
    view
}

/// The view the JUnit template sees: a suite per detonation, a case per expectation, and a
/// `containment` suite (post-conditions, revert, cleanup).
pub fn junit_view(result: &DrillResult) -> Value {
    let mut suites = Vec::new();
    for detonated in &result.detonations {
        let cases: Vec<Value> = result
            .expectations
            .iter()
            .filter(|e| e.detonation == detonated.id)
            .map(|e| {
                json!({
                    "name": format!("{} within {}s", e.alert, e.within_seconds),
                    "time": e.time_to_notify_seconds.unwrap_or(0.0),
                    "verdict": e.verdict,
                    "detail": e.detail,
                    "failure": matches!(e.verdict, Verdict::Late | Verdict::Missed | Verdict::Unattributed),
                    "error": e.verdict == Verdict::Error,
                })
            })
            .collect();
        suites.push(suite(
            &format!("{}.{}", result.drill, detonated.id),
            &detonated.pattern,
            detonated.phase.as_str(),
            &detonated.at.to_string(),
            cases,
        ));
    }
    let mut cases: Vec<Value> = result
        .verification
        .iter()
        .map(|c| {
            json!({"name": c.condition, "time": 0.0, "verdict": if c.passed {"PASSED"} else {"FAILED"},
                   "detail": c.detail, "failure": !c.passed, "error": false})
        })
        .collect();
    let containment = &result.containment;
    if containment.run.is_some() {
        let restored =
            containment.rollback_exit_code == Some(0) && containment.restore_differences.is_empty();
        let mut detail = format!(
            "rollback exit code {}",
            containment
                .rollback_exit_code
                .map_or("none".into(), |c| c.to_string())
        );
        if !containment.restore_differences.is_empty() {
            detail.push_str(&format!(
                "; not restored: {}",
                containment.restore_differences.join("; ")
            ));
        }
        cases.push(json!({"name": "rollback restores every object", "time": result.times.time_to_restore_seconds.unwrap_or(0.0),
            "verdict": if restored {"PASSED"} else {"FAILED"},
            "detail": detail, "failure": !restored, "error": false}));
    }
    cases.push(json!({"name": "cleanup", "time": 0.0,
        "verdict": if result.leftovers.is_empty() {"PASSED"} else {"FAILED"},
        "detail": if result.leftovers.is_empty() {"nothing left".to_string()} else {result.leftovers.join(", ")},
        "failure": !result.leftovers.is_empty(), "error": false}));
    suites.push(suite(
        &format!("{}.containment", result.drill),
        "containment",
        "respond",
        &result.finished_at.to_string(),
        cases,
    ));
    let count = |key: &str| -> u64 { suites.iter().map(|s| s[key].as_u64().unwrap_or(0)).sum() };
    json!({
        "drill": result.drill,
        "run": result.run,
        "tests": count("tests"),
        "failures_count": count("failures"),
        "errors_count": count("errors"),
        "duration": super::score::seconds(result.started_at, result.finished_at),
        "suites": suites,
    })
}

fn suite(name: &str, pattern: &str, phase: &str, timestamp: &str, cases: Vec<Value>) -> Value {
    let failures = cases.iter().filter(|c| c["failure"] == true).count();
    let errors = cases.iter().filter(|c| c["error"] == true).count();
    // JUnit's timestamp is ISO 8601 without a zone designator.
    let timestamp = timestamp
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap_or("");
    json!({"name": name, "pattern": pattern, "phase": phase, "timestamp": timestamp,
           "tests": cases.len(), "failures": failures, "errors": errors, "cases": cases})
}

/// Renders the Markdown report.
pub fn markdown(
    result: &DrillResult,
    previous: &[DrillResult],
    templates: Option<&Path>,
) -> Result<String, String> {
    let text = template(templates, "report.md.hbs", MARKDOWN)?;
    render(
        escape_markdown,
        "report.md.hbs",
        &text,
        &markdown_view(result, previous),
    )
}

/// Renders the JUnit XML.
pub fn junit(result: &DrillResult, templates: Option<&Path>) -> Result<String, String> {
    let text = template(templates, "junit.xml.hbs", JUNIT)?;
    render(escape_xml, "junit.xml.hbs", &text, &junit_view(result))
}

/// Writes the three reports into `dir`.
pub fn write_all(
    dir: &Path,
    result: &DrillResult,
    previous: &[DrillResult],
    templates: Option<&Path>,
) -> Result<Written, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let written = Written {
        json: dir.join("report.json"),
        markdown: dir.join("report.md"),
        junit: dir.join("junit.xml"),
    };
    let json = serde_json::to_string_pretty(result).map_err(|e| e.to_string())? + "\n";
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&written.json, &json)?;
    write(&written.markdown, &markdown(result, previous, templates)?)?;
    write(&written.junit, &junit(result, templates)?)?;
    Ok(written)
}

#[cfg(test)]
mod tests;
