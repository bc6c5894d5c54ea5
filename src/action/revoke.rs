//! `serviceaccount.revoke`: take away what a compromised ServiceAccount holds.
//!
//! Modes: `rotate` (delete and recreate the account: a new uid, so every token it ever had dies),
//! `legacy-secrets` (delete its `kubernetes.io/service-account-token` Secrets), `unbind` (remove
//! it from every RoleBinding and ClusterRoleBinding) and `delete-pods` (delete the pods that run
//! as it). Only `unbind` can be undone: a rollback must never revive a compromised credential.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{self, RUN_ID_LABEL, STEP_LABEL};
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, Verification, decode_with,
    schema_of,
};
use crate::cluster::Access;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{BoundPod, kinds};
use crate::plan::{FieldChange, Op, Reversibility, StepPlan};

pub struct Revoke;

static INFO: ActionInfo = ActionInfo {
    name: "serviceaccount.revoke",
    summary: "Revoke a ServiceAccount: rotate it, delete its legacy token Secrets, unbind its roles, delete its pods.",
    changes: "depending on `modes`: the ServiceAccount (recreated), its token Secrets, RoleBinding/ClusterRoleBinding subjects, its pods",
    undo: "`unbind` is restored; `rotate`, `legacy-secrets` and `delete-pods` are not (a rollback never revives a compromised credential)",
    reversible: false,
    destroys_evidence: false,
    target: TargetRule::Required(&["ServiceAccount"]),
    outputs: &[
        ("pods", "pods that run as the account"),
        ("secrets", "its legacy token Secrets"),
        ("bindings", "bindings that name it, as Kind namespace/name"),
    ],
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RevokeMode {
    /// Delete and recreate the account: a new uid, so every token minted for it is rejected.
    Rotate,
    /// Delete its `kubernetes.io/service-account-token` Secrets.
    LegacySecrets,
    /// Remove it from every RoleBinding and ClusterRoleBinding.
    Unbind,
    /// Delete the pods that run as it.
    DeletePods,
}

/// `with` of `serviceaccount.revoke`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeWith {
    /// What to revoke, in any combination.
    #[schemars(length(min = 1))]
    pub modes: Vec<RevokeMode>,
}

const CREDENTIALS: &str = "a rollback never revives a compromised credential";

