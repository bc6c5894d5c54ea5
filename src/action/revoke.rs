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
use super::reach::{self, Path, Via};
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
        (
            "bindings",
            "bindings that name it (as its ServiceAccount or its username), as Kind namespace/name",
        ),
        (
            "group_bindings",
            "bindings that grant it through one of its groups, as Kind namespace/name",
        ),
        (
            "held",
            "the permissions its bindings gave it before the run, as access reviews ask them",
        ),
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
    /// With `unbind`, also remove the account's groups (`system:serviceaccounts`,
    /// `system:serviceaccounts:NS`) from the bindings that grant it something through them.
    /// Every other member of the group loses that access too; the plan names how many. Never
    /// `system:authenticated`, and never the API server's own default bindings (it restores
    /// them at its next start).
    #[serde(default)]
    pub unbind_groups: bool,
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
        let identity = reach::service_account(&namespace, &name);
        let paths = reach::paths(seen, &identity)?;
        let (mut held, kept) = {
            let all = reach::held(seen, &paths)?;
            let kept = all.len().min(reach::MAX_HELD);
            (all, kept)
        };
        let left_out = held.len() - kept;
        held.truncate(kept);
        let unbind = has(RevokeMode::Unbind);
        let removed = |path: &Path| unbind && removable(path, with.unbind_groups);
        // The API server's own defaults grant every account the same few things (discovery,
        // its own identity): said once, not per binding.
        let (defaults, paths): (Vec<Path>, Vec<Path>) = paths
            .into_iter()
            .partition(|p| p.via != Via::Own && p.is_bootstrap());
        let bindings = unique_bindings(paths.iter().filter(|p| p.via == Via::Own));
        let group_bindings = unique_bindings(paths.iter().filter(|p| p.via != Via::Own));
        let mut notes = vec![format!(
            "blast radius: {} pod(s) run as {name}{}, {} legacy token Secret(s), {} binding(s) name it, {} grant it through its groups",
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
            bindings.len(),
            group_bindings.len(),
        )];
        for path in &paths {
            notes.push(path_note(path, removed(path), unbind, seen)?);
        }
        let defaults = unique_bindings(defaults.iter());
        if !defaults.is_empty() {
            notes.push(format!(
                "reach: {} default binding(s) of the API server grant it what every account holds, through its groups ({}): kept, the API server restores them at its next start",
                defaults.len(),
                defaults
                    .iter()
                    .filter_map(|b| object::name(b))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        notes.push(format!(
            "verification asks the API server what {} may still do: the {} permission(s) held before the run and the sensitive ones (secrets, pods, exec, tokens, RBAC, impersonation, nodes/proxy){}",
            identity.username,
            held.len(),
            if left_out > 0 {
                format!("; {left_out} more held permission(s) are not asked about")
            } else {
                String::new()
            }
        ));
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
        if unbind {
            let touched: Vec<&Path> = paths.iter().filter(|p| removed(p)).collect();
            for binding in unique_bindings(touched.iter().copied()) {
                let before = binding
                    .get("subjects")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()));
                let binding_ref = ObjectRef::of(binding);
                let after: Vec<Value> = before
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| {
                        !touched
                            .iter()
                            .any(|p| Some(p.binding_ref()) == binding_ref && p.subject == **s)
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
            ops.extend(secrets.iter().map(Op::delete_read));
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
            ops.push(Op::delete_read(&account));
            ops.push(Op::Create { object: fresh });
            if !pods.is_empty() {
                notes.push(format!("rotate: the {} running pod(s) keep running, but their tokens are rejected from now on", pods.len()));
            }
            notes.push("the API server caches successful token authentications for a few seconds: a token used just before the rotation can pass for that long".into());
        }
        if has(RevokeMode::DeletePods) {
            ops.extend(pods.iter().map(Op::delete_read));
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
        outputs.insert("bindings".into(), refs(&bindings));
        outputs.insert("group_bindings".into(), refs(&group_bindings));
        outputs.insert(
            "held".into(),
            serde_json::to_value(&held).unwrap_or_default(),
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
        for (group, resource) in [
            ("authentication.k8s.io", "tokenreviews"),
            ("authorization.k8s.io", "subjectaccessreviews"),
        ] {
            reads.push(Access {
                verb: "create".into(),
                group: group.into(),
                resource: resource.into(),
                subresource: String::new(),
                namespace: None,
                name: None,
            });
        }
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
                    let gone = common::deletion(seen, target, uid.as_deref())?.is_some();
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
        // Whether an old token still authenticates (the API server's short cache): the
        // verification is asked again until it does not.
        let mut tokens_alive = false;
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
                tokens_alive |= !rejected;
                verification.check_within(what, rejected, None, Duration::from_secs(30), None);
            }
        }
        let rotated = with.modes.contains(&RevokeMode::Rotate);
        let unbound = with.modes.contains(&RevokeMode::Unbind);
        if (unbound || rotated)
            && let Some(account) = input.target.as_ref()
        {
            let name = account.name.clone().unwrap_or_default();
            let namespace = account.namespace.clone().unwrap_or_default();
            let identity = reach::service_account(&namespace, &name);
            if unbound {
                let still: Vec<String> = reach::paths(seen, &identity)?
                    .iter()
                    .filter(|p| p.via == Via::Own)
                    .map(|p| p.binding_ref().to_string())
                    .collect();
                verification.check(
                    format!(
                        "no binding names {namespace}/{name} (as its ServiceAccount or as {})",
                        identity.username
                    ),
                    still.is_empty(),
                    (!still.is_empty()).then(|| still.join(", ")),
                );
            }
            if tokens_alive {
                // With a rotation, the reach asked of the name is the recreated account's, which
                // cannot fail the step; it is asked once, when the old tokens are dead, not on
                // every poll of the token reviews.
                verification.check_within(
                    "what the recreated account may do is asked once the old tokens are rejected",
                    false,
                    None,
                    Duration::from_secs(30),
                    None,
                );
            } else {
                verify_reach(&mut verification, seen, plan, &identity, rotated)?;
            }
        }
        Ok(verification)
    }
}

/// Whether `unbind` removes this path: the account's own subjects always; a group only when
/// the step says so, and never the group of every authenticated identity or a default
/// binding the API server restores.
fn removable(path: &Path, unbind_groups: bool) -> bool {
    match &path.via {
        Via::Own => true,
        Via::Group(group) => unbind_groups && group != reach::AUTHENTICATED && !path.is_bootstrap(),
    }
}

/// What the plan says of one path: what it grants, to whom, and what the step does with it.
fn path_note(
    path: &Path,
    removed: bool,
    unbind: bool,
    seen: &Observed,
) -> Result<String, ActionError> {
    let subject = |f: &str| {
        path.subject
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let granted = format!(
        "reach: {} grants {} to {} {}",
        path.binding_ref(),
        path.role(),
        subject("kind"),
        subject("name")
    );
    let Via::Group(group) = &path.via else {
        let fate = if removed {
            "removed by `unbind`"
        } else {
            "kept: the step does not unbind"
        };
        return Ok(format!("{granted}: {fate}"));
    };
    let members = match group.strip_prefix("system:serviceaccounts:") {
        Some(namespace) => format!(
            "every ServiceAccount of namespace {namespace} ({})",
            seen.list("ServiceAccount", Some(namespace), &Selector::default())?
                .len()
        ),
        None if group == "system:serviceaccounts" => format!(
            "every ServiceAccount of the cluster ({})",
            seen.list("ServiceAccount", None, &Selector::default())?
                .len()
        ),
        None => "every authenticated identity".to_string(),
    };
    let fate = if removed {
        "removed (`unbind_groups`): every member loses it".to_string()
    } else if group == reach::AUTHENTICATED {
        "kept: every authenticated identity holds it, so no revocation of one identity can take it away".to_string()
    } else if unbind {
        "kept: removing the group hits every member; set `unbind_groups: true` to remove it anyway, or `rotate`, which ends the credential itself".to_string()
    } else {
        "kept: the step does not unbind; `rotate` ends the credential itself".to_string()
    };
    Ok(format!("{granted}, shared with {members}: {fate}"))
}

/// Each binding of `paths`, once, in order.
fn unique_bindings<'a>(paths: impl Iterator<Item = &'a Path>) -> Vec<&'a Value> {
    let mut bindings: Vec<&Value> = Vec::new();
    for path in paths {
        if !bindings
            .iter()
            .any(|b| ObjectRef::of(b) == Some(path.binding_ref()))
        {
            bindings.push(&path.binding);
        }
    }
    bindings
}

