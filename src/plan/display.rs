//! A plan as text a responder reads in ten seconds: one block per step, one line per object,
//! one line per changed field.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Op, Reversibility, StepPlan};
use crate::escape::sanitize;

/// Renders a step plan. `with_inverse` adds the undo operations.
pub fn render_step(plan: &StepPlan, with_inverse: bool) -> String {
    let mut out = String::new();
    let reversible = match &plan.reversibility {
        Reversibility::Reversible => "reversible".to_string(),
        Reversibility::Partial { reason } => format!("partly reversible: {}", sanitize(reason)),
        Reversibility::Irreversible { reason } => format!("IRREVERSIBLE: {}", sanitize(reason)),
    };
    let _ = writeln!(out, "  {}", sanitize(&plan.summary));
    if plan.ops.is_empty() {
        let _ = writeln!(out, "    (no changes)");
    }
    for op in &plan.ops {
        render_op(&mut out, op, "    ");
    }
    let _ = writeln!(out, "    [{reversible}]");
    for note in &plan.notes {
        let _ = writeln!(out, "    ! {}", sanitize(note));
    }
    if with_inverse && !plan.inverse.is_empty() {
        let _ = writeln!(out, "    undo:");
        for op in &plan.inverse {
            render_op(&mut out, op, "      ");
        }
    }
    out
}

/// One operation and, for patches, each field it changes.
pub fn render_op(out: &mut String, op: &Op, indent: &str) {
    let _ = writeln!(out, "{indent}{} {}", op.symbol(), sanitize(&op.to_string()));
    match op {
        Op::Patch { changes, .. } => {
            for change in changes {
                let _ = writeln!(
                    out,
                    "{indent}    {}: {} → {}",
                    sanitize(&change.display_path()),
                    show(change.before.as_ref()),
                    show(change.after.as_ref())
                );
            }
        }
        Op::Create { object } => {
            if object.get("kind").and_then(Value::as_str) == Some("NetworkPolicy") {
                let spec = &object["spec"];
                let _ = writeln!(
                    out,
                    "{indent}    podSelector: {}",
                    sanitize(&spec["podSelector"].to_string())
                );
                for direction in ["ingress", "egress"] {
                    let rules = spec[direction].as_array().map_or(0, Vec::len);
                    let text = if rules == 0 {
                        "deny all".to_string()
                    } else {
                        format!("allow only {}", sanitize(&spec[direction].to_string()))
                    };
                    let _ = writeln!(out, "{indent}    {direction}: {text}");
                }
            }
            for (key, value) in crate::cluster::object::labels(object) {
                let _ = writeln!(
                    out,
                    "{indent}    label {}: {}",
                    sanitize(&key),
                    sanitize(&value)
                );
            }
        }
        _ => {}
    }
}

pub(crate) fn show(value: Option<&Value>) -> String {
    match value {
        None => "(none)".to_string(),
        Some(Value::String(s)) => format!("{:?}", sanitize(s)),
        Some(other) => sanitize(&other.to_string()),
    }
}

/// What a rollback will do, newest step first: each step's summary, then its inverse
/// operations, or why it is skipped (irreversible) or only partly undone.
pub fn render_rollback(run: &str, server: &str, plans: &[StepPlan]) -> String {
    let mut out = format!("rollback of run {run} on {server}:\n");
    for plan in plans.iter().rev() {
        let _ = writeln!(out, "{}: {}", plan.step, sanitize(&plan.summary));
        match &plan.reversibility {
            Reversibility::Irreversible { reason } => {
                let _ = writeln!(out, "    skipped: irreversible ({reason})");
            }
            Reversibility::Reversible | Reversibility::Partial { .. } => {
                if let Reversibility::Partial { reason } = &plan.reversibility {
                    let _ = writeln!(out, "    partly: {reason}");
                }
                for op in &plan.inverse {
                    render_op(&mut out, op, "    ");
                }
            }
        }
    }
    out
}

/// A whole run's plan: each step with its operations, as shown before `run --plan` applies it.
pub fn render_run(plan: &super::RunPlan) -> String {
    let mut out = format!(
        "plan {} of playbook {} (sha256 {}), made {} against {}\n",
        plan.run_id,
        crate::escape::sanitize(&plan.playbook.name),
        plan.playbook.sha256,
        plan.created_at,
        crate::escape::sanitize(&plan.cluster.server)
    );
    for step in &plan.steps {
        out.push_str(&format!(
            "\n[{}] {} ({})\n",
            step.number, step.id, step.action
        ));
        match &step.state {
            super::PlannedState::Planned { plan, .. } => out.push_str(&render_step(plan, true)),
            super::PlannedState::Skipped { reason } => {
                out.push_str(&format!("  skipped: {}\n", crate::escape::sanitize(reason)))
            }
            super::PlannedState::Unplannable { error } => out.push_str(&format!(
                "  not planned (on_failure: continue): {}\n",
                crate::escape::sanitize(error)
            )),
        }
    }
    out
}
