//! From what happened to what it means: each expectation's verdict (PREVENTED, DETECTED, LATE,
//! MISSED, UNATTRIBUTED, ERROR), the four times (detect, notify, contain, restore), noise, the
//! weighted score, coverage per lifecycle phase, and the drill's verdict and exit code.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::alerts::{Alert, Tie, attributed};
use super::spec::{Drill, Expectation, Phase};
use super::types::{Check, Detonated, Effect, RunIdentity};

/// The JSON report's schema id; bumped when a field changes meaning.
pub const REPORT_SCHEMA: &str = "contain.dev/drill-report/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Prevented,
    Detected,
    Late,
    Missed,
    Unattributed,
    Error,
}

impl Verdict {
    /// The share of an expectation's weight it earns.
    fn credit(self) -> f64 {
        match self {
            Verdict::Prevented | Verdict::Detected => 1.0,
            Verdict::Late => 0.5,
            _ => 0.0,
        }
    }

    pub fn passed(self) -> bool {
        matches!(self, Verdict::Prevented | Verdict::Detected)
    }
}

/// One expectation's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpectationResult {
    pub detonation: String,
    pub pattern: String,
    pub phase: Phase,
    /// The rule or alertname expected.
    pub alert: String,
    pub within_seconds: u64,
    pub weight: u32,
    pub verdict: Verdict,
    /// The alert's own event time − the detonation.
    pub time_to_detect_seconds: Option<f64>,
    /// Receipt − the detonation.
    pub time_to_notify_seconds: Option<f64>,
    pub matched: Option<Alert>,
    pub detail: String,
    /// What would close the gap, for a failed expectation.
    pub guardrail: Option<String>,
}

/// The times the drill measures, in seconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Times {
    pub time_to_detect_seconds: Option<f64>,
    pub time_to_notify_seconds: Option<f64>,
    pub time_to_contain_seconds: Option<f64>,
    pub time_to_restore_seconds: Option<f64>,
}

/// A timeline entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Moment {
    pub at: Timestamp,
    pub what: String,
}

/// Coverage of one lifecycle phase.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Coverage {
    pub expectations: usize,
    pub passed: usize,
    pub percent: f64,
}

/// The whole result of a drill run: what every report is rendered from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillResult {
    pub schema: String,
    pub drill: String,
    pub run: String,
    pub namespace: String,
    pub cluster: String,
    pub context: String,
    pub user: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// PASSED, FAILED, ERROR, ABORTED or CLEANUP_INCOMPLETE.
    pub status: String,
    pub exit_code: u8,
    pub score: f64,
    pub times: Times,
    pub detonations: Vec<Detonated>,
    pub expectations: Vec<ExpectationResult>,
    pub coverage: BTreeMap<String, Coverage>,
    /// Alerts tied to the run's objects that no expectation asked for.
    pub noise: Vec<Alert>,
    pub containment: Containment,
    pub verification: Vec<Check>,
    pub slo_breaches: Vec<String>,
    pub leftovers: Vec<String>,
    pub aborted: Option<String>,
    pub errors: Vec<String>,
    pub timeline: Vec<Moment>,
    /// Receiver requests refused (bad token or body).
    pub refused_requests: u64,
}

/// The containment playbook's part.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Containment {
    pub playbook: Option<String>,
    pub run: Option<String>,
    pub exit_code: Option<u8>,
    pub rollback_exit_code: Option<u8>,
    /// How the run's objects still differ from before containment, after the rollback (read
    /// from the cluster); empty when everything came back.
    pub restore_differences: Vec<String>,
    pub skipped: Option<String>,
}

/// Seconds from `from` to `to`.
pub fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()) as f64 / 1000.0
}

