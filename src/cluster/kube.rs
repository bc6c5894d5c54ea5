//! `KubeCluster`: the `Cluster` seam over kube-rs.
//!
//! kube's client has no read timeout and retries 429/503/504 up to 15 times with a very high
//! cap, so a stalled API server could hang a 3 a.m. run. This client turns the built-in retry
//! off, sets read/connect timeouts, wraps every call in a deadline, and retries transient
//! failures a few times with a short backoff.

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::Value;

use super::object::{self, ObjectRef, Selector};
use super::{
    BoxFuture, Cluster, ClusterError, ClusterInfo, ExecOutput, Kind, Preconditions, Result,
    TokenVerdict, UserInfo, WriteMode, kinds,
};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenRequest, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, EvictParams, LogParams};

/// The field manager of every write, so `managedFields` show which changes are contain's.
pub const FIELD_MANAGER: &str = "contain";

/// How to reach the cluster.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Deadline of one API call, retries included.
    pub call_timeout: Option<Duration>,
    /// The User-Agent every request carries (audit logs record it): a drill stamps its run id
    /// here.
    pub user_agent: Option<String>,
}

/// A live cluster behind an API server.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// How the client was made: a cluster that presents another token is made from it.
    config: Config,
    server: String,
    context: Option<String>,
    call_timeout: Duration,
    /// How many calls the server answered 429 (API Priority and Fairness) and were retried.
    throttled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Whether the responder was told the API server is unreachable (said once).
    said_unreachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where a warning goes while a call is still being retried (the command layer's ui).
    warn: fn(&str),
}

impl KubeCluster {
    /// Connects using a kubeconfig file (`--kubeconfig`, else `$KUBECONFIG`, else
    /// `~/.kube/config`) or, with none of those, the in-cluster service account.
    pub async fn connect(options: &Connect) -> Result<Self> {
        Self::from_config(Self::config(options).await?, options)
    }

