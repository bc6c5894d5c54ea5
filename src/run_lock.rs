//! One Lease per target a live run writes to, so two responders never contain the same object at
//! once: taken after the plan is approved and before the first write, renewed while the run
//! lasts, released at its end. A second run on a target is refused with who holds it and since
//! when; `--steal REASON` takes it anyway, and the journal's header records whom it was taken
//! from and why. A run whose renewal fails stops before its next write (`resume` continues it).
//!
//! A namespaced target's Lease lives in its namespace; a cluster-scoped target's (a Node) and
//! an all-namespaces target's in `kube-system`. Read-only steps (captures) take no lock:
//! evidence can always be collected.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::Access;
use crate::cluster::kube::KubeCluster;
use crate::cluster::lease::{self, HeldLock, Holder, LockError, Stolen};
use crate::plan::op::Op;
use crate::plan::run::{PlannedState, RunPlan};
use crate::plan::target::ResolvedTarget;

/// Where the Leases of cluster-scoped targets live.
pub const CLUSTER_SCOPED_NAMESPACE: &str = "kube-system";

/// How a run takes its locks.
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// How long a Lease lasts without renewal: how long a killed run blocks its targets.
    pub ttl: Duration,
    /// Take the targets even from a live holder, for this reason.
    pub steal: Option<String>,
    /// Runs this one continues, whose locks it takes over (a drill's containment run started
    /// again after the first was killed before its plan was approved).
    pub take_over_from: Vec<String>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            steal: None,
            take_over_from: Vec::new(),
        }
    }
}

/// One Lease a run holds, as the journal's header records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// `namespace/name` of the Lease.
    pub lease: String,
    /// The target it guards (`Pod shop/web-1`).
    pub target: String,
    /// Whom it was stolen from, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stolen_from: Option<Stolen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The locks a run holds.
pub struct TargetLocks {
    held: Vec<(String, HeldLock)>,
}

/// Checks, without the locks themselves, whether any renewal failed: what the executor reads
/// before each write.
#[derive(Clone, Default)]
pub struct Halt {
    flags: Vec<(String, Arc<AtomicBool>)>,
}

impl std::fmt::Debug for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.flags.iter().map(|(lease, _)| lease))
            .finish()
    }
}

impl Halt {
    /// Stops the run once any flag is set (each named by its Lease, `namespace/name`).
    pub fn new(flags: Vec<(String, Arc<AtomicBool>)>) -> Self {
        Halt { flags }
    }

    /// Why the run must stop, once a lock could not be renewed.
    pub fn reason(&self) -> Option<String> {
        self.flags
            .iter()
            .find(|(_, lost)| lost.load(Ordering::SeqCst))
            .map(|(lease, _)| {
                format!(
                    "stopped before writing: the lock (Lease {lease}) could not be renewed, so another run may hold the target now; `contain resume` continues once it is free"
                )
            })
    }
}

impl TargetLocks {
    pub fn halt(&self) -> Halt {
        Halt {
            flags: self
                .held
                .iter()
                .map(|(_, l)| (l.lease(), l.lost_flag()))
                .collect(),
        }
    }

    pub fn records(&self, reason: Option<&str>) -> Vec<LockRecord> {
        self.held
            .iter()
            .map(|(target, l)| LockRecord {
                lease: l.lease(),
                target: target.clone(),
                stolen_from: l.stolen().cloned(),
                reason: l.stolen().and(reason).map(str::to_string),
            })
            .collect()
    }

    /// Releases every lock, so the next run need not wait for the expiry.
    pub async fn release(self) {
        for (_, lock) in self.held {
            lock.release().await;
        }
    }
}

/// The targets of the plan's writing steps, each with its Lease: (namespace, lease, target).
pub fn leases(plan: &RunPlan) -> Vec<(String, String, String)> {
    let targets: BTreeSet<(String, String, String)> = plan
        .steps
        .iter()
        .filter_map(|step| match &step.state {
            PlannedState::Planned {
                target: Some(target),
                plan,
                ..
            } if plan.ops.iter().any(Op::is_write) => Some(lease_of(target)),
            _ => None,
        })
        .collect();
    targets.into_iter().collect()
}

