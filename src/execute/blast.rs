//! The blast radius of a finished plan, judged before it is shown for approval: what it
//! touches (namespaces, evicted pods, quarantined nodes, irreversible steps, writes), the rule
//! that a run never takes every schedulable node out of scheduling unless a step says so, the
//! playbook's `max_node_share`, and its `require_plan:` guards over those figures.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Cluster, ClusterError, Selector, kinds};
use crate::plan::{Op, PlannedState, Reversibility, RunPlan};

/// The actions that take a node out of scheduling.
const QUARANTINING: &[&str] = &["node.quarantine", "node.cordon", "node.taint"];

/// What the plan touches, as `require_plan:` guards read it (`plan.*`).
#[derive(Debug, Default)]
pub struct Radius {
    pub namespaces: BTreeSet<String>,
    pub pods_evicted: Vec<String>,
    /// Evicted in a namespace no step's target names.
    pub pods_evicted_outside: Vec<String>,
    pub nodes_quarantined: BTreeSet<String>,
    pub schedulable_nodes: BTreeSet<String>,
    pub irreversible: usize,
    pub writes: usize,
    /// Whether a quarantining step allows taking every schedulable node.
    pub every_node_allowed: bool,
}

impl Radius {
    pub fn to_value(&self) -> Value {
        json!({
            "namespaces": self.namespaces,
            "pods_evicted": self.pods_evicted.len(),
            "pods_evicted_outside": self.pods_evicted_outside,
            "nodes_quarantined": self.nodes_quarantined.len(),
            "schedulable_nodes": self.schedulable_nodes.len(),
            "irreversible": self.irreversible,
            "writes": self.writes,
        })
    }
}

/// Measures `plan` against the cluster as it is (its schedulable nodes).
pub async fn measure(plan: &RunPlan, cluster: &dyn Cluster) -> Result<Radius, ClusterError> {
    let mut radius = Radius::default();
    let mut named_namespaces = BTreeSet::new();
    for step in &plan.steps {
        let PlannedState::Planned {
            target,
            with,
            plan: step_plan,
            ..
        } = &step.state
        else {
            continue;
        };
        if let Some(ns) = target.as_ref().and_then(|t| t.namespace.clone()) {
            named_namespaces.insert(ns);
        }
        if !matches!(step_plan.reversibility, Reversibility::Reversible)
            && step_plan.ops.iter().any(Op::is_write)
        {
            radius.irreversible += 1;
        }
        let quarantining = QUARANTINING.contains(&step.action.as_str());
        if quarantining && with.get("allow_every_node").and_then(Value::as_bool) == Some(true) {
            radius.every_node_allowed = true;
        }
        for op in step_plan.ops.iter().filter(|op| op.is_write()) {
            radius.writes += 1;
            let Some(target) = op.target() else { continue };
            if let Some(ns) = &target.namespace {
                radius.namespaces.insert(ns.clone());
            }
            match op {
                Op::Evict { .. } => radius.pods_evicted.push(shown(&target)),
                Op::Patch { .. } if quarantining && target.kind == "Node" => {
                    radius.nodes_quarantined.insert(target.name.clone());
                }
                _ => {}
            }
        }
    }
    radius.pods_evicted_outside = radius
        .pods_evicted
        .iter()
        .filter(|pod| {
            let ns = pod.split('/').next().unwrap_or_default();
            !named_namespaces.contains(ns)
        })
        .cloned()
        .collect();
    if !radius.nodes_quarantined.is_empty() {
        let nodes = cluster
            .list(
                kinds::lookup("Node").expect("known kind"),
                None,
                &Selector::default(),
            )
            .await?;
        radius.schedulable_nodes = nodes
            .iter()
            .filter(|n| n.pointer("/spec/unschedulable") != Some(&Value::Bool(true)))
            .filter_map(|n| object::name(n).map(str::to_string))
            .collect();
    }
    Ok(radius)
}

fn shown(target: &ObjectRef) -> String {
    format!(
        "{}/{}",
        target.namespace.as_deref().unwrap_or_default(),
        target.name
    )
}

/// Why the plan's node quarantine is refused, if it is: every schedulable node (unless a step
/// allows it), or more than the playbook's `max_node_share`.
pub fn node_refusal(radius: &Radius, max_share: Option<&str>) -> Option<String> {
    let schedulable = radius.schedulable_nodes.len();
    let taken = radius
        .schedulable_nodes
        .iter()
        .filter(|n| radius.nodes_quarantined.contains(*n))
        .count();
    if schedulable == 0 || taken == 0 || radius.every_node_allowed {
        return None;
    }
    if taken == schedulable {
        return Some(format!(
            "the plan quarantines every schedulable node of the cluster ({taken} of {schedulable}: {}), after which nothing can be scheduled; set `allow_every_node: true` on the quarantining step to do it anyway",
            radius
                .nodes_quarantined
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let share: usize = max_share?.trim_end_matches('%').parse().ok()?;
    (taken * 100 > share * schedulable).then(|| {
        format!(
            "the plan quarantines {taken} of the cluster's {schedulable} schedulable nodes, more than the playbook's max_node_share of {share}%; set `allow_every_node: true` on the quarantining step to do it anyway"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn radius(quarantined: &[&str], schedulable: &[&str], allowed: bool) -> Radius {
        Radius {
            nodes_quarantined: quarantined.iter().map(|s| s.to_string()).collect(),
            schedulable_nodes: schedulable.iter().map(|s| s.to_string()).collect(),
            every_node_allowed: allowed,
            ..Radius::default()
        }
    }

    #[test]
    fn every_schedulable_node_needs_an_explicit_allow_and_a_share_is_a_ceiling() {
        let all = radius(&["a", "b", "c"], &["a", "b", "c"], false);
        let refused = node_refusal(&all, None).unwrap();
        assert!(
            refused.starts_with(
                "the plan quarantines every schedulable node of the cluster (3 of 3: a, b, c)"
            ),
            "{refused}"
        );
        assert!(node_refusal(&radius(&["a", "b", "c"], &["a", "b", "c"], true), None).is_none());
        // Two of three is not every node.
        assert!(node_refusal(&radius(&["a", "b"], &["a", "b", "c"], false), None).is_none());
        let share =
            node_refusal(&radius(&["a", "b"], &["a", "b", "c"], false), Some("50%")).unwrap();
        assert!(share.contains("2 of the cluster's 3 schedulable nodes, more than the playbook's max_node_share of 50%"), "{share}");
        assert!(node_refusal(&radius(&["a"], &["a", "b", "c"], false), Some("50%")).is_none());
    }
}
