//! One line of `contain runs` from a ContainmentRun as read, as plain data: who, when, the
//! outcome, what is in force and for how long, whether its review is due, and whether a live
//! process still holds it.

use serde::Serialize;
use serde_json::Value;

/// A run as `contain runs` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub run: String,
    pub namespace: String,
    pub playbook: String,
    pub target: String,
    pub phase: String,
    pub outcome: Option<String>,
    pub responder: String,
    pub started: String,
    pub in_force: usize,
    /// Since when the oldest containment in force is in place.
    pub in_force_since: Option<String>,
    pub review_due: Option<String>,
    pub overdue: bool,
    /// What was found undone by hand (filled in by the caller, which reads the objects), or
    /// why it could not be compared.
    pub undone_by_hand: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_compared: Option<String>,
}

/// The row of a run's object, judged at `now`.
pub fn row(object: &Value, now: jiff::Timestamp) -> Row {
    let spec = &object["spec"];
    let status = &object["status"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let review_due = status["reviewDue"].as_str().map(str::to_string);
    let in_force = status["inForceCount"].as_u64().unwrap_or(0) as usize;
    let overdue = in_force > 0
        && review_due
            .as_deref()
            .and_then(|d| d.parse::<jiff::Timestamp>().ok())
            .is_some_and(|due| due <= now);
    Row {
        run: text(&spec["run"]),
        namespace: text(&object["metadata"]["namespace"]),
        playbook: text(&spec["playbook"]["name"]),
        target: text(&spec["target"]),
        // No status yet: nothing was recorded, so no plan was approved.
        phase: status["phase"].as_str().unwrap_or("Planned").to_string(),
        outcome: status["outcome"].as_str().map(str::to_string),
        responder: status["responder"]
            .as_str()
            .map_or_else(|| text(&spec["responder"]), str::to_string),
        started: text(&object["metadata"]["creationTimestamp"]),
        in_force,
        in_force_since: status["inForce"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["since"].as_str())
            .min()
            .map(str::to_string),
        review_due,
        overdue,
        undone_by_hand: Vec::new(),
        not_compared: None,
    }
}

/// How long ago `at` was, as `3d4h`, `2h13m`, `5m` or `40s`.
pub fn age(at: &str, now: jiff::Timestamp) -> String {
    let Ok(at) = at.parse::<jiff::Timestamp>() else {
        return "-".into();
    };
    let secs = (now.as_second() - at.as_second()).max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_in_force_past_its_review_is_overdue_and_one_rolled_back_is_not() {
        let now: jiff::Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let object = json!({
            "metadata": {"namespace": "shop", "creationTimestamp": "2026-12-06T03:00:00Z"},
            "spec": {"run": "R1", "playbook": {"name": "compromised-pod"}, "target": "Pod shop/web-1", "responder": "alice"},
            "status": {"phase": "Succeeded", "responder": "bob on b", "inForceCount": 2,
                       "inForce": [{"since": "2026-12-06T03:01:00Z"}, {"since": "2026-12-06T03:00:30Z"}],
                       "reviewDue": "2026-12-06T07:00:30Z"},
        });
        let r = row(&object, now);
        assert!(r.overdue);
        assert_eq!(r.responder, "bob on b");
        assert_eq!(r.in_force_since.as_deref(), Some("2026-12-06T03:00:30Z"));
        assert_eq!(age(r.in_force_since.as_deref().unwrap(), now), "8h59m");
        let mut rolled_back = object.clone();
        rolled_back["status"]["inForceCount"] = json!(0);
        assert!(!row(&rolled_back, now).overdue);
        let bare = json!({"metadata": {"namespace": "shop"}, "spec": {"run": "R2"}});
        assert_eq!(
            row(&bare, now).phase,
            "Planned",
            "a run killed before its first status wrote nothing"
        );
        let mut later = object;
        later["status"]["reviewDue"] = json!("2026-12-06T13:00:00Z");
        assert!(!row(&later, now).overdue);
    }

    #[test]
    fn ages_read_at_a_glance() {
        let now: jiff::Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        assert_eq!(age("2026-12-06T11:59:20Z", now), "40s");
        assert_eq!(age("2026-12-06T11:55:00Z", now), "5m");
        assert_eq!(age("2026-12-03T08:00:00Z", now), "3d4h");
        assert_eq!(age("not a time", now), "-");
    }
}
