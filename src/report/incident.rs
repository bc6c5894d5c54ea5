//! `contain report RUN`: the incident report of a live run, for the ticket. Built only from
//! durable records (the journal's header and hash-chained records, and the evidence manifests
//! they name): who ran what from which context, the timeline, every change with its before and
//! after, the evidence hashes (re-checked against the manifests on disk), each verification
//! check (passed, failed or not checked), and where the rollback stands.
//!
//! JSON is the view itself (`contain.dev/incident-report/v1`); Markdown and HTML are handlebars
//! templates shipped in the binary (`incident.md.hbs`, `incident.html.hbs`), overridable from a
//! directory, each escaping cluster text for its own format.

use std::path::Path;

use ::journal::Record;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::templates::{render, template};
use crate::escape::{escape_html, escape_markdown};
use crate::event::{Outcome, RollbackOutcome};
use crate::journal::RunState;
use crate::outcome::{CheckStatus, Verification};
use crate::plan::{Op, Reversibility};

pub const SCHEMA: &str = "contain.dev/incident-report/v1";

const MARKDOWN: &str = include_str!("templates/incident.md.hbs");
const HTML: &str = include_str!("templates/incident.html.hbs");

/// The report's formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

/// The report of a run as data: what the templates render and `--format json` prints.
pub fn build(state: &RunState, records: &[Record], chain_intact: bool) -> Value {
    let info = &state.info;
    let outcome = state
        .finished
        .clone()
        .and_then(|v| serde_json::from_value::<Outcome>(v).ok());
    let steps = steps(state, records);
    let totals = steps.iter().fold([0u64; 3], |mut t, s| {
        for (i, key) in ["passed", "failed", "not_checked"].iter().enumerate() {
            t[i] += s["verification"][key].as_u64().unwrap_or(0);
        }
        t
    });
    json!({
        "schema": SCHEMA,
        "run": state.run,
        "generated_at": jiff::Timestamp::now().to_string(),
        "playbook": {"name": info.playbook_name, "path": info.playbook_path, "sha256": info.playbook_sha256},
        "params": params(&info.params),
        "cluster": {"server": info.server, "id": info.cluster_id, "context": info.context},
        "user": info.user,
        "mode": info.mode,
        "started_at": info.started_at,
        "finished_at": records.last().map(|r| r.at.clone()),
        "outcome": match &outcome {
            Some(o) => json!({"text": o.describe(), "exit_code": o.exit_code(), "success": o.is_success()}),
            None => json!({"text": "unfinished: interrupted, or still running (contain resume finishes it)", "exit_code": null, "success": false}),
        },
        "journal": {"records": records.len(), "chain": if chain_intact { "intact" } else { "BROKEN: a record was altered, removed or truncated" }},
        "locks": info.locks.iter().map(|l| json!({
            "target": l.target, "lease": l.lease,
            "stolen_from": l.stolen_from, "reason": l.reason,
        })).collect::<Vec<_>>(),
        "timeline": records.iter().filter_map(timeline_entry).collect::<Vec<_>>(),
        "steps": steps,
        "verification": {"passed": totals[0], "failed": totals[1], "not_checked": totals[2]},
        "evidence": evidence(state),
        "rollback": rollback(state, records),
    })
}

/// Renders the report in one format.
pub fn render_as(view: &Value, format: Format, templates: Option<&Path>) -> Result<String, String> {
    match format {
        Format::Json => Ok(super::templates::json(view)),
        Format::Markdown => {
            let text = template(templates, "incident.md.hbs", MARKDOWN)?;
            render(escape_markdown, "incident.md.hbs", &text, view)
        }
        Format::Html => {
            let text = template(templates, "incident.html.hbs", HTML)?;
            render(escape_html, "incident.html.hbs", &text, view)
        }
    }
}

fn params(params: &Map<String, Value>) -> Vec<Value> {
    params
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"name": name, "value": value})
        })
        .collect()
}

