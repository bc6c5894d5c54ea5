//! Notifications, live: each step's end becomes a Kubernetes Event on its target (seen by
//! `kubectl get events` and `kubectl describe`), generic JSON and Slack-compatible webhooks get
//! every step and the run's end, and a webhook that cannot be reached changes nothing but a
//! warning and a journal record.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Live, playbook_file};
use crate::live::{self, Namespace};

const PLAYBOOK: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: notify-test}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true"}}
  - id: isolate
    action: network.isolate
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {mechanism: network-policy}
"#;

/// A webhook receiver on 127.0.0.1: answers 200 to every POST and keeps the bodies.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        let body = &request[end + 4..end + 4 + length];
                        kept.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).expect("a JSON body"));
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

fn kubectl(args: &[&str]) -> String {
    let dir = std::process::Command::new(crate::harness::repo("scripts/build-control-plane"))
        .output()
        .unwrap();
    let dir = String::from_utf8_lossy(&dir.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let out = std::process::Command::new(format!("{dir}/kubectl"))
        .arg("--kubeconfig")
        .arg(live::kubeconfig())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Multi-threaded: the receivers answer while the test waits for the contain process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_become_events_on_their_targets_and_webhooks_hear_every_step_even_when_one_is_down() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "notify").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 1).await;
    let pod = contain::cluster::object::name(&pods[0])
        .unwrap()
        .to_string();
    let (json_url, json_bodies) = receiver().await;
    let (slack_url, slack_bodies) = receiver().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let live = Live::new();
    let playbook = playbook_file(PLAYBOOK);
    let out = live
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args([
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            &format!("pod={pod}"),
        ])
        .args([
            "--notify",
            &format!("json={json_url}"),
            "--notify",
            &format!("slack={slack_url}"),
        ])
        .args(["--notify", &format!("json={dead}")])
        .run();
    assert_eq!(
        out.code, 0,
        "a dead webhook never fails the run\n{}\n{}",
        out.stdout, out.stderr
    );
    let run = live.last_run();
    let dead_host = dead.trim_start_matches("http://").trim_end_matches('/');
    let output = format!("{}{}", out.stdout, out.stderr);
    assert!(
        output.contains(&format!("could not notify json webhook {dead_host}")),
        "the failed delivery is said: {output}"
    );

    // The generic webhook: both steps and the run's end, about this run.
    let bodies = json_bodies.lock().unwrap().clone();
    let about: Vec<(String, String, String)> = bodies
        .iter()
        .map(|b| {
            assert_eq!(b["run"], run.as_str(), "{b}");
            assert_eq!(b["user"], "contain-admin");
            (
                b["event"].as_str().unwrap().into(),
                b["step"].as_str().unwrap().into(),
                b["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        about,
        [
            ("step".into(), "mark".into(), "done".into()),
            ("step".into(), "isolate".into(), "done".into()),
            ("run".into(), String::new(), "succeeded".into())
        ],
        "{bodies:?}"
    );
    assert_eq!(bodies[1]["target"], format!("Pod {}/{pod}", ns.name));
    // The Slack-compatible one: a `text` per notice.
    let slack = slack_bodies.lock().unwrap().clone();
    assert_eq!(slack.len(), 3, "{slack:?}");
    assert!(
        slack[0]["text"].as_str().unwrap().contains("step *mark*"),
        "{slack:?}"
    );

    // Journaled: every delivery, the failed ones with their error.
    let export = live.contain().args(["journal", "export", &run]).run();
    let notified: Vec<Value> = export
        .stdout
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["body"].clone())
        .filter(|b| b["record"] == "notified")
        .collect();
    let failed = notified.iter().filter(|b| b["error"].is_string()).count();
    assert_eq!(failed, 3, "the dead webhook, three times: {notified:?}");
    assert!(notified.iter().any(|b| b["channel"]
        == format!("Kubernetes Event on Pod {}/{pod}", ns.name)
        && b["error"].is_null()));

    // The Events, as kubectl shows them.
    let events: Value = serde_json::from_str(&kubectl(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=ContainStepDone",
        "-o",
        "json",
    ]))
    .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "one per step: {events}");
    for item in items {
        assert_eq!(item["involvedObject"]["name"], pod.as_str());
        assert_eq!(item["type"], "Normal");
        assert!(
            item["message"]
                .as_str()
                .unwrap()
                .contains(&format!("contain run {run} step ")),
            "{item}"
        );
    }
    let described = kubectl(&["describe", "pod", "-n", &ns.name, &pod]);
    assert!(
        described.contains("ContainStepDone") && described.contains(&run),
        "kubectl describe shows what happened to the pod:\n{described}"
    );

    // The rollback's end is heard too.
    let rolled = live
        .contain()
        .args([
            "rollback",
            "--yes",
            &run,
            "--notify",
            &format!("json={json_url}"),
        ])
        .run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);
    let last = json_bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["message"].as_str()),
        (Some("run"), Some("rolled back")),
        "{last}"
    );
}
