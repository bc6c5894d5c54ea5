//! The after-action report: objectives met or not (each from the decisions its expectations
//! call for, made in time), decision latency per inject, every decision with its reason and the
//! plan it would run, evaluator notes per objective, and the hot wash. JSON is the view itself
//! (`contain.dev/after-action/v1`); Markdown is a handlebars template shipped in the binary
//! (`aar.md.hbs`), overridable from a directory.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::session::{Session, clock};
use crate::duration::parse_duration;
use crate::escape::escape_markdown;
use crate::report::templates::{render, template};

pub const SCHEMA: &str = "contain.dev/after-action/v1";

const MARKDOWN: &str = include_str!("templates/aar.md.hbs");

/// How one expected decision went.
fn expectation(
    session: &Session,
    inject: &str,
    given: Option<Duration>,
    step: &str,
    within: &str,
) -> Value {
    let within_d = parse_duration(within).unwrap_or_default();
    let Some(given) = given else {
        return json!({"step": step, "within": within, "status": "not given", "met": false, "latency": null});
    };
    let decided = session
        .decisions
        .iter()
        .find(|d| d.step == step && d.at >= given);
    match decided {
        Some(d) => {
            let latency = d.at - given;
            let met = latency <= within_d;
            json!({
                "step": step, "within": within, "met": met,
                "latency": clock(latency), "latency_seconds": latency.as_secs(),
                "by": d.who, "inject": inject,
                "status": if met { format!("decided by {} after {}", d.who, clock(latency)) }
                          else { format!("LATE: decided by {} after {} (needed within {within})", d.who, clock(latency)) },
            })
        }
        None => {
            json!({"step": step, "within": within, "status": "NOT DECIDED", "met": false, "latency": null})
        }
    }
}

/// The report as data.
pub fn build(session: &Session, started_at: &str) -> Value {
    let scenario = &session.loaded.scenario;
    let mut injects = Vec::new();
    let mut expected: Vec<(String, Value)> = Vec::new();
    for (m, module) in scenario.spec.modules.iter().enumerate() {
        for (i, inject) in module.injects.iter().enumerate() {
            let given = session.given.iter().find(|g| g.module == m && g.index == i);
            let answers: Vec<Value> = session
                .decisions
                .iter()
                .filter(|d| d.inject.as_deref() == Some(inject.id.as_str()))
                .map(|d| json!({"who": d.who, "step": d.step, "at": clock(d.at)}))
                .collect();
            let latency = given.and_then(|g| {
                session
                    .decisions
                    .iter()
                    .find(|d| d.inject.as_deref() == Some(inject.id.as_str()))
                    .map(|d| clock(d.at - g.at))
            });
            for e in &inject.expect {
                expected.push((
                    e.objective.clone(),
                    expectation(session, &inject.id, given.map(|g| g.at), &e.step, &e.within),
                ));
            }
            injects.push(json!({
                "id": inject.id, "module": module.title, "text": inject.text,
                "given_at": given.map(|g| clock(g.at)), "early": given.is_some_and(|g| g.early),
                "decision_latency": latency, "decisions": answers,
            }));
        }
    }
    let objectives: Vec<Value> = scenario
        .spec
        .objectives
        .iter()
        .map(|o| {
            let mine: Vec<&Value> = expected
                .iter()
                .filter(|(id, _)| *id == o.id)
                .map(|(_, e)| e)
                .collect();
            let status = if mine.is_empty() {
                "not assessed"
            } else if mine.iter().all(|e| e["met"] == true) {
                "met"
            } else {
                "NOT MET"
            };
            let notes: Vec<Value> = session
                .notes
                .iter()
                .filter(|n| n.objective == o.id)
                .map(|n| json!({"who": n.who, "at": clock(n.at), "text": n.text}))
                .collect();
            json!({"id": o.id, "description": o.description, "status": status,
                   "met": status == "met", "expectations": mine, "notes": notes})
        })
        .collect();
    let met = objectives.iter().filter(|o| o["met"] == true).count();
    let decisions: Vec<Value> = session
        .decisions
        .iter()
        .map(|d| {
            json!({"at": clock(d.at), "who": d.who, "step": d.step, "why": d.why,
                   "inject": d.inject, "plan": session.step_plan_text(&d.step)})
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "scenario": {"name": scenario.metadata.name, "title": scenario.metadata.title,
                     "description": scenario.metadata.description,
                     "path": session.loaded.path.display().to_string(), "sha256": session.loaded.sha256},
        "playbook": {"name": session.loaded.playbook.playbook.metadata.name,
                     "sha256": session.loaded.playbook.sha256},
        "against": session.against,
        "roles": scenario.spec.roles,
        "started_at": started_at,
        "duration": clock(session.ended_at.unwrap_or_default()),
        "interrupted": session.interrupted,
        "summary": {"objectives_met": met, "objectives": objectives.len(), "decisions": decisions.len(),
                    "injects_given": session.given.len(), "injects": injects.len()},
        "objectives": objectives,
        "injects": injects,
        "decisions": decisions,
        "hotwash": session.hotwash.iter().map(|(q, a)| json!({"question": q, "answer": a})).collect::<Vec<_>>(),
    })
}

pub fn markdown(view: &Value, templates: Option<&Path>) -> Result<String, String> {
    let text = template(templates, "aar.md.hbs", MARKDOWN)?;
    render(escape_markdown, "aar.md.hbs", &text, view)
}