/// One line of the timeline per journal record, in words.
fn timeline_entry(record: &Record) -> Option<Value> {
    let body = &record.body;
    let step = body["step"].as_str().unwrap_or_default();
    let text = match body["record"].as_str()? {
        "approved" => format!(
            "plan approved: {} step(s)",
            body["plan"]["steps"].as_array().map_or(0, Vec::len)
        ),
        "intent" => format!("{step}: about to write"),
        // A capture's own `captured` record says it with the hash.
        "applied"
            if body["op"]
                .as_str()
                .is_some_and(|op| op.starts_with("capture ")) =>
        {
            return None;
        }
        "applied" => format!(
            "{step}: {} ({})",
            body["op"].as_str().unwrap_or_default(),
            body["outcome"]
                .as_str()
                .unwrap_or_default()
                .replace('_', " ")
        ),
        "captured" => format!(
            "{step}: captured {} (sha256 {})",
            body["artifact"].as_str().unwrap_or_default(),
            body["sha256"].as_str().unwrap_or_default()
        ),
        "verified" => {
            let counts = verification(body).map(|v| v.counts()).unwrap_or_default();
            format!(
                "{step}: verified: {} passed, {} failed, {} not checked",
                counts.passed, counts.failed, counts.not_checked
            )
        }
        "done" => format!("{step}: done"),
        "failed" => format!(
            "{step}: failed: {}",
            body["error"].as_str().unwrap_or_default()
        ),
        "skipped" => format!(
            "{step}: skipped: {}",
            body["reason"].as_str().unwrap_or_default()
        ),
        "stale" => format!("{step}: stopped, the cluster changed since the plan was approved"),
        "rollback_started" => format!(
            "rollback started: {}",
            body["reason"].as_str().unwrap_or_default()
        ),
        "rollback_step" => format!(
            "rollback of {step}: {}",
            serde_json::from_value::<RollbackOutcome>(body["outcome"].clone())
                .map(|o| rollback_text(&o))
                .unwrap_or_default()
        ),
        "finished" => format!(
            "finished: {}",
            serde_json::from_value::<Outcome>(body["outcome"].clone())
                .map(|o| o.describe())
                .unwrap_or_default()
        ),
        "notified" => match body["error"].as_str() {
            Some(error) => format!(
                "could not notify {} ({}): {error}",
                body["channel"].as_str().unwrap_or_default(),
                body["about"].as_str().unwrap_or_default()
            ),
            None => format!(
                "notified {}: {}",
                body["channel"].as_str().unwrap_or_default(),
                body["about"].as_str().unwrap_or_default()
            ),
        },
        other => other.replace('_', " "),
    };
    Some(json!({"at": record.at, "event": text}))
}

fn verification(body: &Value) -> Option<Verification> {
    serde_json::from_value(body["verification"].clone()).ok()
}

fn rollback_text(outcome: &RollbackOutcome) -> String {
    match outcome {
        RollbackOutcome::Undone => "undone".into(),
        RollbackOutcome::AlreadyUndone => "already as before".into(),
        RollbackOutcome::NothingToUndo => "nothing to undo".into(),
        RollbackOutcome::PartlyUndone { reason } => format!("partly undone: {reason}"),
        RollbackOutcome::Irreversible { reason } => format!("irreversible: {reason}"),
        RollbackOutcome::Failed { error } => format!("FAILED: {error} (still pending)"),
    }
}

/// Each planned step: what it changed (before → after), its checks, its evidence, its undo.
fn steps(state: &RunState, records: &[Record]) -> Vec<Value> {
    let Some(plan) = &state.plan else {
        return Vec::new();
    };
    plan.steps
        .iter()
        .map(|planned| {
            let found = state.steps.iter().find(|s| s.step == planned.id);
            let status = match found {
                Some(s) if s.failed.is_some() => "failed".to_string(),
                Some(s) if s.skipped.is_some() => {
                    format!("skipped: {}", s.skipped.as_deref().unwrap_or_default())
                }
                Some(s) if s.stale.is_some() => "stopped: the cluster changed since the plan was approved".into(),
                Some(s) if s.outputs.is_some() => "done".into(),
                Some(s) if s.intent => "interrupted while writing".into(),
                _ => "not reached".into(),
            };
            let checks = records
                .iter()
                .filter(|r| r.body["record"] == "verified" && r.body["step"] == planned.id.as_str())
                .filter_map(|r| verification(&r.body))
                .next_back();
            let verification = match &checks {
                Some(v) => {
                    let counts = v.counts();
                    json!({
                        "performed": true,
                        "passed": counts.passed, "failed": counts.failed, "not_checked": counts.not_checked,
                        "checks": v.checks.iter().map(|c| json!({
                            "what": c.what,
                            "status": match c.status { CheckStatus::Passed => "passed", CheckStatus::Failed => "failed", CheckStatus::NotChecked => "not checked" },
                            "detail": c.detail,
                        })).collect::<Vec<_>>(),
                    })
                }
                None => json!({"performed": false, "passed": 0, "failed": 0, "not_checked": 0, "checks": []}),
            };
            let evidence: Vec<Value> = records
                .iter()
                .filter(|r| r.body["record"] == "captured" && r.body["step"] == planned.id.as_str())
                .map(|r| json!({"artifact": r.body["artifact"], "sha256": r.body["sha256"], "size": r.body["size"]}))
                .collect();
            let plan = planned.plan();
            json!({
                "id": planned.id,
                "label": planned.label(),
                "action": planned.action,
                "summary": plan.map(|p| p.summary.clone()).unwrap_or_default(),
                "status": status,
                "error": found.and_then(|s| s.failed.clone()),
                "reversibility": plan.map(|p| match &p.reversibility {
                    Reversibility::Reversible => "reversible".to_string(),
                    Reversibility::Partial { reason } => format!("partly reversible: {reason}"),
                    Reversibility::Irreversible { reason } => format!("irreversible: {reason}"),
                }),
                "changes": plan.map(|p| p.ops.iter().filter(|op| op.is_write()).map(change).collect::<Vec<_>>()).unwrap_or_default(),
                "writes_applied": found.map_or(0, |s| s.applied),
                "verification": verification,
                "evidence": evidence,
                "rollback": found.and_then(|s| s.rolled_back.as_ref()).map(rollback_text),
            })
        })
        .collect()
}

