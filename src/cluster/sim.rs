//! `SimCluster`: an in-memory cluster loaded from a snapshot, answering like the API server for
//! the calls contain makes (uids, resourceVersions, label selection, 404, 409, 422).
//!
//! It runs no controllers: a deleted pod is not replaced, a scaled Deployment gets no new pods.
//! Tabletop runs say so in their summary.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::object::{self, ObjectRef, Selector};
use super::semantics::{self, NewObject, check_names};
use super::{
    BoxFuture, Cluster, ClusterError, ClusterInfo, Kind, Preconditions, Result, UserInfo,
    WriteMode, kinds, merge,
};
use crate::diagnostics::{Problem, Report};
use crate::source::{Source, Span};
use crate::yaml::node::{self, Limits, Node};

type Key = (String, String, String);

fn key_of(r: &ObjectRef) -> Key {
    (
        r.kind.clone(),
        r.namespace.clone().unwrap_or_default(),
        r.name.clone(),
    )
}

struct State {
    objects: BTreeMap<Key, Value>,
    next_resource_version: u64,
    created: u64,
}

/// A cluster in memory.
pub struct SimCluster {
    origin: String,
    state: Mutex<State>,
}

impl SimCluster {
    /// A cluster with no objects at all.
    fn blank(origin: &str) -> Self {
        SimCluster {
            origin: origin.to_string(),
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                next_resource_version: 1,
                created: 0,
            }),
        }
    }

    /// An empty cluster with only a `kube-system` namespace.
    pub fn empty(origin: &str) -> Self {
        let sim = Self::blank(origin);
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}});
        let _ = sim.insert(ns);
        sim
    }

    /// A cluster holding exactly these objects (filled in as a snapshot's are): the fixtures
    /// of unit tests.
    pub fn with_objects(
        origin: &str,
        objects: impl IntoIterator<Item = Value>,
    ) -> std::result::Result<Self, String> {
        let sim = Self::blank(origin);
        for object in objects {
            sim.insert(object)?;
        }
        Ok(sim)
    }

    /// Loads a multi-document snapshot (objects, or `kind: List` documents of objects).
    pub fn load(source: &Source) -> std::result::Result<Self, Report> {
        let fail = |problems: Vec<Problem>| Report::new(source.clone(), problems);
        // Nothing but whitespace and comments: not a snapshot at all (the parser's own word
        // for an empty stream says nothing a person can use).
        let blank = source
            .text()
            .lines()
            .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
        if blank {
            return Err(fail(vec![Problem::new(
                "the snapshot holds no objects: it is empty or only comments (export one with `contain snapshot`)",
                Some(source.span_at(0, 0)),
            )]));
        }
        let docs = node::parse_document_values(source, Limits::SNAPSHOT).map_err(|e| {
            let span = match &e {
                node::ParseError::Yaml { span, .. } => *span,
                _ => None,
            };
            fail(vec![Problem::new(e.to_string(), span)])
        })?;
        if docs.iter().all(|(_, doc)| doc.is_null()) {
            return Err(fail(vec![Problem::new(
                "the snapshot holds no objects: its documents are empty (export one with `contain snapshot`)",
                Some(source.span_at(0, 0)),
            )]));
        }
        let sim = Self::blank(source.name());
        let mut problems = Vec::new();
        let mut add = |span: Span, object: Value| {
            if let Err(message) = sim.insert(object) {
                problems.push(Problem::new(message, Some(span)).label("this object"));
            }
        };
        for (span, mut doc) in docs {
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                let items = match doc.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                for item in items {
                    add(span, item);
                }
            } else {
                add(span, doc);
            }
        }
        if problems.is_empty() {
            Ok(sim)
        } else {
            Err(fail(Self::locate_problems(source).unwrap_or(problems)))
        }
    }

    /// The problems of a snapshot that failed to load, each at the span of its own object (a
    /// `kind: List` item, not the whole list): the slower node-tree parse, only on the error path.
    fn locate_problems(source: &Source) -> Option<Vec<Problem>> {
        let docs = node::parse_documents(source, Limits::SNAPSHOT).ok()?;
        let scratch = Self::blank(source.name());
        let mut problems = Vec::new();
        let mut add = |doc: &Node| {
            if let Err(message) = scratch.insert(doc.to_json()) {
                problems.push(Problem::new(message, Some(doc.span)).label("this object"));
            }
        };
        for doc in &docs {
            if doc.get("kind").and_then(Node::as_str) == Some("List") {
                doc.get("items")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .for_each(&mut add);
            } else {
                add(doc);
            }
        }
        Some(problems)
    }

    /// Adds an object as found in a snapshot, filling in what the server would have set.
    fn insert(&self, mut object: Value) -> std::result::Result<(), String> {
        if object.is_null() {
            return Ok(());
        }
        let kind_name = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("object has no `kind`")?
            .to_string();
        let kind = kinds::lookup(&kind_name)
            .ok_or_else(|| format!("unknown kind `{kind_name}` in snapshot"))?;
        let name = object::name(&object)
            .ok_or_else(|| format!("{kind_name} has no `metadata.name`"))?
            .to_string();
        let mut state = self.state.lock().expect("sim state lock");
        if kind.namespaced && object::namespace(&object).is_none() {
            object["metadata"]["namespace"] = json!("default");
        }
        if !kind.namespaced
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("namespace");
        }
        let r = ObjectRef::of(&object).ok_or("object has no name")?;
        if object::uid(&object).is_none() {
            object["metadata"]["uid"] = json!(stable_uid(&r));
        }
        match object::resource_version(&object).and_then(|rv| rv.parse::<u64>().ok()) {
            Some(rv) => state.next_resource_version = state.next_resource_version.max(rv + 1),
            None => {
                let rv = state.bump();
                object["metadata"]["resourceVersion"] = json!(rv);
            }
        }
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(kind.api_version());
        }
        if state.objects.insert(key_of(&r), object).is_some() {
            return Err(format!("{r} appears twice in the snapshot ({name})"));
        }
        Ok(())
    }

    /// Every object, in API order (kind, namespace, name).
    pub fn objects(&self) -> Vec<Value> {
        self.state
            .lock()
            .expect("sim state lock")
            .objects
            .values()
            .cloned()
            .collect()
    }

    fn get_now(&self, r: &ObjectRef) -> Option<Value> {
        self.state
            .lock()
            .expect("sim state lock")
            .objects
            .get(&key_of(r))
            .cloned()
    }

    fn list_now(&self, kind: &Kind, namespace: Option<&str>, selector: &Selector) -> Vec<Value> {
        let state = self.state.lock().expect("sim state lock");
        state
            .objects
            .iter()
            .filter(|((k, ns, _), _)| k == kind.kind && namespace.is_none_or(|want| ns == want))
            .filter(|(_, o)| selector.matches(&object::labels(o)))
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn create_now(&self, object: &Value, mode: WriteMode) -> Result<Value> {
        let mut state = self.state.lock().expect("sim state lock");
        let NewObject {
            mut object,
            reference: r,
            kind,
        } = semantics::prepare_create(object, || {
            state.created += 1;
            format!("{:05x}", state.created)
        })?;
        if kind.namespaced
            && let Some(ns) = r.namespace.clone()
            && !state
                .objects
                .contains_key(&("Namespace".into(), String::new(), ns.clone()))
        {
            return Err(ClusterError::NotFound {
                object: format!("Namespace {ns}"),
            });
        }
        if state.objects.contains_key(&key_of(&r)) {
            return Err(ClusterError::AlreadyExists {
                object: r.to_string(),
            });
        }
        state.created += 1;
        object["metadata"]["uid"] = json!(stable_uid(&ObjectRef {
            name: format!("{}#{}", r.name, state.created),
            ..r.clone()
        }));
        object["metadata"]["creationTimestamp"] = json!(now());
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(kind.api_version());
        }
        let rv = state.bump();
        object["metadata"]["resourceVersion"] = json!(rv);
        if mode == WriteMode::Apply {
            state.objects.insert(key_of(&r), object.clone());
        }
        Ok(object)
    }

    fn patch_now(&self, r: &ObjectRef, patch: &Value, mode: WriteMode) -> Result<Value> {
        let mut state = self.state.lock().expect("sim state lock");
        let current = state
            .objects
            .get(&key_of(r))
            .ok_or_else(|| ClusterError::NotFound {
                object: r.to_string(),
            })?
            .clone();
        let uid = object::uid(&current).unwrap_or_default().to_string();
        semantics::check_preconditions(r, &current, patch)?;
        let mut updated = current.clone();
        merge::apply(&mut updated, patch);
        // Identity fields are the server's; a patch cannot move or rename an object.
        updated["metadata"]["name"] = json!(r.name);
        updated["metadata"]["uid"] = json!(uid);
        updated["kind"] = current["kind"].clone();
        updated["apiVersion"] = current["apiVersion"].clone();
        if let Some(ns) = &r.namespace {
            updated["metadata"]["namespace"] = json!(ns);
        }
        check_names(r, &updated)?;
        if updated == current {
            return Ok(current);
        }
        let next = state.bump();
        updated["metadata"]["resourceVersion"] = json!(next);
        if let Some(generation) = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            && current.get("spec") != updated.get("spec")
        {
            updated["metadata"]["generation"] = json!(generation + 1);
        }
        if mode == WriteMode::Apply {
            state.objects.insert(key_of(r), updated.clone());
        }
        Ok(updated)
    }

    fn delete_now(&self, r: &ObjectRef, pre: &Preconditions, mode: WriteMode) -> Result<()> {
        let mut state = self.state.lock().expect("sim state lock");
        let current = state
            .objects
            .get(&key_of(r))
            .ok_or_else(|| ClusterError::NotFound {
                object: r.to_string(),
            })?;
        let uid = object::uid(current).unwrap_or_default();
        if let Some(want) = &pre.uid
            && want != uid
        {
            return Err(ClusterError::Conflict {
                object: r.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            });
        }
        if let Some(want) = &pre.resource_version
            && Some(want.as_str()) != object::resource_version(current)
        {
            return Err(ClusterError::Conflict {
                object: r.to_string(),
                message: "Precondition failed: resourceVersion does not match".into(),
            });
        }
        if mode == WriteMode::Apply {
            state.objects.remove(&key_of(r));
        }
        Ok(())
    }
}

