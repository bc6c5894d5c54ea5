//! The drill's stage: the per-run namespace and the decoys in it, every object labelled with
//! the run id and named with the run's prefix; and its teardown, by label, with a check that
//! nothing is left.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::record::DrillEntry;
use super::spec::Decoy;
use super::stage::{Stage, toleration_all};
use super::types::{DECOY_LABEL, RUN_LABEL, TARGET_LABEL};
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{Cluster, ClusterError, Preconditions, WriteMode, kinds};

impl Stage<'_> {
    /// Creates the per-run namespace, labelled as a drill target so the drill identity may act
    /// in it, as this run's so cleanup finds it, and with the drill's own labels.
    pub async fn create_namespace(
        &self,
        extra_labels: &indexmap::IndexMap<String, String>,
    ) -> Result<(), String> {
        self.journal.append(&DrillEntry::Create {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: self.namespace.clone(),
        })?;
        let mut labels: BTreeMap<String, String> = extra_labels.clone().into_iter().collect();
        labels.extend(self.labels());
        labels.insert(TARGET_LABEL.into(), "true".into());
        let namespace = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": labels},
        });
        created(
            self.cluster.create(&namespace, WriteMode::Apply).await,
            &format!("namespace {}", self.namespace),
        )
    }

    /// Creates a decoy: its ServiceAccount, a one-replica Deployment, and a Service when it
    /// has a port. Each object already there (a resumed warmup) is kept.
    pub async fn create_decoy(&self, decoy: &Decoy) -> Result<(), String> {
        let name = self.object_name(&decoy.name);
        let mut labels = self.labels();
        labels.insert(DECOY_LABEL.into(), decoy.name.clone());
        for (k, v) in &decoy.labels {
            labels.insert(k.clone(), v.clone());
        }
        let selector = json!({RUN_LABEL: self.run.run_id, DECOY_LABEL: decoy.name});
        let mut container = json!({"name": "app", "image": decoy.image});
        if let Some(port) = decoy.port {
            container["ports"] = json!([{"containerPort": port}]);
        }
        let mut pod_spec = json!({"serviceAccountName": name, "containers": [container]});
        if !decoy.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(decoy.node_selector);
        }
        if decoy.tolerate_all {
            pod_spec["tolerations"] = json!([toleration_all()]);
        }
        let metadata = json!({"name": name, "namespace": self.namespace, "labels": labels});
        let mut objects = vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": metadata,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": selector},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                }
            }),
        ];
        if let Some(port) = decoy.port {
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata,
                "spec": {"selector": selector, "ports": [{"port": port, "targetPort": port}]},
            }));
        }
        for object in &objects {
            let kind = object["kind"].as_str().unwrap_or_default();
            self.journal_create(kind, &name)?;
            created(
                self.cluster.create(object, WriteMode::Apply).await,
                &format!("{kind} {name}"),
            )?;
        }
        Ok(())
    }

    /// Deletes everything of the run: its namespace (the API server deletes what is in it) and
    /// anything else carrying the run label; then waits up to `wait` for all of it to be gone.
    /// Returns what is still there.
    pub async fn tear_down(&self, wait: Duration) -> Vec<String> {
        let selector = Selector::labels([(RUN_LABEL.to_string(), self.run.run_id.clone())].into());
        let _ = self
            .delete(&ObjectRef::new("Namespace", None, &self.namespace))
            .await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let leftovers = self.leftovers(&selector).await;
            if leftovers.is_empty() || tokio::time::Instant::now() >= deadline {
                return leftovers;
            }
            // Labelled objects outside the run namespace are deleted one by one.
            for left in &leftovers {
                if let Some((namespace, name)) = left
                    .strip_prefix("pod ")
                    .and_then(|rest| rest.split_once('/'))
                    && namespace != self.namespace
                {
                    let _ = self
                        .delete(&ObjectRef::new("Pod", Some(namespace), name))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), ClusterError> {
        self.cluster
            .delete(object, &Preconditions::default(), None, WriteMode::Apply)
            .await
    }

    /// Objects of the run still present: its namespace, labelled namespaces, labelled pods
    /// anywhere.
    async fn leftovers(&self, selector: &Selector) -> Vec<String> {
        let mut left = Vec::new();
        let shown = selector
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let namespace = ObjectRef::new("Namespace", None, &self.namespace);
        match self.cluster.get(&namespace).await {
            Ok(Some(ns)) => left.push(format!(
                "namespace {} ({})",
                self.namespace,
                ns.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("present")
            )),
            Ok(None) => {}
            Err(e) => left.push(format!("namespace {} (cannot tell: {e})", self.namespace)),
        }
        // A list that fails is a leftover we cannot rule out, never "nothing left".
        let kind = |name| kinds::lookup(name).expect("a known kind");
        match self.cluster.list(kind("Namespace"), None, selector).await {
            Ok(namespaces) => {
                for ns in namespaces {
                    let name = object::name(&ns).unwrap_or_default();
                    if name != self.namespace {
                        left.push(format!("namespace {name}"));
                    }
                }
            }
            Err(e) => left.push(format!("namespaces labelled {shown} (cannot tell: {e})")),
        }
        match self.cluster.list(kind("Pod"), None, selector).await {
            Ok(pods) => {
                for pod in pods {
                    left.push(format!(
                        "pod {}/{}",
                        object::namespace(&pod).unwrap_or_default(),
                        object::name(&pod).unwrap_or_default()
                    ));
                }
            }
            Err(e) => left.push(format!("pods labelled {shown} (cannot tell: {e})")),
        }
        left
    }
}

/// A create's result, with "already there" as success (a resumed warmup re-creates).
fn created<T>(result: Result<T, ClusterError>, what: &str) -> Result<(), String> {
    match result {
        Ok(_) | Err(ClusterError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(format!("cannot create {what}: {e}")),
    }
}

/// Waits until every decoy has a running pod, up to `wait`.
pub async fn wait_ready(stage: &Stage<'_>, decoys: &[Decoy], wait: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + wait;
    for decoy in decoys {
        loop {
            match super::stage::decoy_pod(stage, &decoy.name).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("{e} after {} s", wait.as_secs()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    Ok(())
}