/// One write, with each field's value before and after.
fn change(op: &Op) -> Value {
    let fields: Vec<Value> = match op {
        Op::Patch { changes, .. } => changes
            .iter()
            .map(|c| {
                json!({"path": c.display_path(),
                       "before": crate::plan::display::show(c.before.as_ref()),
                       "after": crate::plan::display::show(c.after.as_ref())})
            })
            .collect(),
        Op::Create { object } => vec![json!({
            "path": "(new object)",
            "before": "(none)",
            "after": serde_json::to_string(object).unwrap_or_default(),
        })],
        Op::Delete { .. } | Op::Evict { .. } => vec![json!({
            "path": "(object)",
            "before": "present",
            "after": "(deleted)",
        })],
        _ => Vec::new(),
    };
    json!({"op": op.to_string(), "fields": fields})
}

/// Each evidence bundle the run sealed: its manifest's hash as journaled, checked against the
/// manifest on this machine.
fn evidence(state: &RunState) -> Vec<Value> {
    state
        .steps
        .iter()
        .filter_map(|s| {
            let outputs = s.outputs.as_ref()?;
            let journaled = outputs.get("manifest_sha256")?.as_str()?.to_string();
            let bundle = outputs.get("bundle")?.as_str()?.to_string();
            let status = match std::fs::read(Path::new(&bundle).join("manifest.json")) {
                Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == journaled => {
                    "manifest matches the journal".to_string()
                }
                Ok(_) => {
                    "ALTERED: the manifest on disk differs from the journaled hash".to_string()
                }
                Err(_) => "not on this machine (the hash above is the journaled one)".to_string(),
            };
            Some(json!({
                "step": s.step,
                "bundle": bundle,
                "manifest_sha256": journaled,
                "artifacts": outputs.get("artifacts").cloned().unwrap_or(Value::Null),
                "archive": outputs.get("archive").cloned().unwrap_or(Value::Null),
                "archive_sha256": outputs.get("archive_sha256").cloned().unwrap_or(Value::Null),
                "signer": outputs.get("manifest_signer").cloned().unwrap_or(Value::Null),
                "status": status,
            }))
        })
        .collect()
}

fn rollback(state: &RunState, records: &[Record]) -> Value {
    let started = records
        .iter()
        .any(|r| r.body["record"] == "rollback_started");
    let steps: Vec<Value> = state
        .steps
        .iter()
        .filter_map(|s| {
            let outcome = s.rolled_back.as_ref()?;
            Some(json!({"step": s.step, "outcome": rollback_text(outcome)}))
        })
        .collect();
    let pending = state
        .steps
        .iter()
        .any(|s| matches!(s.rolled_back, Some(RollbackOutcome::Failed { .. })));
    // Finished after its last rollback started: the rollback ran to its end.
    let last = |kind: &str| records.iter().rposition(|r| r.body["record"] == kind);
    let ended = matches!((last("rollback_started"), last("finished")), (Some(s), Some(f)) if f > s);
    let status = match (started, pending, ended) {
        (false, _, _) => "not rolled back",
        (true, true, _) => {
            "rollback INCOMPLETE: some undo is still pending (contain rollback retries it)"
        }
        (true, false, false) => "rollback interrupted (contain rollback finishes it)",
        (true, false, true) => "rolled back",
    };
    json!({"status": status, "steps": steps})
}
