//! `contain explain-access POD`: what can reach a pod and what it can reach, computed from every
//! NetworkPolicy of its namespace (policies add up), in both directions. Useful on its own
//! during an incident, and the same computation `network.isolate` verifies with.

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::cluster::object::ObjectRef;

use crate::escape::sanitize;
use crate::netpol::{self, Direction};

/// The effective access of a pod, as a document (`-o json`) and as text.
pub async fn explain(
    cluster: &dyn Cluster,
    namespace: &str,
    pod: &str,
) -> Result<Value, crate::cluster::ClusterError> {
    let pod_ref = ObjectRef::new("Pod", Some(namespace), pod);
    let target =
        cluster
            .get(&pod_ref)
            .await?
            .ok_or_else(|| crate::cluster::ClusterError::NotFound {
                object: pod_ref.to_string(),
            })?;
    // Every NetworkPolicy of the namespace: the set whose rules add up for its pods.
    let policies = cluster
        .list(
            crate::cluster::kinds::lookup("NetworkPolicy").expect("known kind"),
            Some(namespace),
            &crate::cluster::Selector::default(),
        )
        .await?;
    let directions: Vec<Value> = [Direction::Ingress, Direction::Egress]
        .into_iter()
        .map(|direction| {
            let effective = netpol::effective(&policies, &target, direction);
            let rules: Vec<Value> = effective
                .admitting
                .iter()
                .map(|a| {
                    json!({
                        "policy": a.policy,
                        "peers": netpol::describe_peers(&a.rule, direction),
                        "ports": netpol::describe_ports(&a.rule),
                    })
                })
                .collect();
            json!({
                "direction": direction,
                "isolated": effective.isolated,
                "isolating": effective.isolating,
                "admitting": rules,
            })
        })
        .collect();
    Ok(json!({"pod": pod_ref.to_string(), "directions": directions}))
}

/// The document in words.
pub fn render_text(document: &Value) -> String {
    let mut out = format!(
        "{}\n",
        sanitize(document["pod"].as_str().unwrap_or_default())
    );
    for direction in document["directions"].as_array().into_iter().flatten() {
        let word = direction["direction"].as_str().unwrap_or_default();
        let (to_from, verb) = if word == "ingress" {
            ("from", "reach the pod")
        } else {
            ("to", "be reached by the pod")
        };
        if direction["isolated"] != json!(true) {
            out.push_str(&format!(
                "  {word}: OPEN: no policy isolates it, so everything may {verb}\n"
            ));
            continue;
        }
        let isolating: Vec<&str> = direction["isolating"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let admitting = direction["admitting"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if admitting.is_empty() {
            out.push_str(&format!(
                "  {word}: isolated by {}; nothing is admitted\n",
                sanitize(&isolating.join(", "))
            ));
            continue;
        }
        out.push_str(&format!(
            "  {word}: isolated by {}; admitted, all rules together:\n",
            sanitize(&isolating.join(", "))
        ));
        for rule in admitting {
            out.push_str(&format!(
                "    {to_from} {} on {} (policy {})\n",
                sanitize(rule["peers"].as_str().unwrap_or_default()),
                sanitize(rule["ports"].as_str().unwrap_or_default()),
                sanitize(rule["policy"].as_str().unwrap_or_default())
            ));
        }
    }
    out
}