fn refs(objects: &[&Value]) -> Value {
    Value::from(
        objects
            .iter()
            .filter_map(|o| ObjectRef::of(o))
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
    )
}

/// The reach check: the API server is asked what the identity may still do, of what it held
/// before the run and of the sensitive permissions, beyond what every authenticated identity
/// may. Without a rotation, each permission left fails the step. With one, the old
/// credential's reach ends with it (its tokens are rejected, checked above); what the recreated
/// account still holds through its groups is said, not failed.
fn verify_reach(
    verification: &mut Verification,
    seen: &Observed,
    plan: &StepPlan,
    identity: &crate::cluster::UserInfo,
    rotated: bool,
) -> Result<(), ActionError> {
    let namespace = identity
        .username
        .split(':')
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let mut checks: Vec<Access> = plan
        .outputs
        .get("held")
        .cloned()
        .and_then(|held| serde_json::from_value(held).ok())
        .unwrap_or_default();
    checks.extend(reach::sensitive(&namespace));
    checks.sort();
    checks.dedup();
    let left = reach::remaining(seen, identity, &checks)?;
    let user = &identity.username;
    if left.is_empty() {
        verification.check(
            format!(
                "the API server says {user} may do nothing beyond what every authenticated identity may ({} permission(s) asked)",
                checks.len()
            ),
            true,
            None,
        );
    } else if rotated {
        verification.check(
            format!(
                "the old credential's reach ends with it; the recreated {user} still holds {} permission(s) through its groups",
                left.len()
            ),
            true,
            Some(describe(&left)),
        );
    } else {
        for verdict in &left {
            verification.check(
                format!("{user} can no longer {}", verdict.access),
                false,
                Some(
                    verdict
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the API server allows it".into()),
                ),
            );
        }
    }
    Ok(())
}

