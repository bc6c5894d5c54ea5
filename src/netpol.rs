//! NetworkPolicy semantics, as the API defines them, with no I/O: which policies isolate a pod
//! in each direction, which rules then admit traffic, and whether one concrete connection is
//! admitted. Policies add up: a pod selected by several gets the union of their rules, so an
//! isolation holds only when no other selecting policy contributes a rule.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;
use serde_json::Value;

use crate::cluster::object::{self, Selector};

/// Traffic to the pod, or from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn type_name(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }

    fn rules_field(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn peers_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

/// The policy types a policy affects. Without `policyTypes`, every policy affects Ingress, and
/// one with an `egress` section affects Egress too.
pub fn policy_types(policy: &Value) -> Vec<&'static str> {
    match policy
        .pointer("/spec/policyTypes")
        .and_then(Value::as_array)
    {
        Some(types) => ["Ingress", "Egress"]
            .into_iter()
            .filter(|t| types.iter().any(|v| v.as_str() == Some(t)))
            .collect(),
        None => {
            let mut types = vec!["Ingress"];
            if policy.pointer("/spec/egress").is_some_and(|e| !e.is_null()) {
                types.push("Egress");
            }
            types
        }
    }
}

/// True when `policy` selects `pod` (same namespace, podSelector matching; `{}` selects all).
pub fn selects(policy: &Value, pod: &Value) -> bool {
    object::namespace(policy) == object::namespace(pod)
        && policy
            .pointer("/spec/podSelector")
            .and_then(Selector::from_value)
            .unwrap_or_default()
            .matches(&object::labels(pod))
}

/// One rule that admits traffic in a direction, and the policy it comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Admitting {
    pub policy: String,
    pub rule: Value,
}

/// What the policies of a namespace make of one pod in one direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Effective {
    pub direction: Direction,
    /// False when no policy of this direction selects the pod: then everything is admitted.
    pub isolated: bool,
    /// The policies that isolate it.
    pub isolating: Vec<String>,
    /// Every rule that admits traffic, from all isolating policies together.
    pub admitting: Vec<Admitting>,
}

/// The effective policy of `pod` in `direction`, from every policy of its namespace.
pub fn effective(policies: &[Value], pod: &Value, direction: Direction) -> Effective {
    let mut isolating = Vec::new();
    let mut admitting = Vec::new();
    for policy in policies {
        if !selects(policy, pod) || !policy_types(policy).contains(&direction.type_name()) {
            continue;
        }
        let name = object::name(policy).unwrap_or_default().to_string();
        isolating.push(name.clone());
        let rules = policy
            .pointer(&format!("/spec/{}", direction.rules_field()))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        admitting.extend(rules.into_iter().map(|rule| Admitting {
            policy: name.clone(),
            rule,
        }));
    }
    Effective {
        direction,
        isolated: !isolating.is_empty(),
        isolating,
        admitting,
    }
}

/// The other end of a connection.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The peer's namespace and its labels, when the peer is a pod.
    pub namespace: Option<(String, BTreeMap<String, String>)>,
    /// The peer pod's labels.
    pub pod_labels: Option<BTreeMap<String, String>>,
    pub ip: Option<Ipv4Addr>,
}

/// The port a connection goes to, on the pod that receives it.
#[derive(Clone, Debug)]
pub struct Port {
    pub protocol: String,
    pub number: u16,
    /// The name the receiving container gives this port, if any.
    pub name: Option<String>,
}

/// True when the policies admit `peer` reaching `pod` (Ingress) or `pod` reaching `peer`
/// (Egress) on `port`. Only this side's policies are judged; the other side's own policies
/// apply separately.
pub fn admits(
    policies: &[Value],
    pod: &Value,
    direction: Direction,
    peer: &Peer,
    port: &Port,
) -> bool {
    let effective = effective(policies, pod, direction);
    if !effective.isolated {
        return true;
    }
    let namespace = object::namespace(pod).unwrap_or_default();
    effective.admitting.iter().any(|a| {
        rule_peers_match(&a.rule, direction, namespace, peer) && rule_ports_match(&a.rule, port)
    })
}