impl SimCluster {
    /// Server-side apply, approximated: create, or merge the given fields into the object.
    fn apply_now(&self, object: &Value, mode: WriteMode) -> Result<Value> {
        let r = ObjectRef::of(object).ok_or_else(|| ClusterError::Invalid {
            object: "object".into(),
            message: "kind and metadata.name are required".into(),
        })?;
        if self.get_now(&r).is_none() {
            return self.create_now(object, mode);
        }
        let mut patch = object.clone();
        if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("uid");
        }
        self.patch_now(&r, &patch, mode)
    }

    /// The Eviction API: refused with 429 while a PodDisruptionBudget selecting the pod allows
    /// no disruption; otherwise the pod is deleted and the budget's allowance goes down.
    fn evict_now(&self, pod: &ObjectRef, uid: Option<&str>, mode: WriteMode) -> Result<()> {
        let current = self.get_now(pod).ok_or_else(|| ClusterError::NotFound {
            object: pod.to_string(),
        })?;
        let budgets = self.list_now(
            kinds::lookup("PodDisruptionBudget").expect("known kind"),
            pod.namespace.as_deref(),
            &Selector::default(),
        );
        let covering = covering_budgets(pod, &current, budgets)?;
        self.delete_now(
            pod,
            &Preconditions {
                uid: uid.map(str::to_string),
                resource_version: None,
            },
            mode,
        )?;
        if mode == WriteMode::Apply {
            for pdb in covering {
                let r = ObjectRef::of(&pdb).expect("listed objects have names");
                let allowed = pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                self.patch_now(
                    &r,
                    &json!({"status": {"disruptionsAllowed": allowed - 1}}),
                    mode,
                )?;
            }
        }
        Ok(())
    }
}