/// The permissions taking, renewing and releasing the plan's locks need (asked for in the
/// preflight of a live run, and part of the role `contain rbac` prints).
pub fn access(plan: &RunPlan) -> Vec<Access> {
    leases(plan)
        .into_iter()
        .flat_map(|(namespace, name, _)| {
            let lease = |verb: &str, name: Option<&str>| Access {
                verb: verb.to_string(),
                group: "coordination.k8s.io".into(),
                resource: "leases".into(),
                subresource: String::new(),
                namespace: Some(namespace.clone()),
                name: name.map(str::to_string),
            };
            [
                lease("get", Some(&name)),
                lease("create", None),
                lease("update", Some(&name)),
            ]
        })
        .collect()
}

/// (namespace, Lease name, target description) of one target.
fn lease_of(target: &ResolvedTarget) -> (String, String, String) {
    let namespace = match (&target.namespace, target.all_namespaces) {
        (Some(ns), false) => ns.clone(),
        _ => CLUSTER_SCOPED_NAMESPACE.to_string(),
    };
    let kind = target.kind.kind.to_ascii_lowercase();
    let which = match (&target.name, &target.selector, &target.image) {
        (Some(name), _, _) => name.clone(),
        _ => format!(
            "sel-{}",
            &hex::encode(Sha256::digest(target.to_string().as_bytes()))[..16]
        ),
    };
    let mut name = format!("contain-{kind}-{which}");
    // A Lease's name is a DNS subdomain of at most 253 characters.
    if name.len() > 253 {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        name = format!("{}-{}", &name[..200], &digest[..16]);
    }
    (namespace, name, target.to_string())
}

/// Takes the Lease of every target the plan writes to, in a fixed order (so two runs asking for
/// overlapping targets cannot deadlock); on a refusal, releases those already taken.
pub async fn take(
    cluster: &KubeCluster,
    plan: &RunPlan,
    holder: &Holder,
    options: &LockOptions,
) -> Result<TargetLocks, LockError> {
    let mut held = Vec::new();
    for (namespace, name, target) in leases(plan) {
        match lease::acquire(
            cluster,
            &namespace,
            &name,
            holder,
            options.ttl,
            options.steal.is_some(),
        )
        .await
        {
            Ok(lock) => held.push((target, lock)),
            Err(e) => {
                TargetLocks { held }.release().await;
                return Err(e);
            }
        }
    }
    Ok(TargetLocks { held })
}

/// The identity a Lease shows: who runs it, from which machine, for which run.
pub fn holder(run_id: &str, user: &str, options: &LockOptions) -> Holder {
    Holder {
        identity: format!("{user} on {} (contain run {run_id})", host()),
        run: run_id.to_string(),
        predecessors: options.take_over_from.clone(),
    }
}

/// This machine's name, as Leases and the journal name where a run was driven from
/// (`CONTAIN_HOST` names it where the host name says nothing, as in a pod).
pub fn host() -> String {
    if let Ok(host) = std::env::var("CONTAIN_HOST")
        && !host.trim().is_empty()
    {
        return host.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kinds;

    fn target(kind: &str, ns: Option<&str>, name: Option<&str>) -> ResolvedTarget {
        ResolvedTarget {
            kind: kinds::lookup(kind).unwrap(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            selector: None,
            all_namespaces: false,
            image: None,
        }
    }

    #[test]
    fn a_pod_locks_in_its_namespace_and_a_node_in_kube_system() {
        let (ns, name, _) = lease_of(&target("Pod", Some("shop"), Some("web-1")));
        assert_eq!((ns.as_str(), name.as_str()), ("shop", "contain-pod-web-1"));
        let (ns, name, _) = lease_of(&target("Node", None, Some("node-a")));
        assert_eq!(
            (ns.as_str(), name.as_str()),
            ("kube-system", "contain-node-node-a")
        );
    }

    #[test]
    fn long_names_stay_valid_and_distinct() {
        let a = lease_of(&target("Pod", Some("shop"), Some(&"a".repeat(250)))).1;
        let b = lease_of(&target(
            "Pod",
            Some("shop"),
            Some(&format!("{}b", "a".repeat(249))),
        ))
        .1;
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
    }
}