fn rule_peers_match(rule: &Value, direction: Direction, namespace: &str, peer: &Peer) -> bool {
    match rule.get(direction.peers_field()).and_then(Value::as_array) {
        // An empty or missing list admits every peer.
        None => true,
        Some(peers) if peers.is_empty() => true,
        Some(peers) => peers.iter().any(|p| peer_matches(p, namespace, peer)),
    }
}

fn peer_matches(spec: &Value, policy_namespace: &str, peer: &Peer) -> bool {
    if let Some(block) = spec.get("ipBlock") {
        return peer.ip.is_some_and(|ip| ip_block_contains(block, ip));
    }
    let namespace_selector = spec.get("namespaceSelector").and_then(Selector::from_value);
    let pod_selector = spec.get("podSelector").and_then(Selector::from_value);
    let (Some((peer_namespace, namespace_labels)), Some(pod_labels)) =
        (&peer.namespace, &peer.pod_labels)
    else {
        // Selectors only ever match pods.
        return false;
    };
    let namespace_ok = match &namespace_selector {
        Some(selector) => selector.matches(namespace_labels),
        // Without a namespaceSelector, only the policy's own namespace.
        None => peer_namespace == policy_namespace,
    };
    let pod_ok = pod_selector.is_none_or(|s| s.matches(pod_labels));
    namespace_ok && pod_ok
}

fn ip_block_contains(block: &Value, ip: Ipv4Addr) -> bool {
    let inside = |cidr: &str| -> bool {
        let Some((base, bits)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(base), Ok(bits)) = (base.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
            return false;
        };
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits.min(32))
        };
        u32::from(ip) & mask == u32::from(base) & mask
    };
    let within = block
        .get("cidr")
        .and_then(Value::as_str)
        .is_some_and(inside);
    let excepted = block
        .get("except")
        .and_then(Value::as_array)
        .is_some_and(|e| e.iter().filter_map(Value::as_str).any(inside));
    within && !excepted
}

fn rule_ports_match(rule: &Value, port: &Port) -> bool {
    let Some(ports) = rule
        .get("ports")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return true;
    };
    ports.iter().any(|p| {
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if protocol != port.protocol {
            return false;
        }
        match p.get("port") {
            None => true,
            Some(Value::Number(n)) => {
                let start = n.as_u64().unwrap_or(0);
                let end = p.get("endPort").and_then(Value::as_u64).unwrap_or(start);
                (start..=end).contains(&u64::from(port.number))
            }
            Some(Value::String(name)) => match name.parse::<u64>() {
                Ok(number) => number == u64::from(port.number),
                Err(_) => port.name.as_deref() == Some(name.as_str()),
            },
            Some(_) => false,
        }
    })
}

