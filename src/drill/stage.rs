//! The drill's stage: where and as whom a drill acts (the per-run namespace, the run's
//! identity and journal, the connection), and the reads every phase shares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::record::{DrillEntry, DrillJournal};
use super::types::{DECOY_LABEL, RUN_LABEL, RunIdentity};
use crate::cluster::kube::KubeCluster;

/// Where and as whom a drill acts.
pub struct Stage<'a> {
    pub cluster: &'a KubeCluster,
    /// The client configuration, for clients that present a stolen token instead.
    pub config: kube::Config,
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
    pub fn client(&self) -> kube::Client {
        self.cluster.client().clone()
    }

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

    /// A client that authenticates with `token` (and keeps the run's User-Agent).
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client, String> {
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }
}

/// The decoy's running pod.
pub async fn decoy_pod(stage: &Stage<'_>, decoy: &str) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(stage.client(), &stage.namespace);
    let selector = format!("{}={}", DECOY_LABEL, decoy);
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?;
    pods.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| format!("decoy {decoy} has no running pod"))
}
