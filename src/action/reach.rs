//! An identity's reach: every binding that grants it anything (by its own name, as a User, or
//! through one of its groups), the permissions those bindings gave it, and the question put to
//! the API server afterwards: what may it still do that not every authenticated identity may?
//! A revocation is verified by that answer, not by the bindings it edited.

use serde_json::Value;

use super::{Missing, Observed};
use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Access, AccessVerdict, Selector, UserInfo, kinds};

/// The group every authenticated identity is in: what it grants, nobody can be denied alone.
pub const AUTHENTICATED: &str = "system:authenticated";

/// An identity with nothing of its own: only in the group every authenticated caller is in.
/// What it may do is the floor a revoked identity is compared with.
pub fn baseline() -> UserInfo {
    UserInfo {
        username: "contain.dev:reach-baseline".into(),
        groups: vec![AUTHENTICATED.into()],
    }
}

/// The identity a ServiceAccount's tokens authenticate as, with the groups the API server adds.
pub fn service_account(namespace: &str, name: &str) -> UserInfo {
    UserInfo::service_account(namespace, name)
}

/// How a binding reaches the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A subject naming the identity itself (`ServiceAccount`, or `User` by its username).
    Own,
    /// A subject naming one of its groups: every other member holds the same.
    Group(String),
}

/// One binding that grants the identity something, and the subject through which it does.
#[derive(Clone, Debug)]
pub struct Path {
    pub binding: Value,
    pub subject: Value,
    pub via: Via,
}

impl Path {
    pub fn binding_ref(&self) -> ObjectRef {
        ObjectRef::of(&self.binding).expect("listed objects have names")
    }