/// A rule's peers in words: `pods app=web in namespaces team=a`, `10.0.0.0/8 except …`.
pub fn describe_peers(rule: &Value, direction: Direction) -> String {
    let peers = match rule.get(direction.peers_field()).and_then(Value::as_array) {
        None => return "any peer".into(),
        Some(p) if p.is_empty() => return "any peer".into(),
        Some(p) => p,
    };
    let selector = |v: Option<&Value>| -> Option<String> {
        let s = Selector::from_value(v?)?;
        Some(if s.is_empty() {
            "all".to_string()
        } else {
            s.to_query()
        })
    };
    peers
        .iter()
        .map(|p| {
            if let Some(block) = p.get("ipBlock") {
                let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or("?");
                let except: Vec<&str> = block
                    .get("except")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                return if except.is_empty() {
                    cidr.to_string()
                } else {
                    format!("{cidr} except {}", except.join(", "))
                };
            }
            let pods = selector(p.get("podSelector"));
            let namespaces = selector(p.get("namespaceSelector"));
            match (pods, namespaces) {
                (Some(pods), Some(ns)) => format!("pods [{pods}] in namespaces [{ns}]"),
                (None, Some(ns)) => format!("every pod in namespaces [{ns}]"),
                (Some(pods), None) => format!("pods [{pods}] of this namespace"),
                (None, None) => "nothing (an empty peer)".into(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A rule's ports in words: `TCP 8080`, `TCP 8000-9000`, `UDP http`, `all ports`.
pub fn describe_ports(rule: &Value) -> String {
    let Some(ports) = rule
        .get("ports")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return "all ports".into();
    };
    ports
        .iter()
        .map(|p| {
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match (p.get("port"), p.get("endPort")) {
                (None, _) => format!("{protocol} all"),
                (Some(port), Some(end)) => format!("{protocol} {}-{end}", plain(port)),
                (Some(port), None) => format!("{protocol} {}", plain(port)),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": ns, "labels": labels}})
    }

    fn peer(ns: &str, ns_labels: &[(&str, &str)], labels: &[(&str, &str)]) -> Peer {
        let map = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Peer {
            namespace: Some((ns.to_string(), map(ns_labels))),
            pod_labels: Some(map(labels)),
            ip: None,
        }
    }

    fn ip(addr: &str) -> Peer {
        Peer {
            ip: Some(addr.parse().unwrap()),
            ..Peer::default()
        }
    }

    fn tcp(number: u16) -> Port {
        Port {
            protocol: "TCP".into(),
            number,
            name: None,
        }
    }

    fn policy(spec: Value) -> Value {
        json!({"metadata": {"name": "np", "namespace": "shop"}, "spec": spec})
    }

    #[test]
    fn a_pod_no_policy_selects_is_open_both_ways() {
        let target = pod("shop", json!({"app": "web"}));
        let other = policy(json!({"podSelector": {"matchLabels": {"app": "db"}}}));
        for direction in [Direction::Ingress, Direction::Egress] {
            assert!(!effective(std::slice::from_ref(&other), &target, direction).isolated);
            assert!(admits(
                std::slice::from_ref(&other),
                &target,
                direction,
                &ip("1.2.3.4"),
                &tcp(80)
            ));
        }
    }

    #[test]
    fn policy_types_default_from_the_sections_present() {
        let ingress_only = policy(json!({"podSelector": {}}));
        let with_egress = policy(json!({"podSelector": {}, "egress": [{}]}));
        assert_eq!(policy_types(&ingress_only), vec!["Ingress"]);
        assert_eq!(policy_types(&with_egress), vec!["Ingress", "Egress"]);
        let explicit = policy(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        assert_eq!(policy_types(&explicit), vec!["Egress"]);
        // Selected for ingress with no rules: deny all ingress; egress untouched.
        let target = pod("shop", json!({}));
        assert!(!admits(
            std::slice::from_ref(&ingress_only),
            &target,
            Direction::Ingress,
            &ip("1.2.3.4"),
            &tcp(80)
        ));
        assert!(admits(
            &[ingress_only],
            &target,
            Direction::Egress,
            &ip("1.2.3.4"),
            &tcp(80)
        ));
    }

    #[test]
    fn empty_selectors_select_everything_and_empty_rules_admit_everything() {
        let target = pod("shop", json!({"app": "web"}));
        let allow_all = policy(json!({"podSelector": {}, "ingress": [{}]}));
        assert!(admits(
            &[allow_all],
            &target,
            Direction::Ingress,
            &peer("elsewhere", &[], &[]),
            &tcp(1)
        ));
        let same_namespace =
            policy(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}));
        assert!(admits(
            std::slice::from_ref(&same_namespace),
            &target,
            Direction::Ingress,
            &peer("shop", &[], &[("x", "y")]),
            &tcp(1)
        ));
        assert!(
            !admits(
                &[same_namespace],
                &target,
                Direction::Ingress,
                &peer("other", &[], &[]),
                &tcp(1)
            ),
            "a podSelector alone means this namespace only"
        );
    }

    #[test]
    fn namespace_selectors_with_and_without_a_pod_selector() {
        let target = pod("shop", json!({"app": "web"}));
        let monitoring = policy(json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "obs"}}}
        ]}]}));
        let prometheus_only = policy(json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "obs"}}, "podSelector": {"matchLabels": {"app": "prometheus"}}}
        ]}]}));
        let scraper = peer("obs", &[("team", "obs")], &[("app", "prometheus")]);
        let grafana = peer("obs", &[("team", "obs")], &[("app", "grafana")]);
        let outsider = peer("dev", &[("team", "dev")], &[("app", "prometheus")]);
        let policies = [monitoring];
        assert!(admits(
            &policies,
            &target,
            Direction::Ingress,
            &scraper,
            &tcp(9090)
        ));
        assert!(admits(
            &policies,
            &target,
            Direction::Ingress,
            &grafana,
            &tcp(9090)
        ));
        assert!(!admits(
            &policies,
            &target,
            Direction::Ingress,
            &outsider,
            &tcp(9090)
        ));
        let policies = [prometheus_only];
        assert!(admits(
            &policies,
            &target,
            Direction::Ingress,
            &scraper,
            &tcp(9090)
        ));
        assert!(!admits(
            &policies,
            &target,
            Direction::Ingress,
            &grafana,
            &tcp(9090)
        ));
        let any_namespace =
            policy(json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}));
        assert!(admits(
            &[any_namespace],
            &target,
            Direction::Ingress,
            &outsider,
            &tcp(1)
        ));
    }

    #[test]
    fn ip_blocks_with_exceptions() {
        let target = pod("shop", json!({}));
        let egress = policy(
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}
            ]}]}),
        );
        let policies = [egress];
        assert!(admits(
            &policies,
            &target,
            Direction::Egress,
            &ip("10.1.2.3"),
            &tcp(443)
        ));
        assert!(!admits(
            &policies,
            &target,
            Direction::Egress,
            &ip("10.96.0.10"),
            &tcp(443)
        ));
        assert!(!admits(
            &policies,
            &target,
            Direction::Egress,
            &ip("192.168.1.1"),
            &tcp(443)
        ));
        assert!(
            !admits(
                &policies,
                &target,
                Direction::Egress,
                &peer("shop", &[], &[]),
                &tcp(443)
            ),
            "an ipBlock does not match by selector"
        );
    }

    #[test]
    fn ports_numbers_ranges_names_and_protocols() {
        let target = pod("shop", json!({}));
        let rules = policy(json!({"podSelector": {}, "ingress": [{"ports": [
            {"port": 8000, "endPort": 8100},
            {"protocol": "UDP", "port": 53},
            {"port": "metrics"}
        ]}]}));
        let policies = [rules];
        let any = ip("1.1.1.1");
        assert!(admits(
            &policies,
            &target,
            Direction::Ingress,
            &any,
            &tcp(8050)
        ));
        assert!(!admits(
            &policies,
            &target,
            Direction::Ingress,
            &any,
            &tcp(8101)
        ));
        assert!(
            !admits(&policies, &target, Direction::Ingress, &any, &tcp(53)),
            "53 is UDP only"
        );
        let udp = Port {
            protocol: "UDP".into(),
            number: 53,
            name: None,
        };
        assert!(admits(&policies, &target, Direction::Ingress, &any, &udp));
        let named = Port {
            protocol: "TCP".into(),
            number: 9100,
            name: Some("metrics".into()),
        };
        assert!(admits(&policies, &target, Direction::Ingress, &any, &named));
        assert!(!admits(
            &policies,
            &target,
            Direction::Ingress,
            &any,
            &tcp(9100)
        ));
    }

    #[test]
    fn policies_add_up() {
        let target = pod("shop", json!({"app": "web", "contain.dev/quarantine": "r"}));
        let quarantine = policy(
            json!({"podSelector": {"matchLabels": {"contain.dev/quarantine": "r"}}, "policyTypes": ["Ingress", "Egress"]}),
        );
        let allow_same = json!({"metadata": {"name": "allow-same", "namespace": "shop"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}});
        let neighbour = peer("shop", &[], &[("app", "cart")]);
        assert!(
            admits(
                &[quarantine.clone(), allow_same.clone()],
                &target,
                Direction::Ingress,
                &neighbour,
                &tcp(80)
            ),
            "a deny-all isolates nothing while another policy admits"
        );
        let mut excluded = allow_same.clone();
        excluded["spec"]["podSelector"] = json!({"matchExpressions": [{"key": "contain.dev/quarantine", "operator": "DoesNotExist"}]});
        assert!(!admits(
            &[quarantine, excluded],
            &target,
            Direction::Ingress,
            &neighbour,
            &tcp(80)
        ));
    }
}
