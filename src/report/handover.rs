//! The hand-over briefing of a run, in the spirit of the ICS-201 transfer-of-command briefing:
//! what happened (done and proven), what is in place now, what is pending (undos, unfinished
//! steps, reviews), decisions and approvals with who and when, evidence with its hashes, who
//! holds the run and its Leases, and the next steps the playbook declares. Built as data from
//! the journal (the incident report's view, plus the run's summary), rendered by handlebars
//! (`handover.md.hbs`, overridable) or printed as JSON.

use std::path::Path;

use journal::Record;
use serde_json::{Value, json};

use super::incident;
use super::templates::{render, template};
use crate::escape::escape_markdown;
use crate::journal::RunState;
use crate::runs::summary;

const MARKDOWN: &str = include_str!("templates/handover.md.hbs");

/// The briefing's formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

/// Who holds each of the run's Leases now (`namespace/name` → holder; `None`: free), when the
/// cluster was asked.
pub type LeaseHolders = std::collections::BTreeMap<String, Option<String>>;

/// The briefing as data. `drift` is what was found undone by hand (`None`: the cluster was not
/// asked), `leases` who holds the run's Leases now (empty when not asked).
pub fn build(
    state: &RunState,
    records: &[Record],
    intact: bool,
    drift: Option<&[String]>,
    leases: &LeaseHolders,
) -> Value {
    let report = incident::build(state, records, intact);
    let summary = summary::summarize(state);
    let proven: Vec<Value> = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"] == "done")
        .map(|s| {
            json!({
                "step": s["label"],
                "summary": s["summary"],
                "verification": s["verification"],
            })
        })
        .collect();
    let pending_undos: Vec<Value> = state
        .to_undo(None)
        .iter()
        .rev()
        .map(|plan| {
            let mut undo = String::new();
            for op in &plan.inverse {
                crate::plan::display::render_op(&mut undo, op, "");
            }
            json!({
                "step": plan.step,
                "summary": plan.summary,
                "reversibility": reversibility(&plan.reversibility),
                "undo": undo.lines().map(str::trim).collect::<Vec<_>>(),
            })
        })
        .collect();
    let unfinished: Vec<Value> = summary
        .steps
        .iter()
        .filter(|s| {
            s.status == "pending"
                || s.status.starts_with("interrupted")
                || s.status.starts_with("failed")
        })
        .map(|s| json!({"step": s.id, "status": s.status}))
        .collect();
    json!({
        "run": state.run,
        "generated_at": jiff::Timestamp::now().to_string(),
        "playbook": report["playbook"],
        "cluster": report["cluster"],
        "phase": summary.phase,
        "outcome": report["outcome"],
        "started": {"at": state.info.started_at, "by": state.info.started_by()},
        "holder": state.holder(),
        "journal": report["journal"],
        "done_and_proven": proven,
        "in_force": summary.in_force.iter().map(|f| json!({
            "step": f.step, "action": f.action, "summary": f.summary, "since": f.since,
            "review_due": f.review_due,
        })).collect::<Vec<_>>(),
        "drift_checked": drift.is_some(),
        "undone_by_hand": drift.unwrap_or_default(),
        "pending_undos": pending_undos,
        "unfinished": unfinished,
        "review_due": summary.review_due,
        "decisions": decisions(state, records),
        "handovers": state.handovers.iter().map(|h| json!({
            "from": h.from, "to": h.to, "for": h.purpose, "at": h.at,
        })).collect::<Vec<_>>(),
        "evidence": report["evidence"],
        "locks": state.info.locks.iter().map(|l| json!({
            "target": l.target, "lease": l.lease,
            "held_by": match leases.get(&l.lease) {
                Some(Some(holder)) => holder.clone(),
                Some(None) => "free".to_string(),
                None => "not asked".to_string(),
            },
        })).collect::<Vec<_>>(),
        "next_steps": next_steps(state, &summary, &unfinished),
    })
}

fn reversibility(r: &crate::plan::Reversibility) -> String {
    match r {
        crate::plan::Reversibility::Reversible => "reversible".into(),
        crate::plan::Reversibility::Partial { reason } => format!("partly: {reason}"),
        crate::plan::Reversibility::Irreversible { reason } => format!("irreversible: {reason}"),
    }
}