    /// The role it grants, as `Kind name`.
    pub fn role(&self) -> String {
        let field = |f: &str| {
            self.binding
                .pointer(&format!("/roleRef/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        format!("{} {}", field("kind"), field("name"))
    }

    /// Whether the binding is one of the API server's own defaults, which it restores at
    /// every start (`kubernetes.io/bootstrapping: rbac-defaults`).
    pub fn is_bootstrap(&self) -> bool {
        object::labels(&self.binding)
            .get("kubernetes.io/bootstrapping")
            .is_some_and(|v| v == "rbac-defaults")
    }
}

/// Every RoleBinding and ClusterRoleBinding subject that is `user` or one of its groups.
pub fn paths(seen: &Observed, user: &UserInfo) -> Result<Vec<Path>, Missing> {
    let every = Selector::default();
    let lists = together([
        seen.list("RoleBinding", None, &every),
        seen.list("ClusterRoleBinding", None, &every),
    ])?;
    let mut found = Vec::new();
    for binding in lists.into_iter().flatten() {
        for subject in binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !crate::cluster::authorize::applies_to(subject, user, object::namespace(binding)) {
                continue;
            }
            let via = match subject.get("kind").and_then(Value::as_str) {
                Some("Group") => Via::Group(
                    subject
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
                _ => Via::Own,
            };
            found.push(Path {
                binding: binding.clone(),
                subject: subject.clone(),
                via,
            });
        }
    }
    Ok(found)
}

/// Each binding that grants `user` anything, once.
pub fn bindings_granting(seen: &Observed, user: &UserInfo) -> Result<Vec<Value>, Missing> {
    let mut bindings: Vec<Value> = Vec::new();
    for path in paths(seen, user)? {
        if !bindings
            .iter()
            .any(|b| ObjectRef::of(b) == Some(path.binding_ref()))
        {
            bindings.push(path.binding);
        }
    }
    Ok(bindings)
}

/// Results asked for in one round: every read any of them lacks is asked for at once.
pub fn together<T, const N: usize>(results: [Result<T, Missing>; N]) -> Result<Vec<T>, Missing> {
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for result in results {
        match result {
            Ok(value) => found.push(value),
            Err(Missing(reads)) => missing.extend(reads),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(Missing(missing))
    }
}

/// The most permissions a held role is checked by; past it the plan says what was left out.
pub const MAX_HELD: usize = 2000;

/// The permissions the paths grant: each rule of each bound role as access reviews ask it
/// (a wildcard asked for is granted only by a wildcard), in the binding's namespace or
/// cluster-wide. Rules on non-resource URLs are not resource permissions and are left out.
pub fn held(seen: &Observed, paths: &[Path]) -> Result<Vec<Access>, Missing> {
    let roles: Vec<ObjectRef> = paths.iter().filter_map(role_ref).collect();
    let found = seen.get_all(&roles)?;
    let mut held = Vec::new();
    for (path, role) in paths.iter().filter(|p| role_ref(p).is_some()).zip(found) {
        let namespace = object::namespace(&path.binding)
            .filter(|_| path.binding.get("kind").and_then(Value::as_str) == Some("RoleBinding"));
        for rule in role
            .and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            held.extend(rule_accesses(rule, namespace));
        }
    }
    held.sort();
    held.dedup();
    Ok(held)
}

/// The role a binding refers to.
fn role_ref(path: &Path) -> Option<ObjectRef> {
    let name = path
        .binding
        .pointer("/roleRef/name")
        .and_then(Value::as_str)?;
    match path
        .binding
        .pointer("/roleRef/kind")
        .and_then(Value::as_str)?
    {
        "ClusterRole" => Some(ObjectRef::new("ClusterRole", None, name)),
        "Role" => Some(ObjectRef::new(
            "Role",
            object::namespace(&path.binding),
            name,
        )),
        _ => None,
    }
}

/// One PolicyRule as the access reviews that ask about exactly what it grants.
fn rule_accesses(rule: &Value, namespace: Option<&str>) -> Vec<Access> {
    let list = |name: &str| -> Vec<String> {
        rule.get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let names: Vec<Option<String>> = match list("resourceNames") {
        names if names.is_empty() => vec![None],
        names => names.into_iter().map(Some).collect(),
    };
    let mut accesses = Vec::new();
    for verb in list("verbs") {
        for group in list("apiGroups") {
            for resource in list("resources") {
                let (resource, subresource) =
                    resource.split_once('/').unwrap_or((resource.as_str(), ""));
                for name in &names {
                    accesses.push(Access {
                        verb: verb.clone(),
                        group: group.clone(),
                        resource: resource.to_string(),
                        subresource: subresource.to_string(),
                        namespace: namespace.map(str::to_string),
                        name: name.clone(),
                    });
                }
            }
        }
    }
    accesses
}

/// What an attacker holding a credential reaches for first, in `namespace` and cluster-wide:
/// secrets, new pods, exec and attach, new tokens, RBAC escalation, impersonation and the
/// kubelet's API.
pub fn sensitive(namespace: &str) -> Vec<Access> {
    let on = |verb: &str, kind: &str, sub: &str, ns: Option<&str>| {
        Access::on(verb, kinds::lookup(kind).expect("known kind"), ns, None).subresource(sub)
    };
    let mut accesses = Vec::new();
    for ns in [Some(namespace), None] {
        for verb in ["get", "list", "watch"] {
            accesses.push(on(verb, "Secret", "", ns));
        }
        accesses.push(on("create", "Pod", "", ns));
        accesses.push(on("create", "Pod", "exec", ns));
        accesses.push(on("create", "Pod", "attach", ns));
        accesses.push(on("create", "ServiceAccount", "token", ns));
        accesses.push(on("bind", "Role", "", ns));
        accesses.push(on("escalate", "Role", "", ns));
    }
    accesses.push(on("bind", "ClusterRole", "", None));
    accesses.push(on("escalate", "ClusterRole", "", None));
    for resource in ["users", "groups", "serviceaccounts"] {
        accesses.push(Access {
            verb: "impersonate".into(),
            group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: None,
            name: None,
        });
    }
    accesses.push(on("get", "Node", "proxy", None));
    accesses.push(on("create", "Node", "proxy", None));
    accesses
}

/// What `user` may still do of `checks` that the baseline identity may not, with the API
/// server's reason for each: both asked in one round.
pub fn remaining(
    seen: &Observed,
    user: &UserInfo,
    checks: &[Access],
) -> Result<Vec<AccessVerdict>, Missing> {
    let floor = baseline();
    let answers = together([
        seen.subject_access(user, checks),
        seen.subject_access(&floor, checks),
    ])?;
    Ok(answers[0]
        .iter()
        .zip(answers[1])
        .filter(|(theirs, everyone)| theirs.allowed && !everyone.allowed)
        .map(|(theirs, _)| theirs.clone())
        .collect())
}
