//! A run's ContainmentRun and its ContainmentRunJournal chunks on the API server: creating a run's
//! object, writing its records and summary (compare-and-swap on the resourceVersion, so two
//! writers of one run never interleave), finding a run by id, listing runs, and reading a run's
//! records back.

use journal::{Record, RunHeader};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::ClusterError;
use super::kube::{KubeCluster, map_error};
use super::run_copy::{self as copy, CopyState};

pub const GROUP: &str = "contain.dev";
pub const VERSION: &str = "v1alpha1";
/// The label naming the run (its id exactly; object names are lowercase).
pub const RUN_LABEL: &str = "contain.dev/run";

/// Why the cluster copy could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The API server does not serve the ContainmentRun kind.
    #[error(
        "the cluster has no ContainmentRun resource (install it with `contain crd | kubectl apply -f -`)"
    )]
    NotInstalled,
    /// Someone else wrote the run's copy since this process last did.
    #[error(
        "ContainmentRun {object} moved on without this process: it now ends at record {seq} ({responder} holds the run)"
    )]
    Moved {
        object: String,
        seq: u64,
        responder: String,
    },
    #[error("{0}")]
    Api(#[from] ClusterError),
    #[error("ContainmentRun {object}: {message}")]
    Unreadable { object: String, message: String },
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// The ContainmentRun API, in one namespace or all.
fn runs(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let r = resource("ContainmentRun", "containmentruns");
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &r),
        None => Api::all_with(client.clone(), &r),
    }
}

fn chunks(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource("ContainmentRunJournal", "containmentrunjournals"),
    )
}

/// The object name of a run: its id in lowercase (ids are digits, letters and dashes).
pub fn object_name(run: &str) -> String {
    run.to_ascii_lowercase()
}

fn api_error(object: &str, e: kube::Error) -> CopyError {
    match &e {
        // A 404 on a collection (not on a named object) means the kind is not served.
        kube::Error::Api(status) if status.code == 404 && status.reason == "NotFound" => {
            if status.details.as_ref().is_some_and(|d| !d.name.is_empty()) {
                CopyError::Api(map_error(object, e))
            } else {
                CopyError::NotInstalled
            }
        }
        _ => CopyError::Api(map_error(object, e)),
    }
}

/// One run's copy, as this process writes it.
pub struct ClusterCopy {
    client: Client,
    pub namespace: String,
    pub name: String,
    uid: String,
    resource_version: String,
    pub state: CopyState,
}

impl std::fmt::Debug for ClusterCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContainmentRun {}/{}", self.namespace, self.name)
    }
}

/// What a run's object says, as read.
#[derive(Clone, Debug)]
pub struct Found {
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

impl Found {
    pub fn header(&self) -> Result<RunHeader, CopyError> {
        let text = self.object["spec"]["header"].as_str().unwrap_or_default();
        serde_json::from_str(text).map_err(|e| CopyError::Unreadable {
            object: self.describe(),
            message: format!("spec.header: {e}"),
        })
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn state(&self) -> CopyState {
        let journal = &self.object["status"]["journal"];
        let head = match (journal["headSeq"].as_u64(), journal["headHash"].as_str()) {
            (Some(seq), Some(hash)) if seq > 0 => Some((seq, hash.to_string())),
            _ => None,
        };
        CopyState {
            chunks: journal["chunks"].as_u64().unwrap_or(0) as usize,
            tail: journal["tail"].as_str().unwrap_or_default().to_string(),
            head,
        }
    }

    pub fn responder(&self) -> String {
        self.object["status"]["responder"]
            .as_str()
            .or_else(|| self.object["spec"]["responder"].as_str())
            .unwrap_or("someone")
            .to_string()
    }

    /// The run's records, chunks then tail, read back and parsed (not yet verified).
    pub async fn records(&self, cluster: &KubeCluster) -> Result<Vec<Record>, CopyError> {
        let state = self.state();
        let list = chunks(cluster.client(), &self.namespace)
            .list(&ListParams::default().labels(&format!("{RUN_LABEL}={}", self.run())))
            .await
            .map_err(|e| api_error(&self.describe(), e))?;
        let mut pieces: Vec<(u64, String)> = list
            .items
            .into_iter()
            .filter_map(|c| {
                let spec = c.data.get("spec")?;
                Some((spec["index"].as_u64()?, spec["text"].as_str()?.to_string()))
            })
            .filter(|(index, _)| (*index as usize) < state.chunks)
            .collect();
        pieces.sort_by_key(|(index, _)| *index);
        if pieces.len() != state.chunks {
            return Err(CopyError::Unreadable {
                object: self.describe(),
                message: format!(
                    "{} journal chunk(s) recorded, {} found",
                    state.chunks,
                    pieces.len()
                ),
            });
        }
        copy::parse(pieces.iter().map(|(_, t)| t.as_str()), &state.tail).map_err(|message| {
            CopyError::Unreadable {
                object: self.describe(),
                message,
            }
        })
    }

    pub fn run(&self) -> String {
        self.object["spec"]["run"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Every run's object, in one namespace or all (`None`).
pub async fn list(cluster: &KubeCluster, namespace: Option<&str>) -> Result<Vec<Found>, CopyError> {
    let list = runs(cluster.client(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("containmentruns", e))?;
    Ok(list.items.into_iter().map(found).collect())
}

fn found(object: DynamicObject) -> Found {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    Found {
        namespace,
        name,
        object: serde_json::to_value(&object).unwrap_or(Value::Null),
    }
}

/// The object of one run, wherever it lives.
pub async fn find(cluster: &KubeCluster, run: &str) -> Result<Option<Found>, CopyError> {
    let list = runs(cluster.client(), None)
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await
        .map_err(|e| api_error("containmentruns", e))?;
    Ok(list.items.into_iter().next().map(found))
}

impl ClusterCopy {
    /// Creates the run's object with its spec (the run's header and playbook); a run whose
    /// object already exists (a retry) goes on from it.
    pub async fn create(
        cluster: &KubeCluster,
        namespace: &str,
        run: &str,
        spec: Value,
    ) -> Result<Self, CopyError> {
        let client = cluster.client();
        let name = object_name(run);
        let api = runs(client, Some(namespace));
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "ContainmentRun",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {RUN_LABEL: run, "app.kubernetes.io/managed-by": "contain"},
            },
            "spec": spec,
        }))
        .expect("a ContainmentRun is an object");
        let describe = format!("ContainmentRun {namespace}/{name}");
        let created = match api.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                api.get(&name).await.map_err(|e| api_error(&describe, e))?
            }
            Err(e) => return Err(api_error(&describe, e)),
        };
        Ok(Self::from_object(client, created))
    }

