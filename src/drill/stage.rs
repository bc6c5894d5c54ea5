//! The drill's stage: where and as whom a drill acts (the per-run namespace, the run's
//! identity and journal, the connection), and the reads every phase shares.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::record::{DrillEntry, DrillJournal};
use super::types::{DECOY_LABEL, RUN_LABEL, RunIdentity};
use crate::cluster::kube::KubeCluster;
use crate::cluster::object::{self, Selector};
use crate::cluster::{Cluster, kinds};

/// Where and as whom a drill acts.
pub struct Stage<'a> {
    pub cluster: &'a KubeCluster,
    pub run: RunIdentity,
    /// The per-run namespace.
    pub namespace: String,
    /// The labelled namespace named in the drill file.
    pub target_namespace: String,
    pub journal: &'a DrillJournal,
}

pub fn toleration_all() -> Value {
    json!({"operator": "Exists"})
}

impl Stage<'_> {
    /// `<prefix>-<id>`: every object of the run starts with the prefix.
    pub fn object_name(&self, id: &str) -> String {
        format!("{}-{id}", self.run.prefix)
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        [
            (RUN_LABEL.to_string(), self.run.run_id.clone()),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "contain-drill".to_string(),
            ),
        ]
        .into()
    }

    /// Journals an object before it is created (cleanup then knows it may exist).
    pub fn journal_create(&self, kind: &str, name: &str) -> Result<(), String> {
        self.journal.append(&DrillEntry::Create {
            kind: kind.into(),
            namespace: self.namespace.clone(),
            name: name.into(),
        })
    }

    /// The cluster as whoever holds `token` (the run's User-Agent kept).
    pub fn cluster_with_token(&self, token: &str) -> Result<KubeCluster, String> {
        self.cluster.with_token(token).map_err(|e| e.to_string())
    }
}

/// The decoy's running pod.
pub async fn decoy_pod(stage: &Stage<'_>, decoy: &str) -> Result<String, String> {
    let selector = Selector::labels([(DECOY_LABEL.to_string(), decoy.to_string())].into());
    let pods = stage
        .cluster
        .list(
            kinds::lookup("Pod").expect("a known kind"),
            Some(&stage.namespace),
            &selector,
        )
        .await
        .map_err(|e| e.to_string())?;
    pods.iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .find(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .and_then(|p| object::name(p).map(str::to_string))
        .ok_or_else(|| format!("decoy {decoy} has no running pod"))
}