/// Classifies one expectation from the detonation and the alerts counted.
pub fn classify(
    expectation: &Expectation,
    detonated: Option<&Detonated>,
    alerts: &[Alert],
    run: &RunIdentity,
    detection_ended: Timestamp,
) -> (Verdict, Option<Alert>, String) {
    let Some(detonated) = detonated else {
        return (
            Verdict::Error,
            None,
            "the detonation did not happen (aborted before it)".into(),
        );
    };
    match &detonated.effect {
        Effect::Refused { message } => {
            return (
                Verdict::Prevented,
                None,
                format!("admission refused it: {message}"),
            );
        }
        Effect::Failed { message } => {
            return (
                Verdict::Error,
                None,
                format!("the detonation failed: {message}"),
            );
        }
        Effect::Executed { .. } => {}
    }
    let window_start = detonated.at - jiff::SignedDuration::from_secs(5);
    let deadline =
        detonated.at + jiff::SignedDuration::from_secs(expectation.within_seconds as i64);
    let candidates: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.firing && a.name == expectation.alert())
        .filter(|a| a.event_time.unwrap_or(a.received_at) >= window_start)
        .collect();
    let tied: Vec<&Alert> = candidates
        .iter()
        .copied()
        .filter(|a| attributed(run.tie(a), expectation.attribution))
        .collect();
    let when = |a: &Alert| a.event_time.unwrap_or(a.received_at).min(a.received_at);
    if let Some(alert) = tied.iter().min_by_key(|a| when(a)) {
        let on_time = when(alert) <= deadline;
        let verdict = if on_time {
            Verdict::Detected
        } else {
            Verdict::Late
        };
        let detail = format!(
            "{} from {} at {} ({}s after the detonation, deadline {}s)",
            alert.name,
            alert.source,
            when(alert),
            seconds(detonated.at, when(alert)),
            expectation.within_seconds
        );
        return (verdict, Some((*alert).clone()), detail);
    }
    if let Some(alert) = candidates.first() {
        return (
            Verdict::Unattributed,
            Some((*alert).clone()),
            format!(
                "{} fired in the window but is not tied to this run ({:?} needed, found {:?})",
                alert.name,
                expectation.attribution,
                run.tie(alert)
            ),
        );
    }
    (
        Verdict::Missed,
        None,
        format!(
            "no {} alert between the detonation and {} ({} s of detection)",
            expectation.alert(),
            detection_ended,
            seconds(detonated.at, detection_ended)
        ),
    )
}

/// What would have closed a gap, per pattern.
pub fn guardrail(pattern: &str, verdict: Verdict) -> Option<String> {
    if verdict.passed() {
        return None;
    }
    Some(match (pattern, verdict) {
        (_, Verdict::Unattributed) => "make the alert carry the namespace, the object name or the audit User-Agent, so it can be tied to what happened".into(),
        ("privileged_pod", _) => "enforce Pod Security `baseline` or `restricted` on workload namespaces (label pod-security.kubernetes.io/enforce), and alert on privileged pod creation from the audit log".into(),
        ("exec_burst", _) => "alert on pods/exec from the audit log (Falco k8saudit `Attach/Exec Pod`) or on apiserver_request_total{subresource=\"exec\"}; restrict pods/exec in RBAC".into(),
        ("token_misuse", _) => "alert on ServiceAccount requests refused outside their own namespace (audit 403s by system:serviceaccount users); bound, short-lived tokens; automountServiceAccountToken: false".into(),
        ("foreign_registry_pod", _) => "admit only images from allowed registries (a ValidatingAdmissionPolicy on spec.containers[*].image), and alert on refusals".into(),
        _ => "add a detection for this pattern".into(),
    })
}

/// Weighted score (0–100) and coverage per lifecycle phase.
pub fn score(results: &[ExpectationResult]) -> (f64, BTreeMap<String, Coverage>) {
    let total: u32 = results.iter().map(|r| r.weight).sum();
    let earned: f64 = results
        .iter()
        .map(|r| r.weight as f64 * r.verdict.credit())
        .sum();
    let score = if total == 0 {
        100.0
    } else {
        (earned / total as f64 * 1000.0).round() / 10.0
    };
    let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
    for r in results {
        let c = coverage
            .entry(r.phase.as_str().to_string())
            .or_insert(Coverage {
                expectations: 0,
                passed: 0,
                percent: 0.0,
            });
        c.expectations += 1;
        c.passed += usize::from(r.verdict.passed());
    }
    for c in coverage.values_mut() {
        c.percent = (c.passed as f64 / c.expectations as f64 * 1000.0).round() / 10.0;
    }
    (score, coverage)
}

/// Alerts tied to the run that no expectation matched.
pub fn noise(drill: &Drill, alerts: &[Alert], matched: &[Alert], run: &RunIdentity) -> Vec<Alert> {
    let expected: Vec<&str> = drill
        .spec
        .detonations
        .iter()
        .flat_map(|d| d.expect.iter().map(Expectation::alert))
        .collect();
    alerts
        .iter()
        .filter(|a| a.firing && run.tie(a) != Tie::None)
        .filter(|a| !expected.contains(&a.name.as_str()) && !matched.contains(a))
        .cloned()
        .collect()
}

/// The drill's verdicts as exit codes, from the binary's one table ([`crate::exit`]).
pub mod exit {
    /// Every expectation was met, containment verified, everything reverted and cleaned.
    pub const PASSED: u8 = crate::exit::SUCCESS;
    /// An expectation failed (LATE, MISSED, UNATTRIBUTED), a post-condition or an SLO did not
    /// hold, or the containment playbook failed.
    pub const FAILED: u8 = crate::exit::DRILL_FAILED;
    /// The drill could not run as written (invalid file, preflight refusal, a detonation
    /// error) or was aborted (kill switch, SIGTERM, lost lock).
    pub const ERROR: u8 = crate::exit::DRILL_ERROR;
    /// Cleanup left drill objects behind, or the rollback failed or did not restore every
    /// object.
    pub const CLEANUP_INCOMPLETE: u8 = crate::exit::CLEANUP_INCOMPLETE;
}
