//! Alert intake, vendor-neutral: Falco (`http_output`) and Falcosidekick webhook bodies,
//! Alertmanager webhook v4 bodies and `/api/v2/alerts` answers, and generic JSON mapped by
//! JSONPath, all parsed into one [`Alert`]; then tied to a drill run (correlation) and to the
//! expectations it satisfies.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::spec::{Attribution, GenericMapping};
use super::types::RunIdentity;

/// One alert as the drill sees it, whatever sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `falco`, `alertmanager` or `generic`.
    pub source: String,
    /// The Falco rule or the Alertmanager alertname.
    pub name: String,
    /// Dedupe key: Falco's uuid (or a hash of the event), Alertmanager's fingerprint with the
    /// firing's start (a re-fire after a resolve is a new alert).
    pub fingerprint: String,
    /// The alert's own event time (Falco `time`, Alertmanager `startsAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Timestamp>,
    pub received_at: Timestamp,
    pub firing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object names the alert mentions (pod, target name, container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Every string of the payload joined, to find a run id anywhere in it (kept short).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// The largest share of a payload kept for run-id search.
const TEXT_LIMIT: usize = 16 * 1024;

fn strings_of(value: &Value, out: &mut String) {
    if out.len() > TEXT_LIMIT {
        return;
    }
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

fn text_of(value: &Value) -> String {
    let mut out = String::new();
    strings_of(value, &mut out);
    out.truncate(crate::source::floor_char_boundary(&out, TEXT_LIMIT));
    out
}

fn time_of(value: Option<&Value>) -> Option<Timestamp> {
    value?.as_str()?.parse().ok()
}

fn str_of<'a>(map: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

fn hash(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    hex::encode(digest.finalize())[..16].to_string()
}

/// Why a body was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IntakeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a {shape} body: {problem}")]
    Shape {
        shape: &'static str,
        problem: String,
    },
}

fn shape(shape: &'static str, problem: impl Into<String>) -> IntakeError {
    IntakeError::Shape {
        shape,
        problem: problem.into(),
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, IntakeError> {
    serde_json::from_slice(body).map_err(|e| IntakeError::NotJson(e.to_string()))
}

/// A Falco event, as Falco's `http_output` (json_output) and Falcosidekick's webhook send it:
/// `rule`, `time`, `output`, `priority`, `output_fields` (syscall fields `k8s.ns.name`,
/// `k8s.pod.name`; k8saudit fields `ka.target.namespace`, `ka.target.name`, `ka.useragent`),
/// and from Falcosidekick a `uuid`. An array of events is taken too.
pub fn from_falco(body: &Value, received_at: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    let events: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    events
        .into_iter()
        .map(|event| {
            let rule = str_of(event, &["rule"]).ok_or_else(|| shape("Falco", "no `rule`"))?;
            let fields = event.get("output_fields").unwrap_or(&Value::Null);
            let namespace = str_of(fields, &["k8s.ns.name", "ka.target.namespace"]);
            let names = ["k8s.pod.name", "ka.target.name", "container.name"]
                .iter()
                .filter_map(|k| fields.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let time = str_of(event, &["time"]).unwrap_or("");
            let fingerprint = match str_of(event, &["uuid"]) {
                Some(uuid) => uuid.to_string(),
                None => hash(&[rule, time, str_of(event, &["output"]).unwrap_or("")]),
            };
            Ok(Alert {
                source: "falco".into(),
                name: rule.to_string(),
                fingerprint,
                event_time: time_of(event.get("time")),
                received_at,
                firing: true,
                namespace: namespace.map(str::to_string),
                names,
                user_agent: str_of(fields, &["ka.useragent", "ka.user.agent"]).map(str::to_string),
                text: text_of(event),
            })
        })
        .collect()
}

/// One Alertmanager alert (webhook v4 `alerts[]` item or `/api/v2/alerts` item).
fn alertmanager_alert(item: &Value, received_at: Timestamp) -> Result<Alert, IntakeError> {
    let labels = item
        .get("labels")
        .filter(|l| l.is_object())
        .ok_or_else(|| shape("Alertmanager", "an alert without `labels`"))?;
    let name = str_of(labels, &["alertname"])
        .ok_or_else(|| shape("Alertmanager", "an alert without `labels.alertname`"))?;
    let starts = str_of(item, &["startsAt"]).unwrap_or("");
    let fingerprint = match str_of(item, &["fingerprint"]) {
        Some(f) => format!("{f}@{starts}"),
        None => hash(&[name, starts, &labels.to_string()]),
    };
    // Webhook: `status: firing|resolved`; API v2: `status.state: active|suppressed|unprocessed`
    // and `endsAt` in the past once resolved.
    let firing = match item.get("status") {
        Some(Value::String(s)) => s == "firing",
        Some(status) => status.get("state").and_then(Value::as_str) != Some("resolved"),
        None => true,
    } && time_of(item.get("endsAt"))
        .is_none_or(|end| end > received_at || end.as_second() <= 0);
    let names = ["pod", "name", "deployment", "container", "service"]
        .iter()
        .filter_map(|k| labels.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    Ok(Alert {
        source: "alertmanager".into(),
        name: name.to_string(),
        fingerprint,
        event_time: time_of(item.get("startsAt")),
        received_at,
        firing,
        namespace: str_of(labels, &["namespace", "exported_namespace"]).map(str::to_string),
        names,
        user_agent: str_of(labels, &["user_agent", "useragent"]).map(str::to_string),
        text: text_of(item),
    })
}

/// An Alertmanager webhook (version 4) body.
pub fn from_alertmanager_webhook(
    body: &Value,
    received_at: Timestamp,
) -> Result<Vec<Alert>, IntakeError> {
    if let Some(version) = body.get("version").and_then(Value::as_str)
        && version != "4"
    {
        return Err(shape(
            "Alertmanager webhook",
            format!("version {version}, expected 4"),
        ));
    }
    let alerts = body
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("Alertmanager webhook", "no `alerts` array"))?;
    alerts
        .iter()
        .map(|a| alertmanager_alert(a, received_at))
        .collect()
}

/// An Alertmanager `GET /api/v2/alerts` answer.
pub fn from_alertmanager_api(
    body: &Value,
    received_at: Timestamp,
) -> Result<Vec<Alert>, IntakeError> {
    body.as_array()
        .ok_or_else(|| shape("Alertmanager API", "not an array of alerts"))?
        .iter()
        .map(|a| alertmanager_alert(a, received_at))
        .collect()
}

/// A generic body, mapped by the drill file's JSONPaths.
pub fn from_generic(
    body: &Value,
    mapping: &GenericMapping,
    received_at: Timestamp,
) -> Result<Vec<Alert>, IntakeError> {
    let get = |path: &Option<String>| -> Option<String> {
        let found = json_path(body, path.as_deref()?)?;
        match found {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let name = get(&Some(mapping.rule.clone()))
        .ok_or_else(|| shape("generic", format!("nothing at {}", mapping.rule)))?;
    let time = get(&mapping.time);
    let fingerprint = get(&mapping.fingerprint)
        .unwrap_or_else(|| hash(&[&name, time.as_deref().unwrap_or(""), &body.to_string()]));
    Ok(vec![Alert {
        source: "generic".into(),
        name,
        fingerprint,
        event_time: time.and_then(|t| t.parse().ok()),
        received_at,
        firing: true,
        namespace: get(&mapping.namespace),
        names: get(&mapping.name).into_iter().collect(),
        user_agent: get(&mapping.user_agent),
        text: text_of(body),
    }])
}

/// One step of a JSONPath.
pub(crate) enum PathStep<'p> {
    Key(&'p str),
    Index(usize),
}

/// Parses the JSONPath subset drill files use: `$`, then `.key`, `['key']` and `[index]`.
pub(crate) fn parse_path(path: &str) -> Result<Vec<PathStep<'_>>, String> {
    let mut rest = path
        .strip_prefix('$')
        .ok_or_else(|| "a JSONPath starts with `$`".to_string())?;
    let mut steps = Vec::new();
    let unknown = || "only `.key`, `['key']` and `[index]` steps are understood".to_string();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']").ok_or_else(unknown)?;
            steps.push(PathStep::Key(&after[..end]));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(unknown)?;
            steps.push(PathStep::Index(
                after[..end].parse().map_err(|_| unknown())?,
            ));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(unknown());
            }
            steps.push(PathStep::Key(&after[..end]));
            rest = &after[end..];
        } else {
            return Err(unknown());
        }
    }
    Ok(steps)
}

/// The value at a JSONPath, if the path parses and the value has it.
pub fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    parse_path(path)
        .ok()?
        .into_iter()
        .try_fold(value, |here, step| match step {
            PathStep::Key(key) => here.get(key),
            PathStep::Index(i) => here.get(i),
        })
}

/// How strongly an alert is tied to the run, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tie {
    RunId,
    Namespace,
    NamePrefix,
    None,
}

impl RunIdentity {
    /// The strongest tie: the run id in the User-Agent or anywhere in the alert, then the
    /// per-run namespace, then an object name with the run's prefix.
    pub fn tie(&self, alert: &Alert) -> Tie {
        let id = self.run_id.to_ascii_lowercase();
        let mentions = |s: &str| s.to_ascii_lowercase().contains(&id);
        if alert.user_agent.as_deref().is_some_and(mentions) || mentions(&alert.text) {
            Tie::RunId
        } else if alert.namespace.as_deref() == Some(self.namespace.as_str()) {
            Tie::Namespace
        } else if alert.names.iter().any(|n| n.starts_with(&self.prefix)) {
            Tie::NamePrefix
        } else {
            Tie::None
        }
    }
}

/// Whether a tie is strong enough for an expectation's attribution.
pub fn attributed(tie: Tie, required: Attribution) -> bool {
    match required {
        Attribution::RunId => tie == Tie::RunId,
        Attribution::Namespace => tie <= Tie::Namespace,
        Attribution::NamePrefix => tie <= Tie::NamePrefix,
        Attribution::Window => true,
    }
}

#[cfg(test)]
mod tests;