fn describe(verdicts: &[crate::cluster::AccessVerdict]) -> String {
    verdicts
        .iter()
        .map(|v| match &v.reason {
            Some(reason) => format!("{} ({reason})", v.access),
            None => v.access.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
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
                "no binding names shop/web (as its ServiceAccount or as system:serviceaccount:shop:web)"
                    .to_string(),
                Some("RoleBinding shop/web-read".to_string())
            )),
            "{still:?}"
        );
    }
}

/// Reach: an account granted secrets as a User subject and through its namespace's group.
#[cfg(test)]
mod reach_tests {
    use serde_json::json;

    use super::super::fixture::{applied, cluster, input, named, plan, verify};
    use super::*;
    use crate::outcome::CheckStatus;

    fn objects() -> Vec<Value> {
        let mut objects = super::tests_objects();
        objects.extend([
            json!({"kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "shop"}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "secret-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "as-user", "namespace": "shop"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
                   "subjects": [{"kind": "User", "name": "system:serviceaccount:shop:web"}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "shop-accounts"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
                   "subjects": [{"kind": "Group", "name": "system:serviceaccounts:shop"}]}),
        ]);
        objects
    }

    fn step(with: Value) -> StepInput {
        input(
            "revoke",
            Some(named("ServiceAccount", Some("shop"), "web")),
            with,
        )
    }

    fn failed_after(with: Value) -> Vec<(String, Option<String>)> {
        let step = step(with);
        let planned = plan(&Revoke, &step, &cluster(objects())).unwrap();
        let after = cluster(applied(objects(), &planned.ops));
        verify(&Revoke, &step, &planned, &after)
            .unwrap()
            .checks
            .into_iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .map(|c| (c.what, c.detail))
            .collect()
    }

    #[test]
    fn the_plan_finds_the_user_subject_and_the_group_and_removes_only_the_account_s_own() {
        let planned = plan(
            &Revoke,
            &step(json!({"modes": ["unbind"]})),
            &cluster(objects()),
        )
        .unwrap();
        assert_eq!(
            planned.outputs["bindings"],
            json!(["RoleBinding shop/as-user", "RoleBinding shop/web-read"])
        );
        assert_eq!(
            planned.outputs["group_bindings"],
            json!(["ClusterRoleBinding shop-accounts"])
        );
        let notes = planned.notes.join("\n");
        assert!(
            notes.contains("reach: RoleBinding shop/as-user grants ClusterRole secret-reader to User system:serviceaccount:shop:web: removed by `unbind`"),
            "{notes}"
        );
        assert!(
            notes.contains("reach: ClusterRoleBinding shop-accounts grants ClusterRole secret-reader to Group system:serviceaccounts:shop, shared with every ServiceAccount of namespace shop (2): kept"),
            "{notes}"
        );
        assert!(
            notes.contains("`rotate`, which ends the credential itself"),
            "{notes}"
        );
        let patched: Vec<String> = planned
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Patch { .. }))
            .filter_map(|op| op.target())
            .map(|r| r.name)
            .collect();
        assert_eq!(patched, ["as-user", "web-read"]);
        // The held permissions are what verification asks about again.
        let held: Vec<Access> = serde_json::from_value(planned.outputs["held"].clone()).unwrap();
        assert!(
            held.iter()
                .any(|a| a.verb == "list" && a.resource == "secrets" && a.namespace.is_none()),
            "{held:?}"
        );
    }

    #[test]
    fn verification_fails_naming_the_permission_the_group_still_grants() {
        let failed = failed_after(json!({"modes": ["unbind", "legacy-secrets"]}));
        let list_cluster_wide = failed
            .iter()
            .find(|(what, _)| {
                what == "system:serviceaccount:shop:web can no longer list secrets (cluster-wide)"
            })
            .unwrap_or_else(|| panic!("{failed:?}"));
        assert_eq!(
            list_cluster_wide.1.as_deref(),
            Some(
                "RBAC: allowed by ClusterRoleBinding \"shop-accounts\" of ClusterRole \"secret-reader\" to Group \"system:serviceaccounts:shop\""
            )
        );
        // The account's own binding is gone; only the group's grants remain.
        assert!(
            failed
                .iter()
                .all(|(what, _)| what.contains("can no longer")),
            "{failed:?}"
        );
    }

    #[test]
    fn removing_the_group_when_the_step_says_so_leaves_nothing() {
        assert_eq!(
            failed_after(json!({"modes": ["unbind"], "unbind_groups": true})),
            []
        );
    }

    #[test]
    fn after_a_rotation_the_old_credential_s_reach_ends_and_the_group_s_grant_is_said() {
        let step = step(json!({"modes": ["unbind", "rotate"]}));
        let planned = plan(&Revoke, &step, &cluster(objects())).unwrap();
        let after = cluster(applied(objects(), &planned.ops));
        let checks = verify(&Revoke, &step, &planned, &after).unwrap().checks;
        assert!(
            !checks.iter().any(|c| c.what.contains("can no longer")),
            "{checks:?}"
        );
        let said = checks
            .iter()
            .find(|c| {
                c.what
                    .starts_with("the old credential's reach ends with it")
            })
            .unwrap_or_else(|| panic!("{checks:?}"));
        assert!(
            said.detail
                .as_deref()
                .unwrap_or_default()
                .contains("list secrets (cluster-wide)")
        );
    }

    #[test]
    fn the_reach_is_asked_once_the_old_tokens_are_rejected_not_on_every_poll() {
        use crate::cluster::observe::{Answer, Read};
        let mut step = step(json!({"modes": ["unbind", "rotate"]}));
        let planned = plan(&Revoke, &step, &cluster(objects())).unwrap();
        step.canaries = vec![crate::outcome::Canary {
            account: ObjectRef::new("ServiceAccount", Some("shop"), "web"),
            bound_pod: None,
            token: "old-token".into(),
        }];
        let after = applied(objects(), &planned.ops);
        // Every read answered from the applied objects, the token as `alive` says; the
        // access reviews counted.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let verify_with = |alive: bool| {
            let sim = cluster(after.clone());
            let mut seen = Observed::new(false);
            let mut reviews = 0;
            loop {
                let reads = match Revoke.verify(&step, &planned, &seen) {
                    Err(ActionError::Needs(reads)) => reads,
                    other => return (other.unwrap(), reviews),
                };
                let mut rest = Vec::new();
                for read in reads {
                    match &read {
                        Read::TokenReview(_) => seen.record(read, Answer::Authenticated(alive)),
                        Read::SubjectAccess { .. } => {
                            reviews += 1;
                            rest.push(read);
                        }
                        _ => rest.push(read),
                    }
                }
                runtime
                    .block_on(seen.perform(&sim, &|_| None, rest))
                    .unwrap();
            }
        };
        let (waiting, reviews) = verify_with(true);
        assert_eq!(
            reviews, 0,
            "no access review while an old token still authenticates"
        );
        assert!(
            waiting
                .waiting
                .iter()
                .any(|w| w.what.starts_with("what the recreated account may do")),
            "{:?}",
            waiting.waiting
        );
        let (done, reviews) = verify_with(false);
        assert_eq!(reviews, 2, "the account's and the baseline's, once");
        assert!(done.waiting.is_empty(), "{:?}", done.waiting);
        assert!(done.checks.iter().any(|c| {
            c.what
                .starts_with("the old credential's reach ends with it")
        }));
    }

    #[test]
    fn the_group_of_every_authenticated_identity_and_default_bindings_are_never_removed() {
        let mut objects = objects();
        objects.push(json!({"kind": "ClusterRoleBinding",
            "metadata": {"name": "system:discovery", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}, {"kind": "Group", "name": "system:authenticated"}]}));
        objects.push(json!({"kind": "ClusterRoleBinding", "metadata": {"name": "everyone-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
            "subjects": [{"kind": "Group", "name": "system:authenticated"}]}));
        let planned = plan(
            &Revoke,
            &step(json!({"modes": ["unbind"], "unbind_groups": true})),
            &cluster(objects),
        )
        .unwrap();
        let notes = planned.notes.join("\n");
        assert!(notes.contains("everyone-reads grants ClusterRole secret-reader to Group system:authenticated, shared with every authenticated identity: kept: every authenticated identity holds it"), "{notes}");
        assert!(notes.contains("reach: 1 default binding(s) of the API server grant it what every account holds, through its groups (system:discovery): kept"), "{notes}");
        assert!(
            !planned.outputs["group_bindings"]
                .to_string()
                .contains("system:discovery"),
            "{}",
            planned.outputs["group_bindings"]
        );
        assert!(notes.contains("shop-accounts grants ClusterRole secret-reader to Group system:serviceaccounts:shop, shared with every ServiceAccount of namespace shop (2): removed"), "{notes}");
    }
}