impl Action for Revoke {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<RevokeWith>()
    }

    /// It acts on one object, named by the target.
    fn one_object(&self) -> bool {
        true
    }

    fn destroys_evidence(&self, with: &Value) -> bool {
        with.get("modes")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v == "delete-pods"))
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: RevokeWith = decode_with(&input.with)?;
        let has = |mode: RevokeMode| with.modes.contains(&mode);
        let account = common::observe_named(input, INFO.name, seen)?;
        let account_ref = ObjectRef::of(&account).expect("observed objects have names");
        let name = account_ref.name.clone();
        let namespace = account_ref.namespace.clone().unwrap_or_default();
        let uid = object::uid(&account).unwrap_or_default().to_string();

        // The blast radius: everything that holds or uses the account.
        let pods: Vec<Value> = seen
            .list("Pod", Some(&namespace), &Selector::default())?
            .iter()
            .filter(|p| {
                p.pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    == name
            })
            .cloned()
            .collect();
        let secrets: Vec<Value> = seen
            .list("Secret", Some(&namespace), &Selector::default())?
            .iter()
            .filter(|s| {
                s.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token")
                    && s.pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                        .and_then(Value::as_str)
                        == Some(name.as_str())
            })
            .cloned()
            .collect();
        let bindings = common::bindings_naming(seen, &name, &namespace)?;
        let mut notes = vec![format!(
            "blast radius: {} pod(s) run as {name}{}, {} legacy token Secret(s), {} binding(s)",
            pods.len(),
            if pods.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    pods.iter()
                        .filter_map(object::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            secrets.len(),
            bindings.len()
        )];
        let mut ops = Vec::new();
        let mut inverse = Vec::new();
        if has(RevokeMode::Rotate) {
            ops.push(Op::MintCanary {
                account: account_ref.clone(),
                uid: uid.clone(),
                bound_pod: None,
            });
            if let Some(pod) = pods.first() {
                ops.push(Op::MintCanary {
                    account: account_ref.clone(),
                    uid: uid.clone(),
                    bound_pod: Some(BoundPod {
                        name: object::name(pod).unwrap_or_default().to_string(),
                        uid: object::uid(pod).unwrap_or_default().to_string(),
                    }),
                });
            }
        }
        if has(RevokeMode::Unbind) {
            for binding in &bindings {
                let before = binding
                    .get("subjects")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()));
                let after: Vec<Value> = before
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| {
                        !common::names_account(s, &name, &namespace, object::namespace(binding))
                    })
                    .cloned()
                    .collect();
                // The API server stores an empty subject list as no field at all.
                let after = (!after.is_empty()).then_some(Value::Array(after));
                let change = FieldChange {
                    path: vec!["subjects".into()],
                    before: Some(before),
                    after,
                };
                if let Some((op, undo)) = common::patch_pair(binding, vec![change]) {
                    ops.push(op);
                    inverse.push(undo);
                }
            }
        }
        if has(RevokeMode::LegacySecrets) {
            for secret in &secrets {
                ops.push(Op::Delete {
                    target: ObjectRef::of(secret).expect("listed objects have names"),
                    uid: object::uid(secret).map(str::to_string),
                    run_id: None,
                    grace_period_seconds: None,
                });
            }
        }
        if has(RevokeMode::Rotate) {
            let mut fresh = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace, "labels": object::labels(&account)},
            });
            fresh["metadata"]["labels"][RUN_ID_LABEL] = json!(input.run_id);
            fresh["metadata"]["labels"][STEP_LABEL] = json!(input.step_id);
            if let Some(annotations) = account
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                let mut kept = annotations.clone();
                kept.remove("kubectl.kubernetes.io/last-applied-configuration");
                fresh["metadata"]["annotations"] = Value::Object(kept);
            }
            for field in ["automountServiceAccountToken", "imagePullSecrets"] {
                if let Some(value) = account.get(field) {
                    fresh[field] = value.clone();
                }
            }
            ops.push(Op::Delete {
                target: account_ref.clone(),
                uid: Some(uid.clone()),
                run_id: None,
                grace_period_seconds: None,
            });
            ops.push(Op::Create { object: fresh });
            if !pods.is_empty() {
                notes.push(format!("rotate: the {} running pod(s) keep running, but their tokens are rejected from now on", pods.len()));
            }
            notes.push("the API server caches successful token authentications for a few seconds: a token used just before the rotation can pass for that long".into());
        }
        if has(RevokeMode::DeletePods) {
            for pod in &pods {
                ops.push(Op::Delete {
                    target: ObjectRef::of(pod).expect("listed objects have names"),
                    uid: object::uid(pod).map(str::to_string),
                    run_id: None,
                    grace_period_seconds: None,
                });
            }
        }
        let irreversible = has(RevokeMode::Rotate)
            || has(RevokeMode::LegacySecrets)
            || has(RevokeMode::DeletePods);
        let reversibility = match (irreversible, has(RevokeMode::Unbind)) {
            (false, _) => Reversibility::Reversible,
            (true, true) => Reversibility::Partial {
                reason: format!(
                    "the bindings are restored; credentials and pods are not: {CREDENTIALS}"
                ),
            },
            (true, false) => Reversibility::Irreversible {
                reason: CREDENTIALS.into(),
            },
        };
        inverse.reverse();
        let mut outputs = serde_json::Map::new();
        outputs.insert("pods".into(), common::names(&pods));
        outputs.insert("secrets".into(), common::names(&secrets));
        outputs.insert(
            "bindings".into(),
            Value::from(
                bindings
                    .iter()
                    .filter_map(ObjectRef::of)
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>(),
            ),
        );
        let modes: Vec<String> = with
            .modes
            .iter()
            .map(|m| {
                serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("revoke {account_ref} ({})", modes.join(", ")),
            ops,
            inverse,
            reversibility,
            notes,
            outputs,
        })
    }

    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<Access> {
        let _ = input;
        let mut reads: Vec<Access> = ["RoleBinding", "ClusterRoleBinding"]
            .iter()
            .filter_map(|kind| Some(Access::on("list", kinds::lookup(kind)?, None, None)))
            .collect();
        reads.push(Access {
            verb: "create".into(),
            group: "authentication.k8s.io".into(),
            resource: "tokenreviews".into(),
            subresource: String::new(),
            namespace: None,
            name: None,
        });
        reads.extend(super::reads_of_writes(plan));
        reads
    }

    fn verify(
        &self,
        input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let with: RevokeWith = decode_with(&input.with)?;
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        let simulated = seen.simulated();
        for op in &plan.ops {
            match op {
                Op::Delete { target, uid, .. } => {
                    let gone = match seen.get(target)? {
                        None => true,
                        Some(o) => {
                            object::uid(o) != uid.as_deref()
                                || o.pointer("/metadata/deletionTimestamp").is_some()
                        }
                    };
                    verification.check(
                        format!("{target} (uid {}) is gone", uid.as_deref().unwrap_or("?")),
                        gone,
                        None,
                    );
                }
                Op::Create { object: fresh } => {
                    let r = ObjectRef::of(fresh).expect("planned objects have names");
                    verification.check(
                        format!("{r} exists again, with a new uid"),
                        seen.get(&r)?.is_some(),
                        None,
                    );
                }
                _ => {}
            }
        }
        if with.modes.contains(&RevokeMode::Rotate) {
            if simulated {
                verification.not_checked(
                    "tokens minted before the rotation are rejected",
                    "a simulated cluster has no TokenReview",
                );
            } else if input.canaries.is_empty() {
                verification.not_checked(
                    "tokens minted before the rotation are rejected",
                    "no canary: the account was already rotated when this step was resumed",
                );
            }
            for canary in &input.canaries {
                let what = match &canary.bound_pod {
                    Some(pod) => format!(
                        "a token bound to pod {pod}, minted before the rotation, is rejected by TokenReview"
                    ),
                    None => {
                        "a token minted before the rotation is rejected by TokenReview".to_string()
                    }
                };
                // No watch sees a token review's answer: it is asked again, for up to 30 s.
                let rejected = !seen.authenticated(&canary.token)?;
                verification.check_within(what, rejected, None, Duration::from_secs(30), None);
            }
        }
        if with.modes.contains(&RevokeMode::Unbind)
            && let Some(account) = input.target.as_ref()
        {
            let name = account.name.clone().unwrap_or_default();
            let namespace = account.namespace.clone().unwrap_or_default();
            let still: Vec<String> = common::bindings_naming(seen, &name, &namespace)?
                .iter()
                .filter_map(ObjectRef::of)
                .map(|r| r.to_string())
                .collect();
            verification.check(
                format!("no binding names {namespace}/{name}"),
                still.is_empty(),
                (!still.is_empty()).then(|| still.join(", ")),
            );
        }
        Ok(verification)
    }
}

