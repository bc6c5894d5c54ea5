//! Intake of the real payload shapes (Falco, Falcosidekick, Alertmanager webhook and API) and
//! correlation to a run.

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/alerts/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn run() -> RunIdentity {
    RunIdentity {
        run_id: "20261128T113000000Z-a1b2c3".into(),
        namespace: "drill-a1b2c3".into(),
        prefix: "drill-a1b2c3".into(),
    }
}

#[test]
fn falco_http_output_gives_rule_time_namespace_and_pod() {
    let received = at("2026-11-28T11:30:01Z");
    let alerts = from_falco(&fixture("falco-syscall.json"), received).unwrap();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.name, "Terminal shell in container");
    assert_eq!(alert.event_time, Some(at("2026-11-28T11:30:00.123456789Z")));
    assert_eq!(alert.received_at, received);
    assert_eq!(alert.namespace.as_deref(), Some("drill-a1b2c3"));
    assert!(
        alert
            .names
            .contains(&"drill-a1b2c3-web-5444784c5-5p9sf".to_string())
    );
    // No uuid from Falco itself: the fingerprint is a stable hash of the event.
    let again = from_falco(&fixture("falco-syscall.json"), received).unwrap();
    assert_eq!(alert.fingerprint, again[0].fingerprint);
    assert_eq!(run().tie(alert), Tie::Namespace);
}

#[test]
fn falcosidekick_k8saudit_ties_by_the_user_agent_run_id() {
    let alerts = from_falco(
        &fixture("falcosidekick-k8saudit.json"),
        at("2026-11-28T11:30:03Z"),
    )
    .unwrap();
    let alert = &alerts[0];
    assert_eq!(alert.name, "Attach/Exec Pod");
    assert_eq!(alert.fingerprint, "5c0e4b8e-2b4f-4b7e-9d3c-0b1f8e6a4c21");
    assert_eq!(alert.namespace.as_deref(), Some("team-a"));
    assert!(alert.user_agent.as_deref().unwrap().contains("a1b2c3"));
    assert_eq!(run().tie(alert), Tie::RunId);
    assert!(attributed(Tie::RunId, Attribution::RunId));
}

#[test]
fn alertmanager_webhook_v4_keeps_status_and_fingerprint_per_firing() {
    let received = at("2026-11-28T11:30:02Z");
    let alerts =
        from_alertmanager_webhook(&fixture("alertmanager-webhook.json"), received).unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].name, "DrillExecBurst");
    assert!(alerts[0].firing);
    assert_eq!(alerts[0].event_time, Some(at("2026-11-28T11:30:01.145Z")));
    assert_eq!(
        alerts[0].fingerprint,
        "3f1c2a9b8e7d6c5b@2026-11-28T11:30:01.145Z"
    );
    assert_eq!(
        run().tie(&alerts[0]),
        Tie::None,
        "a metric alert names no object"
    );
    assert!(!alerts[1].firing, "a resolved alert is not firing");
    assert_eq!(run().tie(&alerts[1]), Tie::Namespace);
}

#[test]
fn alertmanager_api_alerts_are_the_same_alert_as_the_webhook_ones() {
    let received = at("2026-11-28T11:30:02Z");
    let pulled = from_alertmanager_api(&fixture("alertmanager-api.json"), received).unwrap();
    let pushed =
        from_alertmanager_webhook(&fixture("alertmanager-webhook.json"), received).unwrap();
    assert!(pulled[0].firing);
    assert_eq!(
        pulled[0].fingerprint, pushed[0].fingerprint,
        "pull and push dedupe together"
    );
}

#[test]
fn wrong_shapes_are_refused_with_the_reason() {
    let now = at("2026-11-28T11:30:02Z");
    assert!(matches!(
        from_falco(&serde_json::json!({"output": "x"}), now),
        Err(IntakeError::Shape { .. })
    ));
    let v3 = serde_json::json!({"version": "3", "alerts": []});
    assert!(
        from_alertmanager_webhook(&v3, now)
            .unwrap_err()
            .to_string()
            .contains("version 3")
    );
    assert!(from_alertmanager_api(&serde_json::json!({}), now).is_err());
    assert!(matches!(
        parse_json(b"{not json"),
        Err(IntakeError::NotJson(_))
    ));
}

#[test]
fn generic_bodies_map_by_json_path() {
    let mapping = GenericMapping {
        rule: "$.detection.name".into(),
        time: Some("$.detection['observed-at']".into()),
        namespace: Some("$.resources[0].namespace".into()),
        name: Some("$.resources[0].name".into()),
        user_agent: None,
        fingerprint: Some("$.id".into()),
    };
    let body = serde_json::json!({
        "id": "evt-42",
        "detection": {"name": "Crypto miner", "observed-at": "2026-11-28T11:30:05Z"},
        "resources": [{"namespace": "drill-a1b2c3", "name": "drill-a1b2c3-web-0"}]
    });
    let alerts = from_generic(&body, &mapping, at("2026-11-28T11:30:06Z")).unwrap();
    assert_eq!(alerts[0].name, "Crypto miner");
    assert_eq!(alerts[0].fingerprint, "evt-42");
    assert_eq!(alerts[0].event_time, Some(at("2026-11-28T11:30:05Z")));
    assert_eq!(run().tie(&alerts[0]), Tie::Namespace);
    let missing = serde_json::json!({"detection": {}});
    assert!(from_generic(&missing, &mapping, at("2026-11-28T11:30:06Z")).is_err());
}

#[test]
fn json_paths_outside_the_subset_are_refused() {
    assert!(parse_path("$.a.b[2]['c d']").is_ok());
    assert!(parse_path("a.b").is_err());
    assert!(parse_path("$..a").is_err());
    assert!(parse_path("$.a[*]").is_err());
    assert!(parse_path("$[?(@.x)]").is_err());
}

#[test]
fn attribution_levels_accept_stronger_ties_only() {
    assert!(attributed(Tie::RunId, Attribution::Namespace));
    assert!(!attributed(Tie::NamePrefix, Attribution::Namespace));
    assert!(attributed(Tie::NamePrefix, Attribution::NamePrefix));
    assert!(!attributed(Tie::None, Attribution::NamePrefix));
    assert!(attributed(Tie::None, Attribution::Window));
}
