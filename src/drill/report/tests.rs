//! Rendering: escaping per format (hostile alert text), strict templates, overrides.

use super::*;
use crate::drill::score::{Containment, ExpectationResult, Times};
use crate::drill::spec::Phase;

fn result(detail: &str) -> DrillResult {
    let at: jiff::Timestamp = "2026-11-28T11:30:00Z".parse().unwrap();
    DrillResult {
        schema: crate::drill::score::REPORT_SCHEMA.into(),
        drill: "exec-burst".into(),
        run: "20261128T113000000Z-a1b2c3".into(),
        namespace: "drill-a1b2c3".into(),
        cluster: "https://127.0.0.1:26443/".into(),
        context: "test".into(),
        user: "admin".into(),
        started_at: at,
        finished_at: at,
        status: "FAILED".into(),
        exit_code: 1,
        score: 0.0,
        times: Times::default(),
        detonations: vec![crate::drill::types::Detonated {
            id: "burst".into(),
            pattern: "exec_burst".into(),
            phase: Phase::Runtime,
            at,
            effect: crate::drill::types::Effect::Executed {
                detail: "8 execs".into(),
            },
        }],
        expectations: vec![ExpectationResult {
            detonation: "burst".into(),
            pattern: "exec_burst".into(),
            phase: Phase::Runtime,
            alert: "DrillExecBurst".into(),
            within_seconds: 30,
            weight: 1,
            verdict: Verdict::Missed,
            time_to_detect_seconds: None,
            time_to_notify_seconds: None,
            matched: None,
            detail: detail.into(),
            guardrail: Some("alert on exec".into()),
        }],
        coverage: Default::default(),
        noise: vec![],
        containment: Containment::default(),
        verification: vec![],
        slo_breaches: vec![],
        leftovers: vec![],
        aborted: None,
        errors: vec![],
        timeline: vec![],
        refused_requests: 0,
    }
}

const HOSTILE: &str =
    "\u{1b}]0;owned\u{7}</failure><x a=\"b\">| **bold** [link](http://x) & 'q'\u{1b}[31m";

#[test]
fn hostile_text_is_escaped_for_markdown_and_xml() {
    let r = result(HOSTILE);
    let markdown = markdown(&r, &[], None).unwrap();
    assert!(
        !markdown.contains('\u{1b}') && !markdown.contains('\u{7}'),
        "no terminal escapes"
    );
    assert!(markdown.contains(r"\| \*\*bold\*\* \[link\]"), "{markdown}");
    assert!(markdown.contains(r"\</failure\>"));
    let xml = junit(&r, None).unwrap();
    assert!(!xml.contains('\u{1b}'));
    assert!(
        xml.contains("&lt;/failure&gt;&lt;x a=&quot;b&quot;&gt;"),
        "{xml}"
    );
    assert!(xml.contains("&amp; &apos;q&apos;"));
    assert!(
        !xml.contains("</failure><x"),
        "the detail cannot close the element"
    );
}

#[test]
fn a_missed_expectation_is_a_junit_failure_in_its_detonations_suite() {
    let xml = junit(&result("no alert"), None).unwrap();
    assert!(
        xml.contains(r#"<testsuite name="exec-burst.burst" tests="1" failures="1" errors="0""#),
        "{xml}"
    );
    assert!(xml.contains(r#"<failure type="MISSED""#));
    assert!(xml.contains(r#"<testsuites name="contain drill exec-burst" tests="2" failures="1""#));
}

#[test]
fn templates_are_strict_and_overridable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("report.md.hbs"),
        "{{drill}} scored {{score}}\n",
    )
    .unwrap();
    assert_eq!(
        markdown(&result("x"), &[], Some(dir.path())).unwrap(),
        "exec-burst scored 0.0\n"
    );
    std::fs::write(dir.path().join("report.md.hbs"), "{{no_such_field}}").unwrap();
    let error = markdown(&result("x"), &[], Some(dir.path())).unwrap_err();
    assert!(error.contains("no_such_field"), "{error}");
    // No override for JUnit in that directory: the shipped template is used.
    assert!(
        junit(&result("x"), Some(dir.path()))
            .unwrap()
            .starts_with("<?xml")
    );
}

#[test]
fn the_trend_lists_earlier_runs_then_this_one() {
    let mut earlier = result("x");
    earlier.run = "20261121T113000000Z-000001".into();
    earlier.score = 50.0;
    let markdown = markdown(&result("x"), &[earlier], None).unwrap();
    let trend = markdown.split("## Trend").nth(1).unwrap();
    assert!(
        trend.contains("20261121T113000000Z-000001` | FAILED | 50.0"),
        "{trend}"
    );
    assert!(trend.contains("(this run)"));
}
