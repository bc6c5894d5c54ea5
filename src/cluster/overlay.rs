//! `Overlay`: a cluster as it will be after the operations planned so far. Reads go through to
//! a base cluster (the live one, or a snapshot) unless an earlier planned write touched the
//! object; writes land in an in-memory layer with the API server's semantics (404, 409, uid
//! preconditions, name and label validation), so step N is planned against the state after
//! steps 1..N-1 without anything being written to the base.
//!
//! With `forward_dry_run`, a `WriteMode::DryRun` write to an object no earlier step touched is
//! first sent to the base with `dryRun=All`, so the API server validates it (admission, schema,
//! RBAC); writes to objects an earlier step changed can only be checked against the layer,
//! because the server has not seen that change.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::object::{self, ObjectRef, Selector};
use super::semantics::{self, NewObject, check_names};
use super::sim::covering_budgets;
use super::{
    BoxFuture, Cluster, ClusterError, ClusterInfo, ExecOutput, Kind, Preconditions, Result,
    TokenVerdict, UserInfo, WriteMode, kinds, merge,
};

type Key = (String, String, String);

fn key_of(r: &ObjectRef) -> Key {
    (
        r.kind.clone(),
        r.namespace.clone().unwrap_or_default(),
        r.name.clone(),
    )
}

/// What the layer holds for an object: its planned state, or `None` once planned deleted.
#[derive(Default)]
struct Layer {
    objects: BTreeMap<Key, Option<Value>>,
    writes: u64,
}

/// A base cluster with planned writes layered on top.
pub struct Overlay<'a> {
    base: &'a dyn Cluster,
    layer: Mutex<Layer>,
    forward_dry_run: bool,
    /// Objects the base listed, by key: planning reads the cluster as of one moment, so an
    /// object a list already returned needs no GET of its own (a mass step lists thousands of
    /// pods, then plans a patch of each).
    listed: Mutex<std::collections::HashMap<Key, Value>>,
}

impl<'a> Overlay<'a> {
    /// Plans against `base`; nothing is ever sent to it but reads.
    pub fn new(base: &'a dyn Cluster) -> Self {
        Overlay {
            base,
            layer: Mutex::new(Layer::default()),
            forward_dry_run: false,
            listed: Mutex::default(),
        }
    }

    /// Like `new`, but dry-run writes to untouched objects are validated by the base first.
    pub fn forwarding_dry_run(base: &'a dyn Cluster) -> Self {
        Overlay {
            forward_dry_run: true,
            ..Overlay::new(base)
        }
    }

    fn layered(&self, r: &ObjectRef) -> Option<Option<Value>> {
        self.layer
            .lock()
            .expect("overlay lock")
            .objects
            .get(&key_of(r))
            .cloned()
    }

    fn touched(&self, r: &ObjectRef) -> bool {
        self.layered(r).is_some()
    }

    fn store(&self, r: &ObjectRef, object: Option<Value>) {
        self.layer
            .lock()
            .expect("overlay lock")
            .objects
            .insert(key_of(r), object);
    }

    /// A resourceVersion for a planned state; never one the server could have issued.
    fn next_version(&self) -> String {
        let mut layer = self.layer.lock().expect("overlay lock");
        layer.writes += 1;
        format!("planned-{}", layer.writes)
    }

    /// Whether a dry-run write of `r` goes to the base first.
    fn forwards(&self, r: &ObjectRef, mode: WriteMode) -> bool {
        self.forward_dry_run && mode == WriteMode::DryRun && !self.touched(r)
    }

    async fn read(&self, r: &ObjectRef) -> Result<Option<Value>> {
        if let Some(planned) = self.layered(r) {
            return Ok(planned);
        }
        let listed = self
            .listed
            .lock()
            .expect("overlay lock")
            .get(&key_of(r))
            .cloned();
        match listed {
            Some(object) => Ok(Some(object)),
            None => self.base.get(r).await,
        }
    }