/// Approvals, decisions and take-overs, in journal order, each with when and by whom.
fn decisions(state: &RunState, records: &[Record]) -> Vec<Value> {
    let mut holder = state.info.started_by();
    let mut out = Vec::new();
    for lock in state.info.locks.iter().filter(|l| l.stolen_from.is_some()) {
        let from = lock
            .stolen_from
            .as_ref()
            .map(|s| s.holder.clone())
            .unwrap_or_default();
        out.push(json!({
            "at": state.info.started_at, "by": holder,
            "decision": format!("took the lock on {} from {from}", lock.target),
            "why": lock.reason,
        }));
    }
    for record in records {
        let body = &record.body;
        let step = body["step"].as_str().unwrap_or_default();
        let (decision, why) = match body["record"].as_str().unwrap_or_default() {
            "approved" => (
                format!(
                    "approved the plan ({} step(s))",
                    body["plan"]["steps"].as_array().map_or(0, Vec::len)
                ),
                Value::Null,
            ),
            "done" if body["outputs"]["approved"] == true => {
                (format!("approved step {step}"), Value::Null)
            }
            "failed"
                if body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("declined")) =>
            {
                (format!("declined step {step}"), body["error"].clone())
            }
            "rollback_started" => ("started a rollback".into(), body["reason"].clone()),
            "taken_over" => {
                holder = body["to"].as_str().unwrap_or_default().to_string();
                (
                    format!(
                        "took the run over from {} to {}",
                        body["from"].as_str().unwrap_or_default(),
                        body["for"].as_str().unwrap_or_default()
                    ),
                    Value::Null,
                )
            }
            _ => continue,
        };
        out.push(json!({"at": record.at, "by": holder, "decision": decision, "why": why}));
    }
    out
}

/// The playbook's declared next steps, then what the journal says is open.
fn next_steps(state: &RunState, summary: &summary::Summary, unfinished: &[Value]) -> Vec<String> {
    let mut steps = state.info.next_steps.clone();
    let run = &state.run;
    if !unfinished.is_empty() && !state.rolling_back() {
        steps.push(format!(
            "{} step(s) not finished: `contain resume {run}` goes on from the first",
            unfinished.len()
        ));
    }
    if let Some(due) = &summary.review_due {
        steps.push(format!(
            "review the containment in force by {due} (`contain runs --due`)"
        ));
    }
    if summary.in_force_count > 0 {
        steps.push(format!(
            "once the threat is gone, `contain rollback {run}` undoes what is in force"
        ));
    }
    steps
}

/// Renders the briefing in one format.
pub fn render_as(view: &Value, format: Format, templates: Option<&Path>) -> Result<String, String> {
    match format {
        Format::Json => Ok(super::templates::json(view)),
        Format::Markdown => {
            let text = template(templates, "handover.md.hbs", MARKDOWN)?;
            render(escape_markdown, "handover.md.hbs", &text, view)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::summary::tests::{plan, state};

    #[test]
    fn the_briefing_says_what_is_in_force_pending_decided_and_next() {
        let mut run = state(
            crate::outcome::ReviewPolicy {
                after_seconds: Some(3600),
                ..Default::default()
            },
            &[
                (
                    "2026-12-06T03:00:01Z",
                    json!({"record": "approved", "plan": plan()}),
                ),
                (
                    "2026-12-06T03:00:02Z",
                    json!({"record": "intent", "step": "mark"}),
                ),
                (
                    "2026-12-06T03:00:03Z",
                    json!({"record": "done", "step": "mark", "outputs": {}}),
                ),
                (
                    "2026-12-06T09:00:00Z",
                    json!({"record": "taken_over", "from": "alice on laptop-7", "to": "bob on host-b", "for": "resume"}),
                ),
            ],
        );
        run.info.next_steps = vec!["Find the way in".into()];
        let records: Vec<Record> = Vec::new();
        let drift = ["mark: Pod shop/web-1 is gone".to_string()];
        let view = build(&run, &records, true, Some(&drift), &LeaseHolders::new());
        assert_eq!(view["in_force"][0]["step"], "mark");
        assert_eq!(view["pending_undos"][0]["step"], "mark");
        assert_eq!(view["unfinished"][0]["step"], "note");
        assert_eq!(view["next_steps"][0], "Find the way in");
        assert!(
            view["next_steps"][1]
                .as_str()
                .unwrap()
                .contains("contain resume R")
        );
        let markdown = render_as(&view, Format::Markdown, None).unwrap();
        for needle in [
            "| Held by | bob on host-b |",
            "| mark | object.label | label Pod shop/web-1 | 2026-12-06T03:00:03Z | 2026-12-06T04:00:03Z |",
            "**Undone by hand outside contain**",
            "- **mark** (reversible)",
            "1. Find the way in",
            "took over from alice on laptop-7 (resume)",
        ] {
            assert!(markdown.contains(needle), "{needle} not in:\n{markdown}");
        }
        // Not compared with the cluster: the briefing says so rather than showing nothing.
        let unchecked = build(&run, &records, true, None, &LeaseHolders::new());
        let markdown = render_as(&unchecked, Format::Markdown, None).unwrap();
        assert!(
            markdown.contains("Not compared with the cluster"),
            "{markdown}"
        );
        assert!(!markdown.contains("Undone by hand outside contain"));
        let json = render_as(&view, Format::Json, None).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap()["holder"],
            "bob on host-b"
        );
    }
}