    /// Goes on writing a run's existing object.
    pub fn open(cluster: &KubeCluster, found: &Found) -> Self {
        let object: DynamicObject =
            serde_json::from_value(found.object.clone()).expect("a listed object deserializes");
        Self::from_object(cluster.client(), object)
    }

    fn from_object(client: &Client, object: DynamicObject) -> Self {
        let found = found(object.clone());
        ClusterCopy {
            client: client.clone(),
            state: found.state(),
            namespace: found.namespace,
            name: found.name,
            uid: object.metadata.uid.clone().unwrap_or_default(),
            resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
        }
    }

    fn describe(&self) -> String {
        format!("ContainmentRun {}/{}", self.namespace, self.name)
    }

    /// Appends records (sealing full chunks first) and replaces the status with `summary`
    /// plus where the journal now ends, in one compare-and-swap: a copy another process moved
    /// on is refused, naming where it ends and who holds it. Returns the API writes made.
    pub async fn write(
        &mut self,
        run: &str,
        records: &[Record],
        summary: Value,
    ) -> Result<usize, CopyError> {
        let (next, sealed) = copy::append(&self.state, records);
        let mut writes = 0;
        for (i, text) in sealed.into_iter().enumerate() {
            self.seal(run, self.state.chunks + i, text).await?;
            writes += 1;
        }
        let mut status = summary;
        status["journal"] = json!({
            "headSeq": next.seq(),
            "headHash": next.head.as_ref().map(|(_, h)| h.clone()).unwrap_or_default(),
            "chunks": next.chunks,
            "tail": next.tail,
        });
        status["updatedAt"] = json!(jiff::Timestamp::now().to_string());
        let api = runs(&self.client, Some(&self.namespace));
        loop {
            let body: DynamicObject = serde_json::from_value(json!({
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "kind": "ContainmentRun",
                "metadata": {"name": self.name, "resourceVersion": self.resource_version},
                "status": status,
            }))
            .expect("a status is an object");
            match api
                .replace_status(&self.name, &PostParams::default(), &body)
                .await
            {
                Ok(updated) => {
                    self.resource_version = updated.metadata.resource_version.unwrap_or_default();
                    self.state = next;
                    return Ok(writes + 1);
                }
                Err(kube::Error::Api(answer)) if answer.code == 409 => {
                    // Someone wrote the object: only a copy still ending where this one does
                    // may be written on (a label added by hand moves the resourceVersion too).
                    let current = api
                        .get(&self.name)
                        .await
                        .map_err(|e| api_error(&self.describe(), e))?;
                    let current = found(current);
                    if current.state().head != self.state.head {
                        return Err(CopyError::Moved {
                            object: self.describe(),
                            seq: current.state().seq(),
                            responder: current.responder(),
                        });
                    }
                    self.resource_version = current.object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    writes += 1;
                }
                Err(e) => return Err(api_error(&self.describe(), e)),
            }
        }
    }

    /// Writes one sealed chunk (again, if a crash left one from an earlier attempt).
    async fn seal(&self, run: &str, index: usize, text: String) -> Result<(), CopyError> {
        let api = chunks(&self.client, &self.namespace);
        let name = format!("{}-{index:05}", self.name);
        let object = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "ContainmentRunJournal",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {RUN_LABEL: run, "app.kubernetes.io/managed-by": "contain"},
                // Deleting the run deletes its journal.
                "ownerReferences": [{
                    "apiVersion": format!("{GROUP}/{VERSION}"),
                    "kind": "ContainmentRun",
                    "name": self.name,
                    "uid": self.uid,
                }],
            },
            "spec": {"run": run, "index": index, "text": text},
        });
        let object: DynamicObject = serde_json::from_value(object).expect("a chunk is an object");
        let describe = format!("ContainmentRunJournal {}/{name}", self.namespace);
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                let old = api.get(&name).await.map_err(|e| api_error(&describe, e))?;
                let mut object = object;
                object.metadata.resource_version = old.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &object)
                    .await
                    .map(|_| ())
                    .map_err(|e| api_error(&describe, e))
            }
            Err(e) => Err(api_error(&describe, e)),
        }
    }
}

/// Records on a run's status that its due review was said (`reviewNotifiedAt`), so the next
/// review does not say it again.
pub async fn mark_review_notified(
    cluster: &KubeCluster,
    found: &Found,
    due: &str,
) -> Result<(), CopyError> {
    let patch = json!({"status": {"reviewNotifiedAt": due}});
    runs(cluster.client(), Some(&found.namespace))
        .patch_status(
            &found.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|e| api_error(&found.describe(), e))
}