    async fn create_layered(&self, object: &Value, mode: WriteMode) -> Result<Value> {
        // The server picks a generated name: it is known only after apply.
        let NewObject {
            mut object,
            reference: r,
            kind,
        } = semantics::prepare_create(object, || self.next_version())?;
        if kind.namespaced
            && let Some(ns) = &r.namespace
        {
            let namespace = ObjectRef::new("Namespace", None, ns);
            if self.read(&namespace).await?.is_none() {
                return Err(ClusterError::NotFound {
                    object: format!("Namespace {ns}"),
                });
            }
        }
        if self.read(&r).await?.is_some() {
            return Err(ClusterError::AlreadyExists {
                object: r.to_string(),
            });
        }
        if self.forwards(&r, mode) {
            self.base.create(&object, WriteMode::DryRun).await?;
        }
        // The uid is the server's to give: left out, so later planned writes to this object
        // carry no uid precondition that could never match.
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("uid");
        }
        object["metadata"]["resourceVersion"] = json!(self.next_version());
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(kind.api_version());
        }
        self.store(&r, Some(object.clone()));
        Ok(object)
    }

    async fn patch_layered(&self, r: &ObjectRef, patch: &Value, mode: WriteMode) -> Result<Value> {
        let current = self.read(r).await?.ok_or_else(|| ClusterError::NotFound {
            object: r.to_string(),
        })?;
        let uid = object::uid(&current).map(str::to_string);
        semantics::check_preconditions(r, &current, patch)?;
        if self.forwards(r, mode) {
            self.base.patch(r, patch, WriteMode::DryRun).await?;
        }
        let mut updated = current.clone();
        merge::apply(&mut updated, patch);
        updated["metadata"]["name"] = json!(r.name);
        match &uid {
            Some(uid) => updated["metadata"]["uid"] = json!(uid),
            None => {
                if let Some(meta) = updated["metadata"].as_object_mut() {
                    meta.remove("uid");
                }
            }
        }
        updated["kind"] = current["kind"].clone();
        updated["apiVersion"] = current["apiVersion"].clone();
        if let Some(ns) = &r.namespace {
            updated["metadata"]["namespace"] = json!(ns);
        }
        check_names(r, &updated)?;
        if updated == current {
            return Ok(current);
        }
        updated["metadata"]["resourceVersion"] = json!(self.next_version());
        self.store(r, Some(updated.clone()));
        Ok(updated)
    }

    async fn delete_layered(
        &self,
        r: &ObjectRef,
        pre: &Preconditions,
        grace: Option<i64>,
        mode: WriteMode,
    ) -> Result<()> {
        let current = self.read(r).await?.ok_or_else(|| ClusterError::NotFound {
            object: r.to_string(),
        })?;
        if let (Some(want), Some(uid)) = (&pre.uid, object::uid(&current))
            && want != uid
        {
            return Err(ClusterError::Conflict {
                object: r.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            });
        }
        if self.forwards(r, mode) {
            self.base.delete(r, pre, grace, WriteMode::DryRun).await?;
        }
        self.store(r, None);
        Ok(())
    }
}