/// The account, a binding, a legacy token Secret and a pod of the revocation tests.
#[cfg(test)]
fn tests_objects() -> Vec<Value> {
    use super::fixture::{namespace, pod};
    use serde_json::json;
    vec![
        namespace("shop"),
        json!({"kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "shop"}}),
        json!({"kind": "RoleBinding", "metadata": {"name": "web-read", "namespace": "shop"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"},
                            {"kind": "User", "name": "alice"}]}),
        json!({"kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "web-token", "namespace": "shop",
                            "annotations": {"kubernetes.io/service-account.name": "web"}}}),
        pod("shop", "web-1", json!({"app": "web"}), None),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, plan, shown};
    use super::*;

    fn objects() -> Vec<Value> {
        tests_objects()
    }

    fn revoke(modes: Value) -> StepPlan {
        let step = input(
            "revoke",
            Some(named("ServiceAccount", Some("shop"), "web")),
            json!({"modes": modes}),
        );
        plan(&Revoke, &step, &cluster(objects())).unwrap()
    }

    #[test]
    fn unbinding_removes_only_the_account_from_a_binding_and_the_undo_puts_it_back() {
        let planned = revoke(json!(["unbind"]));
        let text = shown(&planned);
        assert!(
            text.contains(r#"subjects: [{"kind":"ServiceAccount","name":"web","namespace":"shop"},{"kind":"User","name":"alice"}] → [{"kind":"User","name":"alice"}]"#),
            "{text}"
        );
        assert_eq!(planned.reversibility, Reversibility::Reversible);
        assert_eq!(planned.inverse.len(), 1);
        assert_eq!(
            planned.outputs["bindings"],
            json!(["RoleBinding shop/web-read"])
        );
    }

    #[test]
    fn rotation_and_legacy_secrets_are_proven_with_canaries_and_never_undone() {
        let planned = revoke(json!(["legacy-secrets", "rotate"]));
        let text = shown(&planned);
        assert!(text.contains("- delete Secret shop/web-token"), "{text}");
        assert!(text.contains("- delete ServiceAccount shop/web"), "{text}");
        assert!(text.contains("+ create ServiceAccount shop/web"), "{text}");
        // Canary tokens, minted before the writes, are what verification proves dead.
        let canaries = planned
            .ops
            .iter()
            .take_while(|op| matches!(op, Op::MintCanary { .. }))
            .count();
        assert_eq!(
            canaries, 2,
            "one of the account, one bound to its pod: {text}"
        );
        assert!(
            planned.inverse.is_empty(),
            "a compromised credential is never revived"
        );
        assert!(matches!(
            planned.reversibility,
            Reversibility::Irreversible { .. }
        ));
        assert!(
            planned
                .notes
                .iter()
                .any(|n| n.starts_with("blast radius: 1 pod(s) run as web"))
        );
    }

    #[test]
    fn a_missing_account_is_refused() {
        let step = input(
            "revoke",
            Some(named("ServiceAccount", Some("shop"), "ghost")),
            json!({"modes": ["unbind"]}),
        );
        let refused = plan(&Revoke, &step, &cluster(objects()))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("not found"), "{refused}");
    }
}

#[cfg(test)]
mod verification {
    use serde_json::json;

    use super::super::fixture::{applied, cluster, input, named, plan, verify};
    use super::tests_objects as objects;
    use super::*;
    use crate::outcome::CheckStatus;

    #[test]
    fn an_unbind_is_verified_only_once_no_binding_names_the_account() {
        let step = input(
            "revoke",
            Some(named("ServiceAccount", Some("shop"), "web")),
            json!({"modes": ["unbind"]}),
        );
        let planned = plan(&Revoke, &step, &cluster(objects())).unwrap();
        let failed = |objects: Vec<Value>| -> Vec<(String, Option<String>)> {
            verify(&Revoke, &step, &planned, &cluster(objects))
                .unwrap()
                .checks
                .into_iter()
                .filter(|c| c.status == CheckStatus::Failed)
                .map(|c| (c.what, c.detail))
                .collect()
        };
        assert_eq!(failed(applied(objects(), &planned.ops)), []);
        // Not applied: the binding still names the account, and the check says which.
        let still = failed(objects());
        assert!(
            still.contains(&(
                "no binding names shop/web".to_string(),
                Some("RoleBinding shop/web-read".to_string())
            )),
            "{still:?}"
        );
    }
}
