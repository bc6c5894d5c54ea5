//! `Recording`: a cluster that notes every read it serves (which verb on which resource), so
//! `contain rbac` can say what planning a playbook reads, besides what its operations and
//! verifications need. Writes are refused: it only ever wraps a plan.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::object::{ObjectRef, Selector};
use super::{
    Access, AccessVerdict, BoxFuture, Cluster, ClusterError, ClusterInfo, Kind, Preconditions,
    Result, UserInfo, WriteMode, kinds,
};

/// A read-only cluster that remembers what was read.
pub struct Recording<'a> {
    base: &'a dyn Cluster,
    reads: Mutex<BTreeSet<Access>>,
}

impl<'a> Recording<'a> {
    pub fn new(base: &'a dyn Cluster) -> Self {
        Recording {
            base,
            reads: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every read so far.
    pub fn reads(&self) -> Vec<Access> {
        self.reads
            .lock()
            .expect("recording lock")
            .iter()
            .cloned()
            .collect()
    }

    fn note(&self, access: Access) {
        self.reads.lock().expect("recording lock").insert(access);
    }
}

/// The permission a write needs, as the API names it.
fn write_access(verb: &str, r: Option<ObjectRef>) -> Option<Access> {
    let r = r?;
    Some(Access::on(
        verb,
        r.kind_info()?,
        r.namespace.as_deref(),
        None,
    ))
}

fn read_only<T: Send + 'static>() -> BoxFuture<'static, Result<T>> {
    Box::pin(async {
        Err(ClusterError::Unsupported(
            "a recording of reads refuses writes".into(),
        ))
    })
}

impl Cluster for Recording<'_> {
    fn info(&self) -> ClusterInfo {
        self.base.info()
    }

    fn identity(&self) -> BoxFuture<'_, Result<String>> {
        if let Some(kind) = kinds::lookup("Namespace") {
            self.note(Access::on("get", kind, None, Some("kube-system")));
        }
        self.base.identity()
    }

    fn get<'b>(&'b self, r: &'b ObjectRef) -> BoxFuture<'b, Result<Option<Value>>> {
        if let Some(kind) = r.kind_info() {
            self.note(Access::on("get", kind, r.namespace.as_deref(), None));
        }
        self.base.get(r)
    }

    fn list<'b>(
        &'b self,
        kind: &'static Kind,
        namespace: Option<&'b str>,
        selector: &'b Selector,
    ) -> BoxFuture<'b, Result<Vec<Value>>> {
        self.note(Access::on("list", kind, namespace, None));
        self.base.list(kind, namespace, selector)
    }

    fn pods_on_node<'b>(&'b self, node: &'b str) -> BoxFuture<'b, Result<Vec<Value>>> {
        if let Some(kind) = kinds::lookup("Pod") {
            self.note(Access::on("list", kind, None, None));
        }
        self.base.pods_on_node(node)
    }

    fn serves<'b>(&'b self, kind: &'static Kind) -> BoxFuture<'b, Result<bool>> {
        self.base.serves(kind)
    }

    // Server-side dry runs (the plan's validation) go through: they store nothing.
    fn create<'b>(&'b self, object: &'b Value, mode: WriteMode) -> BoxFuture<'b, Result<Value>> {
        if mode != WriteMode::DryRun {
            return read_only();
        }
        if let Some(access) = write_access("create", ObjectRef::of(object)) {
            self.note(access);
        }
        self.base.create(object, mode)
    }

    fn patch<'b>(
        &'b self,
        r: &'b ObjectRef,
        patch: &'b Value,
        mode: WriteMode,
    ) -> BoxFuture<'b, Result<Value>> {
        if mode != WriteMode::DryRun {
            return read_only();
        }
        if let Some(access) = write_access("patch", Some(r.clone())) {
            self.note(access);
        }
        self.base.patch(r, patch, mode)
    }

    fn delete<'b>(
        &'b self,
        r: &'b ObjectRef,
        preconditions: &'b Preconditions,
        grace: Option<i64>,
        mode: WriteMode,
    ) -> BoxFuture<'b, Result<()>> {
        if mode != WriteMode::DryRun {
            return read_only();
        }
        if let Some(access) = write_access("delete", Some(r.clone())) {
            self.note(access);
        }
        self.base.delete(r, preconditions, grace, mode)
    }

    fn apply<'b>(&'b self, _: &'b Value, _: WriteMode) -> BoxFuture<'b, Result<Value>> {
        read_only()
    }

    fn evict<'b>(
        &'b self,
        _: &'b ObjectRef,
        _: Option<&'b str>,
        _: WriteMode,
    ) -> BoxFuture<'b, Result<()>> {
        read_only()
    }

    fn review_access<'b>(
        &'b self,
        checks: &'b [Access],
    ) -> BoxFuture<'b, Result<Vec<AccessVerdict>>> {
        self.base.review_access(checks)
    }

    fn review_subject_access<'b>(
        &'b self,
        user: &'b UserInfo,
        checks: &'b [Access],
    ) -> BoxFuture<'b, Result<Vec<AccessVerdict>>> {
        self.base.review_subject_access(user, checks)
    }

    fn whoami(&self) -> BoxFuture<'_, Result<UserInfo>> {
        self.base.whoami()
    }
}