impl Cluster for Overlay<'_> {
    fn info(&self) -> ClusterInfo {
        self.base.info()
    }

    fn identity(&self) -> BoxFuture<'_, Result<String>> {
        self.base.identity()
    }

    fn get<'b>(&'b self, r: &'b ObjectRef) -> BoxFuture<'b, Result<Option<Value>>> {
        Box::pin(self.read(r))
    }

    fn list<'b>(
        &'b self,
        kind: &'static Kind,
        namespace: Option<&'b str>,
        selector: &'b Selector,
    ) -> BoxFuture<'b, Result<Vec<Value>>> {
        Box::pin(async move {
            let base = self.base.list(kind, namespace, selector).await?;
            {
                let mut listed = self.listed.lock().expect("overlay lock");
                for object in &base {
                    if let Some(r) = ObjectRef::of(object) {
                        listed.insert(key_of(&r), object.clone());
                    }
                }
            }
            let layer = self.layer.lock().expect("overlay lock");
            let mut found: BTreeMap<Key, Value> = base
                .into_iter()
                .filter_map(|o| ObjectRef::of(&o).map(|r| (key_of(&r), o)))
                .filter(|(key, _)| !layer.objects.contains_key(key))
                .collect();
            for ((k, ns, name), planned) in &layer.objects {
                let Some(object) = planned else { continue };
                if k == kind.kind
                    && namespace.is_none_or(|want| ns == want)
                    && selector.matches(&object::labels(object))
                {
                    found.insert((k.clone(), ns.clone(), name.clone()), object.clone());
                }
            }
            Ok(found.into_values().collect())
        })
    }

    fn pods_on_node<'b>(&'b self, node: &'b str) -> BoxFuture<'b, Result<Vec<Value>>> {
        Box::pin(async move {
            let base = self.base.pods_on_node(node).await?;
            let layer = self.layer.lock().expect("overlay lock");
            let mut found: BTreeMap<Key, Value> = base
                .into_iter()
                .filter_map(|o| ObjectRef::of(&o).map(|r| (key_of(&r), o)))
                .filter(|(key, _)| !layer.objects.contains_key(key))
                .collect();
            for (key, planned) in &layer.objects {
                if let Some(pod) = planned
                    && key.0 == "Pod"
                    && pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                {
                    found.insert(key.clone(), pod.clone());
                }
            }
            Ok(found.into_values().collect())
        })
    }

    fn create<'b>(&'b self, object: &'b Value, mode: WriteMode) -> BoxFuture<'b, Result<Value>> {
        Box::pin(self.create_layered(object, mode))
    }

    fn patch<'b>(
        &'b self,
        r: &'b ObjectRef,
        patch: &'b Value,
        mode: WriteMode,
    ) -> BoxFuture<'b, Result<Value>> {
        Box::pin(self.patch_layered(r, patch, mode))
    }

    fn delete<'b>(
        &'b self,
        r: &'b ObjectRef,
        preconditions: &'b Preconditions,
        grace_period_seconds: Option<i64>,
        mode: WriteMode,
    ) -> BoxFuture<'b, Result<()>> {
        Box::pin(self.delete_layered(r, preconditions, grace_period_seconds, mode))
    }

    fn apply<'b>(&'b self, object: &'b Value, mode: WriteMode) -> BoxFuture<'b, Result<Value>> {
        Box::pin(async move {
            let r = ObjectRef::of(object).ok_or_else(|| ClusterError::Invalid {
                object: "object".into(),
                message: "kind and metadata.name are required".into(),
            })?;
            if self.read(&r).await?.is_none() {
                return self.create_layered(object, mode).await;
            }
            let mut patch = object.clone();
            if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
                meta.remove("uid");
            }
            self.patch_layered(&r, &patch, mode).await
        })
    }

    fn evict<'b>(
        &'b self,
        pod: &'b ObjectRef,
        uid: Option<&'b str>,
        mode: WriteMode,
    ) -> BoxFuture<'b, Result<()>> {
        Box::pin(async move {
            let current = self
                .read(pod)
                .await?
                .ok_or_else(|| ClusterError::NotFound {
                    object: pod.to_string(),
                })?;
            let budgets = self
                .list(
                    kinds::lookup("PodDisruptionBudget").expect("known kind"),
                    pod.namespace.as_deref(),
                    &Selector::default(),
                )
                .await?;
            covering_budgets(pod, &current, budgets)?;
            if self.forwards(pod, mode) {
                self.base.evict(pod, uid, WriteMode::DryRun).await?;
            }
            let pre = Preconditions {
                uid: uid.map(str::to_string),
                resource_version: None,
            };
            // Already validated by the server above: the layer only records the effect.
            self.delete_layered(pod, &pre, None, WriteMode::Apply).await
        })
    }

    fn logs<'b>(
        &'b self,
        pod: &'b ObjectRef,
        container: &'b str,
        previous: bool,
    ) -> BoxFuture<'b, Result<String>> {
        self.base.logs(pod, container, previous)
    }

    fn exec<'b>(
        &'b self,
        pod: &'b ObjectRef,
        container: &'b str,
        command: &'b [String],
    ) -> BoxFuture<'b, Result<ExecOutput>> {
        self.base.exec(pod, container, command)
    }

    fn review_token<'b>(&'b self, token: &'b str) -> BoxFuture<'b, Result<TokenVerdict>> {
        self.base.review_token(token)
    }

    fn review_access<'b>(
        &'b self,
        checks: &'b [super::Access],
    ) -> BoxFuture<'b, Result<Vec<super::AccessVerdict>>> {
        self.base.review_access(checks)
    }

    fn serves<'b>(&'b self, kind: &'static Kind) -> BoxFuture<'b, Result<bool>> {
        self.base.serves(kind)
    }

    fn whoami(&self) -> BoxFuture<'_, Result<UserInfo>> {
        self.base.whoami()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::sim::SimCluster;
    use crate::source::Source;

    fn base() -> SimCluster {
        let text = "kind: Namespace\nmetadata: {name: shop}\n---\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n---\nkind: Pod\nmetadata: {name: api, namespace: shop, labels: {app: api}}\n";
        SimCluster::load(&Source::new("s.yaml", text)).unwrap()
    }

    #[tokio::test]
    async fn planned_writes_are_seen_by_later_reads_and_never_reach_the_base() {
        let base = base();
        let overlay = Overlay::new(&base);
        let web = ObjectRef::new("Pod", Some("shop"), "web");
        let api = ObjectRef::new("Pod", Some("shop"), "api");
        let patch = json!({"metadata": {"labels": {"quarantine": "yes"}}});
        overlay.patch(&web, &patch, WriteMode::Apply).await.unwrap();
        overlay
            .delete(&api, &Preconditions::default(), None, WriteMode::Apply)
            .await
            .unwrap();
        let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "shop"}, "spec": {}});
        overlay.create(&policy, WriteMode::Apply).await.unwrap();

        let seen = overlay.get(&web).await.unwrap().unwrap();
        assert_eq!(object::labels(&seen)["quarantine"], "yes");
        assert!(overlay.get(&api).await.unwrap().is_none());
        let pods = overlay
            .list(
                kinds::lookup("Pod").unwrap(),
                Some("shop"),
                &Selector::default(),
            )
            .await
            .unwrap();
        assert_eq!(pods.len(), 1, "the planned delete hides the pod from lists");
        let selector = Selector::labels([("quarantine".to_string(), "yes".to_string())].into());
        let selected = overlay
            .list(kinds::lookup("Pod").unwrap(), Some("shop"), &selector)
            .await
            .unwrap();
        assert_eq!(selected.len(), 1, "lists select on planned labels");
        assert!(matches!(
            overlay.create(&policy, WriteMode::Apply).await,
            Err(ClusterError::AlreadyExists { .. })
        ));

        let untouched = base.get(&web).await.unwrap().unwrap();
        assert!(!object::labels(&untouched).contains_key("quarantine"));
        assert!(base.get(&api).await.unwrap().is_some());
        let base_policy = ObjectRef::new("NetworkPolicy", Some("shop"), "deny");
        assert!(base.get(&base_policy).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn planned_writes_answer_like_the_api_server() {
        let base = base();
        let overlay = Overlay::new(&base);
        let web = ObjectRef::new("Pod", Some("shop"), "web");
        let wrong_uid = json!({"metadata": {"uid": "other", "labels": {"x": "y"}}});
        assert!(matches!(
            overlay.patch(&web, &wrong_uid, WriteMode::Apply).await,
            Err(ClusterError::Conflict { .. })
        ));
        let bad_label = json!({"metadata": {"labels": {"x": "not a label value!"}}});
        assert!(matches!(
            overlay.patch(&web, &bad_label, WriteMode::Apply).await,
            Err(ClusterError::Invalid { .. })
        ));
        let elsewhere =
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "nope"}});
        assert!(
            overlay
                .create(&elsewhere, WriteMode::Apply)
                .await
                .unwrap_err()
                .is_not_found()
        );
        let gone = ObjectRef::new("Pod", Some("shop"), "gone");
        assert!(
            overlay
                .delete(&gone, &Preconditions::default(), None, WriteMode::Apply)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
}