    /// A cluster from a configuration [`KubeCluster::config`] made (a caller that also needs
    /// the configuration itself reads the kubeconfig once).
    pub fn from_config(config: Config, options: &Connect) -> Result<Self> {
        let call_timeout = options.call_timeout.unwrap_or(Duration::from_secs(30));
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config.clone())
            .map_err(|e| ClusterError::Connection(e.to_string()))?;
        Ok(KubeCluster {
            client,
            config,
            server,
            context: options.context.clone(),
            call_timeout,
            throttled: Default::default(),
            said_unreachable: Default::default(),
            warn: |_| {},
        })
    }

    /// The same cluster, as whoever holds `token` (a drill acting with a stolen token): the
    /// same server, User-Agent and deadlines, no other credential.
    pub fn with_token(&self, token: &str) -> Result<Self> {
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        let client = Client::try_from(config.clone())
            .map_err(|e| ClusterError::Connection(e.to_string()))?;
        Ok(KubeCluster {
            client,
            config,
            throttled: Default::default(),
            said_unreachable: Default::default(),
            ..self.clone()
        })
    }

    /// Tells `warn` what a responder should know while a call is still being retried (an
    /// unreachable API server); by default nobody is told.
    pub fn warning_to(mut self, warn: fn(&str)) -> Self {
        self.warn = warn;
        self
    }

    /// How many calls so far the server throttled (429) and were retried after its Retry-After.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client configuration `connect` uses: the kubeconfig (or in-cluster account), our
    /// timeouts, no blind retries, and the User-Agent when one is given.
    pub async fn config(options: &Connect) -> Result<Config> {
        let kube_options = KubeConfigOptions {
            context: options.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match &options.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    ClusterError::Connection(format!(
                        "cannot read kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                Config::from_custom_kubeconfig(file, &kube_options)
                    .await
                    .map_err(|e| {
                        ClusterError::Connection(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => match Config::from_kubeconfig(&kube_options).await {
                Ok(config) => config,
                Err(kubeconfig_error) => Config::incluster().map_err(|_| {
                    ClusterError::Connection(format!(
                        "no usable kubeconfig ({kubeconfig_error}) and not running in a cluster"
                    ))
                })?,
            },
        };
        let call_timeout = options.call_timeout.unwrap_or(Duration::from_secs(30));
        config.default_retry = false;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(call_timeout);
        config.write_timeout = Some(call_timeout);
        if let Some(agent) = &options.user_agent {
            let value = http::HeaderValue::from_str(agent)
                .map_err(|e| ClusterError::Connection(format!("user agent {agent:?}: {e}")))?;
            config.headers.push((http::header::USER_AGENT, value));
        }
        Ok(config)
    }

    /// The kube-rs client, for calls outside the `Cluster` seam (token review, exec, logs).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        match namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// The pods API of the namespace a pod reference names.
    fn pods(&self, pod: &ObjectRef) -> Api<Pod> {
        Api::namespaced(
            self.client.clone(),
            pod.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// Every object a list names, a page at a time (`limit` / `continue`), so a large cluster
    /// is never answered in one response.
    async fn list_pages(
        &self,
        kind: &'static Kind,
        namespace: Option<&str>,
        params: ListParams,
    ) -> Result<Vec<Value>> {
        let api = self.api(kind, namespace);
        let what = format!("list {}", kind.plural);
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut page = params.clone().limit(LIST_PAGE);
            if let Some(token) = &next {
                page = page.continue_token(token);
            }
            let list = self
                .call(&what, false, || async {
                    api.list(&page).await.map_err(|e| map_error(kind.plural, e))
                })
                .await?;
            next = list.metadata.continue_.clone().filter(|t| !t.is_empty());
            items.extend(list.items.into_iter().map(|mut o| {
                // Lists omit kind and apiVersion on items; put them back.
                o.types = Some(kube::core::TypeMeta {
                    api_version: kind.api_version(),
                    kind: kind.kind.to_string(),
                });
                to_value(o)
            }));
            if next.is_none() {
                return Ok(items);
            }
        }
    }

    /// A list of at most one object's metadata: the identity's access probed the way an
    /// intruder with its token would, without reading any object's content.
    pub async fn probe_list(&self, kind: &'static Kind, namespace: Option<&str>) -> Result<()> {
        let api = self.api(kind, namespace);
        let params = ListParams::default().limit(1);
        self.call(&format!("list {}", kind.plural), false, || async {
            api.list_metadata(&params)
                .await
                .map(|_| ())
                .map_err(|e| map_error(kind.plural, e))
        })
        .await
    }

    /// One SelfSubjectAccessReview.
    /// One access review: of the caller itself (SelfSubjectAccessReview), or of `user` with
    /// its groups (SubjectAccessReview).
    fn review_one<'a>(
        &'a self,
        access: &'a super::Access,
        user: Option<&'a UserInfo>,
    ) -> BoxFuture<'a, Result<super::AccessVerdict>> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
            SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
        };
        Box::pin(async move {
            let attributes = ResourceAttributes {
                verb: Some(access.verb.clone()),
                group: Some(access.group.clone()),
                resource: Some(access.resource.clone()),
                subresource: (!access.subresource.is_empty()).then(|| access.subresource.clone()),
                namespace: access.namespace.clone(),
                name: access.name.clone(),
                ..ResourceAttributes::default()
            };
            let status: SubjectAccessReviewStatus = match user {
                None => {
                    let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(attributes),
                            ..SelfSubjectAccessReviewSpec::default()
                        },
                        ..SelfSubjectAccessReview::default()
                    };
                    self.call("access review", true, || async {
                        api.create(&PostParams::default(), &review)
                            .await
                            .map_err(|e| map_error("SelfSubjectAccessReview", e))
                    })
                    .await?
                    .status
                    .unwrap_or_default()
                }
                Some(user) => {
                    let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            resource_attributes: Some(attributes),
                            user: Some(user.username.clone()),
                            groups: Some(user.groups.clone()),
                            ..SubjectAccessReviewSpec::default()
                        },
                        ..SubjectAccessReview::default()
                    };
                    self.call("subject access review", true, || async {
                        api.create(&PostParams::default(), &review)
                            .await
                            .map_err(|e| map_error("SubjectAccessReview", e))
                    })
                    .await?
                    .status
                    .unwrap_or_default()
                }
            };
            Ok(super::AccessVerdict {
                access: access.clone(),
                allowed: status.allowed && !status.denied.unwrap_or(false),
                reason: status.reason.filter(|r| !r.is_empty()),
            })
        })
    }

    /// Access reviews of many permissions, sixteen in flight: a plan needs tens at most.
    async fn review_many(
        &self,
        checks: &[super::Access],
        user: Option<&UserInfo>,
    ) -> Result<Vec<super::AccessVerdict>> {
        use futures::StreamExt;
        let reviews: Vec<_> = checks
            .iter()
            .map(|access| self.review_one(access, user))
            .collect();
        futures::stream::iter(reviews)
            .buffered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    fn api_for(&self, r: &ObjectRef) -> Result<Api<DynamicObject>> {
        let kind = kinds::lookup(&r.kind)
            .ok_or_else(|| ClusterError::Unsupported(format!("unknown kind `{}`", r.kind)))?;
        Ok(self.api(kind, r.namespace.as_deref()))
    }

    /// The object as the server has it (managed fields included), or `None`.
    async fn get_dynamic(&self, r: &ObjectRef) -> Result<Option<DynamicObject>> {
        let api = self.api_for(r)?;
        self.object_call("get", r, false, || api.get_opt(&r.name))
            .await
    }

    /// One call about the object `r`: named `VERB r` in its deadline and errors, retried as
    /// [`KubeCluster::call`] retries, its client error mapped onto the object.
    async fn object_call<T, F, Fut>(
        &self,
        verb: &str,
        r: &ObjectRef,
        is_write: bool,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = kube::Result<T>>,
    {
        let object = r.to_string();
        let object = object.as_str();
        self.call(&format!("{verb} {r}"), is_write, || {
            let attempt = call();
            async move { attempt.await.map_err(|e| map_error(object, e)) }
        })
        .await
    }

    /// Runs `call` under the deadline, retrying what the server did not act on.
    async fn call<T, F, Fut>(&self, what: &str, is_write: bool, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let mut attempt = 0;
        loop {
            let outcome = tokio::time::timeout_at(deadline, call()).await;
            let error = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(ClusterError::Timeout {
                        operation: what.to_string(),
                        seconds: self.call_timeout.as_secs(),
                    });
                }
            };
            // 429 and 503 mean the server did not act, and a connection never made carried no
            // request (the server restarting, a proxy down), so any call may be retried. A 504
            // or a connection dropped mid-call may hide a write that happened: only reads are
            // retried then (writes carry preconditions, and resume re-observes before writing
            // again). Retries go on until the call's deadline: that, not a count, bounds them.
            let transient = match &error {
                ClusterError::TooManyRequests { .. } | ClusterError::Api { code: 503, .. } => true,
                ClusterError::Connection(message) if never_connected(message) => true,
                ClusterError::Api { code: 504, .. } | ClusterError::Connection(_) => !is_write,
                _ => false,
            };
            attempt += 1;
            if !transient {
                return Err(error);
            }
            if let ClusterError::TooManyRequests { .. } = &error {
                self.throttled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Said once: a responder facing a silent terminal should know what it waits for.
            if let ClusterError::Connection(message) = &error
                && !self
                    .said_unreachable
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                (self.warn)(&format!(
                    "{what}: cannot reach the API server ({}); retrying until the call timeout of {} s (--call-timeout)",
                    crate::escape::sanitize(message),
                    self.call_timeout.as_secs()
                ));
            }
            // The server's Retry-After (APF sends one with every 429) wins over our own backoff.
            let backoff = match &error {
                ClusterError::TooManyRequests {
                    retry_after_seconds: Some(seconds),
                    ..
                } => Duration::from_secs(u64::from(*seconds)),
                _ => Duration::from_millis(200 * 2u64.pow(attempt.min(4) - 1)),
            };
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(match error {
                    ClusterError::Connection(message) => ClusterError::Connection(format!(
                        "{message} (still failing after {attempt} attempts within the call timeout of {} s)",
                        self.call_timeout.as_secs()
                    )),
                    other => other,
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The kubeconfig's current context (of `kubeconfig`, else `$KUBECONFIG` or
/// `~/.kube/config`), if there is a kubeconfig that names one.
pub fn current_context(kubeconfig: Option<&std::path::Path>) -> Option<String> {
    let file = match kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    };
    file.and_then(|k| k.current_context)
}

/// The reference of an object to write: its kind and name are required.
fn reference_of(object: &Value) -> Result<ObjectRef> {
    ObjectRef::of(object).ok_or_else(|| ClusterError::Invalid {
        object: "object".into(),
        message: "kind and metadata.name are required".into(),
    })
}

/// Whether a connection error happened before any request was sent (so a write did not happen).
fn never_connected(message: &str) -> bool {
    message.contains("error trying to connect")
        || message.contains("client error (Connect)")
        || message.contains("Connection refused")
}

/// How many objects one list request asks for.
const LIST_PAGE: u32 = 500;

/// Maps a kube error onto a message naming the object and the server's reason.
pub fn map_error(object: &str, error: kube::Error) -> ClusterError {
    match error {
        kube::Error::Api(status) => {
            let object = object.to_string();
            let message = status.message.clone();
            match status.code {
                404 => ClusterError::NotFound { object },
                409 if status.reason == "AlreadyExists" => ClusterError::AlreadyExists { object },
                409 => ClusterError::Conflict { object, message },
                403 => ClusterError::Forbidden { object, message },
                422 | 400 => ClusterError::Invalid { object, message },
                429 => ClusterError::TooManyRequests {
                    object,
                    message,
                    retry_after_seconds: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0),
                },
                code => ClusterError::Api {
                    code,
                    object,
                    message,
                },
            }
        }
        other => ClusterError::Connection(with_causes(&other)),
    }
}

/// An error with its chain of causes (`client error (Connect): Connection reset by peer (os
/// error 104)`): the top-level text alone rarely names the fault.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn to_value(object: DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    object::strip_server_fields(&mut value);
    value
}

impl Cluster for KubeCluster {
    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            kind: "live",
            server: self.server.clone(),
            context: self.context.clone(),
        }
    }

    fn identity(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let r = ObjectRef::new("Namespace", None, "kube-system");
            let ns = self.get(&r).await?.ok_or(ClusterError::NotFound {
                object: r.to_string(),
            })?;
            object::uid(&ns)
                .map(str::to_string)
                .ok_or_else(|| ClusterError::Unsupported("kube-system has no uid".into()))
        })
    }

    fn get<'a>(&'a self, r: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(async move { Ok(self.get_dynamic(r).await?.map(to_value)) })
    }

    fn managed_fields<'a>(&'a self, r: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(async move {
            Ok(self
                .get_dynamic(r)
                .await?
                .and_then(|o| o.metadata.managed_fields)
                .map(|m| serde_json::to_value(m).unwrap_or(Value::Null)))
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'static Kind,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<Value>>> {
        Box::pin(async move {
            let mut params = ListParams::default();
            if !selector.is_empty() {
                params = params.labels(&selector.to_query());
            }
            self.list_pages(kind, namespace, params).await
        })
    }

    fn changes(&self, watch: &super::Watch) -> Option<super::Changes> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let api = self.api(watch.kind, watch.namespace.as_deref());
        // The server ends each watch before the client's read timeout would cut it; the watcher
        // then resumes from the last resourceVersion it saw.
        let server_timeout = self.call_timeout.as_secs().saturating_sub(2).clamp(1, 290) as u32;
        let mut config = watcher::Config::default().timeout(server_timeout);
        if !watch.labels.is_empty() {
            config = config.labels(&watch.labels.to_query());
        }
        if let Some(fields) = &watch.fields {
            config = config.fields(fields);
        }
        // An error is a wake-up too: the waiter re-reads, and the watcher backs off before it
        // reconnects.
        Some(watcher(api, config).default_backoff().map(|_| ()).boxed())
    }

    fn pods_on_node<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Vec<Value>>> {
        Box::pin(async move {
            let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
            self.list_pages(kinds::lookup("Pod").expect("known kind"), None, params)
                .await
        })
    }

    fn create<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let r = reference_of(object)?;
            let api = self.api_for(&r)?;
            // As the simulations do: an object without apiVersion gets its kind's.
            let mut object = object.clone();
            if object.get("apiVersion").is_none()
                && let Some(kind) = kinds::lookup(&r.kind)
            {
                object["apiVersion"] = Value::from(kind.api_version());
            }
            let dynamic: DynamicObject =
                serde_json::from_value(object).map_err(|e| ClusterError::Invalid {
                    object: r.to_string(),
                    message: e.to_string(),
                })?;
            let params = PostParams {
                dry_run: mode == WriteMode::DryRun,
                field_manager: Some(FIELD_MANAGER.to_string()),
            };
            self.object_call("create", &r, true, || api.create(&params, &dynamic))
                .await
                .map(to_value)
        })
    }

    fn patch<'a>(
        &'a self,
        r: &'a ObjectRef,
        patch: &'a Value,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let api = self.api_for(r)?;
            let params = PatchParams {
                dry_run: mode == WriteMode::DryRun,
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            let patch = Patch::Merge(patch);
            self.object_call("patch", r, true, || api.patch(&r.name, &params, &patch))
                .await
                .map(to_value)
        })
    }

    fn delete<'a>(
        &'a self,
        r: &'a ObjectRef,
        preconditions: &'a Preconditions,
        grace_period_seconds: Option<i64>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let api = self.api_for(r)?;
            let params = DeleteParams {
                dry_run: mode == WriteMode::DryRun,
                grace_period_seconds: grace_period_seconds.and_then(|g| u32::try_from(g).ok()),
                preconditions: Some(kube::api::Preconditions {
                    uid: preconditions.uid.clone(),
                    resource_version: preconditions.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            self.object_call("delete", r, true, || api.delete(&r.name, &params))
                .await
                .map(|_| ())
        })
    }

    fn apply<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let r = reference_of(object)?;
            let api = self.api_for(&r)?;
            let mut params = PatchParams::apply(FIELD_MANAGER);
            params.dry_run = mode == WriteMode::DryRun;
            let patch = Patch::Apply(object);
            self.object_call("apply", &r, true, || api.patch(&r.name, &params, &patch))
                .await
                .map(to_value)
        })
    }

    fn evict<'a>(
        &'a self,
        pod: &'a ObjectRef,
        uid: Option<&'a str>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let api = self.pods(pod);
            let dry_run = mode == WriteMode::DryRun;
            let params = EvictParams {
                delete_options: Some(DeleteParams {
                    dry_run,
                    preconditions: uid.map(|u| kube::api::Preconditions {
                        uid: Some(u.to_string()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                }),
                post_options: PostParams {
                    dry_run,
                    field_manager: None,
                },
            };
            // Not retried here: a 429 from a PodDisruptionBudget is an answer, and the drain
            // logic decides how long to keep asking.
            match tokio::time::timeout(self.call_timeout, api.evict(&pod.name, &params)).await {
                Ok(result) => result
                    .map(|_| ())
                    .map_err(|e| map_error(&pod.to_string(), e)),
                Err(_) => Err(ClusterError::Timeout {
                    operation: format!("evict {pod}"),
                    seconds: self.call_timeout.as_secs(),
                }),
            }
        })
    }

    fn logs<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        previous: bool,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let api = self.pods(pod);
            let params = log_params(container, previous);
            self.call(&format!("logs of {pod} {container}"), false, || async {
                api.logs(&pod.name, &params)
                    .await
                    .map_err(|e| map_error(&pod.to_string(), e))
            })
            .await
        })
    }

    fn exec<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        command: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput>> {
        Box::pin(async move {
            let api = self.pods(pod);
            let params = AttachParams::default()
                .container(container)
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let run = async {
                let mut process = api
                    .exec(&pod.name, command.to_vec(), &params)
                    .await
                    .map_err(|e| map_error(&pod.to_string(), e))?;
                let status = process.take_status();
                let (stdout, stderr) =
                    tokio::join!(read_all(process.stdout()), read_all(process.stderr()));
                let status = match status {
                    Some(status) => status.await,
                    None => None,
                };
                let _ = process.join().await;
                let error = status
                    .as_ref()
                    .filter(|s| s.status.as_deref() != Some("Success"))
                    .and_then(|s| s.message.clone());
                Ok(ExecOutput {
                    stdout,
                    stderr,
                    exit_code: status.map(|s| exit_code(&s)),
                    error,
                })
            };
            match tokio::time::timeout(self.call_timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(ClusterError::Timeout {
                    operation: format!("exec in {pod}"),
                    seconds: self.call_timeout.as_secs(),
                }),
            }
        })
    }

    fn request_token<'a>(
        &'a self,
        account: &'a ObjectRef,
        seconds: i64,
        pod: Option<&'a super::BoundPod>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let ns = account.namespace.as_deref().unwrap_or("default");
            let path = format!(
                "/api/v1/namespaces/{ns}/serviceaccounts/{}/token",
                account.name
            );
            let mut body = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}
            });
            if let Some(pod) = pod {
                body["spec"]["boundObjectRef"] = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid});
            }
            let body = serde_json::to_vec(&body).expect("json serializes");
            let answer: TokenRequest = self
                .call(&format!("request a token for {account}"), true, || async {
                    let request = http::Request::post(&path)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .map_err(|e| ClusterError::Connection(e.to_string()))?;
                    self.client
                        .request::<TokenRequest>(request)
                        .await
                        .map_err(|e| map_error(&account.to_string(), e))
                })
                .await?;
            answer.status.map(|s| s.token).ok_or_else(|| {
                ClusterError::Unsupported(format!("the API server returned no token for {account}"))
            })
        })
    }

    fn review_token<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenVerdict>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    ..TokenReviewSpec::default()
                },
                ..TokenReview::default()
            };
            let answer = self
                .call("token review", true, || async {
                    api.create(&PostParams::default(), &review)
                        .await
                        .map_err(|e| map_error("TokenReview", e))
                })
                .await?;
            let status = answer.status.unwrap_or_default();
            Ok(TokenVerdict {
                authenticated: status.authenticated.unwrap_or(false),
                username: status.user.and_then(|u| u.username),
                error: status.error,
            })
        })
    }

    fn serves<'a>(&'a self, kind: &'static Kind) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let answer = self
                .call("API discovery", false, || async {
                    match self
                        .client
                        .list_api_group_resources(&kind.api_version())
                        .await
                    {
                        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural)),
                        // The group/version is not served at all.
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
                        Err(e) => Err(map_error(&kind.api_version(), e)),
                    }
                })
                .await?;
            Ok(answer)
        })
    }

    fn review_access<'a>(
        &'a self,
        checks: &'a [super::Access],
    ) -> BoxFuture<'a, Result<Vec<super::AccessVerdict>>> {
        Box::pin(self.review_many(checks, None))
    }

    fn review_subject_access<'a>(
        &'a self,
        user: &'a UserInfo,
        checks: &'a [super::Access],
    ) -> BoxFuture<'a, Result<Vec<super::AccessVerdict>>> {
        Box::pin(self.review_many(checks, Some(user)))
    }

    fn whoami(&self) -> BoxFuture<'_, Result<UserInfo>> {
        Box::pin(async move {
            let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
            let answer = self
                .call("self subject review", true, || async {
                    api.create(&PostParams::default(), &SelfSubjectReview::default())
                        .await
                        .map_err(|e| map_error("SelfSubjectReview", e))
                })
                .await?;
            let user = answer.status.and_then(|s| s.user_info).unwrap_or_default();
            Ok(UserInfo {
                username: user.username.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
            })
        })
    }

    fn stream_logs<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        previous: bool,
        sink: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            use futures::AsyncReadExt;
            use tokio::io::AsyncWriteExt;
            let api = self.pods(pod);
            let params = log_params(container, previous);
            let stream =
                tokio::time::timeout(self.call_timeout, api.log_stream(&pod.name, &params))
                    .await
                    .map_err(|_| ClusterError::Timeout {
                        operation: format!("logs of {pod} {container}"),
                        seconds: self.call_timeout.as_secs(),
                    })?
                    .map_err(|e| map_error(&format!("{pod} container {container}"), e))?;
            let mut stream = Box::pin(stream);
            let mut buffer = vec![0u8; 1 << 16];
            let mut written = 0u64;
            loop {
                // Each read has the call deadline: a stalled stream fails instead of hanging.
                let n = tokio::time::timeout(self.call_timeout, stream.read(&mut buffer))
                    .await
                    .map_err(|_| ClusterError::Timeout {
                        operation: format!("reading logs of {pod} {container}"),
                        seconds: self.call_timeout.as_secs(),
                    })?
                    .map_err(|e| {
                        ClusterError::Connection(format!("logs of {pod} {container}: {e}"))
                    })?;
                if n == 0 {
                    break;
                }
                sink.write_all(&buffer[..n])
                    .await
                    .map_err(|e| ClusterError::Connection(format!("writing logs of {pod}: {e}")))?;
                written += n as u64;
            }
            sink.flush()
                .await
                .map_err(|e| ClusterError::Connection(format!("writing logs of {pod}: {e}")))?;
            Ok(written)
        })
    }

    fn checkpoint<'a>(
        &'a self,
        node: &'a str,
        pod: &'a ObjectRef,
        container: &'a str,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let path = format!(
                "/api/v1/nodes/{node}/proxy/checkpoint/{}/{}/{container}",
                pod.namespace.as_deref().unwrap_or("default"),
                pod.name
            );
            let what = format!("checkpoint of {pod} container {container} on node {node}");
            self.call(&what, true, || async {
                let request = http::Request::post(&path)
                    .body(Vec::new())
                    .map_err(|e| ClusterError::Connection(e.to_string()))?;
                self.client
                    .request_text(request)
                    .await
                    .map_err(|e| map_error(&what, e))
            })
            .await
        })
    }
}

/// Logs with timestamps, so every line of evidence carries its time.
fn log_params(container: &str, previous: bool) -> LogParams {
    LogParams {
        container: Some(container.to_string()),
        previous,
        timestamps: true,
        ..LogParams::default()
    }
}

async fn read_all(half: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut half) = half {
        let _ = half.read_to_string(&mut text).await;
    }
    text
}

/// The exit code in an exec's final status: 0 on success; otherwise the `ExitCode` cause a
/// kubelet sends with `NonZeroExitCode`, or the `exit status N` that other runtimes (KWOK among
/// them) put at the end of the message. `-1` when neither says.
fn exit_code(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> i32 {
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    let causes = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_deref())
        .unwrap_or_default();
    let from_cause = causes
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok());
    let from_message = || {
        status
            .message
            .as_deref()?
            .rsplit_once("exit status ")
            .and_then(|(_, code)| code.trim().parse().ok())
    };
    from_cause.or_else(from_message).unwrap_or(-1)
}
