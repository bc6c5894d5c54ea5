//! A run lives in the cluster too: every live run has a `ContainmentRun` (group `contain.dev`)
//! in the cluster it acts on, holding its playbook, params, responder, plan hash, steps, what
//! is still in force, the Leases it holds, and its journal records (hash chain intact, in
//! bounded chunks). Responders hand runs over through it (`contain runs`, `contain journal
//! pull`, `contain handover`), and nothing put in place is forgotten (`review_after`,
//! `contain runs --due`, `contain review`).
//!
//! - [`summary`]: the status a run's journal gives, as plain data;
//! - [`listing`], [`drift`]: a run as `contain runs` lists it, and containment undone by hand;
//! - [`mirror`]: the task that keeps a running run's copy (following, or write-ahead).
//!
//! The objects themselves are read and written in `cluster::run_store` (the copy's layout in
//! `cluster::run_copy`); review rules are `outcome::ReviewPolicy`.

pub mod drift;
pub mod listing;
pub mod mirror;
pub mod summary;

use crate::cluster::run_store as store;

use serde_json::{Value, json};

use crate::journal::RunInfo;
use crate::plan::RunPlan;

/// The CRDs, as shipped in `deploy/crd.yaml` (`contain crd` prints them).
pub const CRD_MANIFEST: &str = include_str!("../../deploy/crd.yaml");

/// Where a run's object lives: the namespace of its first namespaced target (where its Lease
/// is), else `kube-system`, like the Leases of cluster-scoped targets.
pub fn home_namespace(plan: &RunPlan) -> String {
    crate::run_lock::leases(plan)
        .into_iter()
        .map(|(namespace, _, _)| namespace)
        .find(|ns| ns != crate::run_lock::CLUSTER_SCOPED_NAMESPACE)
        .unwrap_or_else(|| crate::run_lock::CLUSTER_SCOPED_NAMESPACE.to_string())
}

/// The target of the run's first writing step, as the printer column shows it.
pub fn first_target(plan: &RunPlan) -> String {
    plan.steps
        .iter()
        .find_map(|step| match &step.state {
            crate::plan::PlannedState::Planned {
                target: Some(target),
                plan,
                ..
            } if plan.ops.iter().any(crate::plan::op::Op::is_write) => Some(target.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The params as others may read them: each the playbook marks `sensitive` is `(redacted)`.
pub fn readable_params(info: &RunInfo) -> serde_json::Map<String, Value> {
    info.params
        .iter()
        .map(|(name, value)| {
            let shown = if info.sensitive_params.contains(name) {
                Value::String("(redacted)".into())
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// The spec of a run's object: fixed when the run starts. Sensitive params are redacted in
/// it, in the readable params and in the journal header alike.
pub fn spec(
    header: &journal::RunHeader,
    info: &RunInfo,
    plan: &RunPlan,
    playbook_source: &str,
    durability: mirror::Durability,
) -> Value {
    let params = readable_params(info);
    let mut header = header.clone();
    header.info["params"] = Value::Object(params.clone());
    json!({
        "run": header.run,
        "target": first_target(plan),
        "playbook": {
            "name": info.playbook_name,
            "sha256": info.playbook_sha256,
            "path": info.playbook_path,
            "source": playbook_source,
        },
        "params": params,
        "responder": info.user,
        "journalMode": durability.as_str(),
        "header": serde_json::to_string(&header).expect("headers serialize"),
    })
}

/// The permissions keeping the run's ContainmentRun needs (part of the role `contain rbac`
/// prints): its object and journal chunks in the run's namespace, and finding runs by id
/// across namespaces (`resume`, `journal pull`, `runs -A`).
pub fn access(plan: &RunPlan) -> Vec<crate::cluster::Access> {
    let namespace = home_namespace(plan);
    let on = |verb: &str, resource: &str, subresource: &str, namespace: Option<&str>| {
        crate::cluster::Access {
            verb: verb.to_string(),
            group: store::GROUP.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.map(str::to_string),
            name: None,
        }
    };
    let ns = Some(namespace.as_str());
    vec![
        on("list", "containmentruns", "", None),
        on("create", "containmentruns", "", ns),
        on("get", "containmentruns", "", ns),
        on("update", "containmentruns", "status", ns),
        on("patch", "containmentruns", "status", ns),
        on("create", "containmentrunjournals", "", ns),
        on("get", "containmentrunjournals", "", ns),
        on("list", "containmentrunjournals", "", ns),
        on("update", "containmentrunjournals", "", ns),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensitive_param_is_redacted_in_the_spec_and_its_header_and_the_others_are_not() {
        let plan: RunPlan =
            serde_json::from_value(summary::tests::plan()).expect("the test plan reads");
        let state = summary::tests::state(Default::default(), &[]);
        let mut info = state.info.clone();
        info.params = serde_json::from_value(json!({"pod": "web-1", "api_key": "s3cr3t"})).unwrap();
        info.sensitive_params = vec!["api_key".into()];
        let header = journal::RunHeader {
            run: "R".into(),
            format: journal::FORMAT_VERSION,
            created_at: "2026-12-06T03:00:00Z".into(),
            info: serde_json::to_value(&info).unwrap(),
        };
        let spec = spec(&header, &info, &plan, "source", mirror::Durability::Follow);
        assert!(!spec.to_string().contains("s3cr3t"), "{spec}");
        assert_eq!(spec["params"]["api_key"], "(redacted)");
        assert_eq!(spec["params"]["pod"], "web-1");
        assert_eq!(spec["target"], "Pod shop/web-1");
        assert_eq!(spec["journalMode"], "mirror");
    }
}