/// The PodDisruptionBudgets that select `pod`, as the Eviction API sees them: refused with 429
/// while one of them allows no disruption.
pub(super) fn covering_budgets(
    r: &ObjectRef,
    pod: &Value,
    budgets: Vec<Value>,
) -> Result<Vec<Value>> {
    let labels = object::labels(pod);
    let mut covering = Vec::new();
    for pdb in budgets {
        let selects = pdb
            .pointer("/spec/selector")
            .and_then(Selector::from_value)
            .is_some_and(|s| !s.is_empty() && s.matches(&labels));
        if !selects {
            continue;
        }
        let allowed = pdb
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if allowed < 1 {
            return Err(ClusterError::TooManyRequests {
                object: r.to_string(),
                message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                retry_after_seconds: None,
            });
        }
        covering.push(pdb);
    }
    Ok(covering)
}

impl State {
    fn bump(&mut self) -> String {
        let rv = self.next_resource_version;
        self.next_resource_version += 1;
        rv.to_string()
    }
}

/// A uid derived from the object's identity, so a snapshot without uids loads the same way twice.
fn stable_uid(r: &ObjectRef) -> String {
    let digest = Sha256::digest(r.to_string().as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Cluster for SimCluster {
    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            kind: "simulated",
            server: self.origin.clone(),
            context: None,
        }
    }

    fn identity(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let r = ObjectRef::new("Namespace", None, "kube-system");
            self.get_now(&r)
                .and_then(|ns| object::uid(&ns).map(str::to_string))
                .ok_or_else(|| {
                    ClusterError::Unsupported(
                        "the snapshot has no kube-system namespace, so the cluster has no identity"
                            .into(),
                    )
                })
        })
    }

    fn get<'a>(&'a self, r: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(async move { Ok(self.get_now(r)) })
    }

    fn list<'a>(
        &'a self,
        kind: &'static Kind,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<Value>>> {
        Box::pin(async move { Ok(self.list_now(kind, namespace, selector)) })
    }

    fn create<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { self.create_now(object, mode) })
    }

    fn patch<'a>(
        &'a self,
        r: &'a ObjectRef,
        patch: &'a Value,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { self.patch_now(r, patch, mode) })
    }

    fn delete<'a>(
        &'a self,
        r: &'a ObjectRef,
        preconditions: &'a Preconditions,
        _grace_period_seconds: Option<i64>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.delete_now(r, preconditions, mode) })
    }

    fn apply<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { self.apply_now(object, mode) })
    }

    fn evict<'a>(
        &'a self,
        pod: &'a ObjectRef,
        uid: Option<&'a str>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.evict_now(pod, uid, mode) })
    }

    fn whoami(&self) -> BoxFuture<'_, Result<UserInfo>> {
        Box::pin(async move {
            Ok(UserInfo {
                username: "tabletop".into(),
                groups: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> SimCluster {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n";
        SimCluster::load(&Source::new("s.yaml", text)).unwrap()
    }

    fn pod() -> ObjectRef {
        ObjectRef::new("Pod", Some("shop"), "web")
    }

    #[tokio::test]
    async fn patch_checks_preconditions_and_bumps_resource_version() {
        let sim = sim();
        let before = sim.get(&pod()).await.unwrap().unwrap();
        let rv = object::resource_version(&before).unwrap().to_string();
        let stale = json!({"metadata": {"resourceVersion": "0", "labels": {"x": "y"}}});
        assert!(matches!(
            sim.patch(&pod(), &stale, WriteMode::Apply).await,
            Err(ClusterError::Conflict { .. })
        ));
        let fresh = json!({"metadata": {"resourceVersion": rv, "labels": {"x": "y"}}});
        let after = sim.patch(&pod(), &fresh, WriteMode::Apply).await.unwrap();
        assert_ne!(object::resource_version(&after), Some(rv.as_str()));
        assert_eq!(
            object::labels(&after).get("x").map(String::as_str),
            Some("y")
        );
        let bad_uid = json!({"metadata": {"uid": "nope", "labels": {"x": null}}});
        assert!(matches!(
            sim.patch(&pod(), &bad_uid, WriteMode::Apply).await,
            Err(ClusterError::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_labels_are_rejected_like_the_api_server() {
        let sim = sim();
        let patch = json!({"metadata": {"labels": {"bad key": "v"}}});
        assert!(matches!(
            sim.patch(&pod(), &patch, WriteMode::Apply).await,
            Err(ClusterError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn create_and_delete_answer_409_and_404() {
        let sim = sim();
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}});
        let created = sim.create(&obj, WriteMode::Apply).await.unwrap();
        assert!(matches!(
            sim.create(&obj, WriteMode::Apply).await,
            Err(ClusterError::AlreadyExists { .. })
        ));
        let r = ObjectRef::of(&created).unwrap();
        let wrong = Preconditions {
            uid: Some("other".into()),
            resource_version: None,
        };
        assert!(matches!(
            sim.delete(&r, &wrong, None, WriteMode::Apply).await,
            Err(ClusterError::Conflict { .. })
        ));
        let right = Preconditions {
            uid: object::uid(&created).map(str::to_string),
            resource_version: None,
        };
        sim.delete(&r, &right, None, WriteMode::Apply)
            .await
            .unwrap();
        assert!(matches!(
            sim.delete(&r, &right, None, WriteMode::Apply).await,
            Err(ClusterError::NotFound { .. })
        ));
        let elsewhere =
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "nope"}});
        assert!(
            sim.create(&elsewhere, WriteMode::Apply)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test]
    async fn dry_run_writes_nothing() {
        let sim = sim();
        let patch = json!({"metadata": {"labels": {"x": "y"}}});
        sim.patch(&pod(), &patch, WriteMode::DryRun).await.unwrap();
        let now = sim.get(&pod()).await.unwrap().unwrap();
        assert!(!object::labels(&now).contains_key("x"));
    }

    #[tokio::test]
    async fn eviction_respects_disruption_budgets() {
        let text = "kind: Namespace\nmetadata: {name: shop}\n---\nkind: Pod\nmetadata: {name: a, namespace: shop, labels: {app: web}}\n---\nkind: Pod\nmetadata: {name: b, namespace: shop, labels: {app: web}}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\nspec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\nstatus: {disruptionsAllowed: 1}\n";
        let sim = SimCluster::load(&Source::new("s.yaml", text)).unwrap();
        let a = ObjectRef::new("Pod", Some("shop"), "a");
        let b = ObjectRef::new("Pod", Some("shop"), "b");
        sim.evict(&a, None, WriteMode::Apply).await.unwrap();
        assert!(sim.get(&a).await.unwrap().is_none());
        let refused = sim.evict(&b, None, WriteMode::Apply).await.unwrap_err();
        assert!(
            matches!(refused, ClusterError::TooManyRequests { .. }),
            "{refused}"
        );
        assert!(sim.get(&b).await.unwrap().is_some());
    }

    #[test]
    fn duplicate_objects_are_located() {
        let text =
            "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: a}\n";
        let report = SimCluster::load(&Source::new("s.yaml", text))
            .err()
            .unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].span.unwrap().line, 4);
    }

    #[test]
    fn a_bad_item_of_a_list_is_located_at_the_item() {
        let text = "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n- kind: Namespace\n  metadata: {}\n";
        let report = SimCluster::load(&Source::new("s.yaml", text))
            .err()
            .unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].span.unwrap().line, 5);
    }
}
