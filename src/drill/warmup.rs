//! The drill's stage: the per-run namespace and the decoys in it, every object labelled with
//! the run id and named with the run's prefix; and its teardown, by label, with a check that
//! nothing is left.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::record::DrillEntry;
use super::spec::Decoy;
use super::stage::{Stage, toleration_all};
use super::types::{DECOY_LABEL, RUN_LABEL, TARGET_LABEL};

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
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": self.namespace, "labels": labels}
        }))
        .map_err(|e| e.to_string())?;
        let api: Api<Namespace> = Api::all(self.client());
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(format!("cannot create namespace {}: {e}", self.namespace)),
        }
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
        let create = |kind: &str| self.journal_create(kind, &name);

        create("ServiceAccount")?;
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": metadata})).map_err(|e| e.to_string())?;
        created(
            Api::<ServiceAccount>::namespaced(self.client(), &self.namespace)
                .create(&PostParams::default(), &account)
                .await,
            &format!("ServiceAccount {name}"),
        )?;
        create("Deployment")?;
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            }
        }))
        .map_err(|e| e.to_string())?;
        created(
            Api::<Deployment>::namespaced(self.client(), &self.namespace)
                .create(&PostParams::default(), &deployment)
                .await,
            &format!("Deployment {name}"),
        )?;
        if let Some(port) = decoy.port {
            create("Service")?;
            let service: Service = serde_json::from_value(json!({
                "metadata": metadata,
                "spec": {"selector": selector, "ports": [{"port": port, "targetPort": port}]},
            }))
            .map_err(|e| e.to_string())?;
            created(
                Api::<Service>::namespaced(self.client(), &self.namespace)
                    .create(&PostParams::default(), &service)
                    .await,
                &format!("Service {name}"),
            )?;
        }
        Ok(())
    }

    /// Deletes everything of the run: its namespace (the API server deletes what is in it) and
    /// anything else carrying the run label; then waits up to `wait` for all of it to be gone.
    /// Returns what is still there.
    pub async fn tear_down(&self, wait: Duration) -> Vec<String> {
        let selector = format!("{RUN_LABEL}={}", self.run.run_id);
        let namespaces: Api<Namespace> = Api::all(self.client());
        let background = DeleteParams::background();
        let _ = namespaces.delete(&self.namespace, &background).await;
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
                    let pods: Api<k8s_openapi::api::core::v1::Pod> =
                        Api::namespaced(self.client(), namespace);
                    let _ = pods.delete(name, &background).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Objects of the run still present: its namespace, labelled namespaces, labelled pods
    /// anywhere.
    async fn leftovers(&self, selector: &str) -> Vec<String> {
        let mut left = Vec::new();
        let namespaces: Api<Namespace> = Api::all(self.client());
        match namespaces.get_opt(&self.namespace).await {
            Ok(Some(ns)) => left.push(format!(
                "namespace {} ({})",
                self.namespace,
                ns.status
                    .and_then(|s| s.phase)
                    .unwrap_or_else(|| "present".into())
            )),
            Ok(None) => {}
            Err(e) => left.push(format!("namespace {} (cannot tell: {e})", self.namespace)),
        }
        // A list that fails is a leftover we cannot rule out, never "nothing left".
        match namespaces
            .list_metadata(&ListParams::default().labels(selector))
            .await
        {
            Ok(list) => {
                for ns in list.items {
                    let name = ns.metadata.name.unwrap_or_default();
                    if name != self.namespace {
                        left.push(format!("namespace {name}"));
                    }
                }
            }
            Err(e) => left.push(format!("namespaces labelled {selector} (cannot tell: {e})")),
        }
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(self.client());
        match pods
            .list_metadata(&ListParams::default().labels(selector))
            .await
        {
            Ok(list) => {
                for pod in list.items {
                    left.push(format!(
                        "pod {}/{}",
                        pod.metadata.namespace.unwrap_or_default(),
                        pod.metadata.name.unwrap_or_default()
                    ));
                }
            }
            Err(e) => left.push(format!("pods labelled {selector} (cannot tell: {e})")),
        }
        left
    }
}

/// A create's result, with "already there" as success (a resumed warmup re-creates).
fn created<T>(result: Result<T, kube::Error>, what: &str) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
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
