//! The receiver over real TCP: bearer token, routes, bodies, dedupe.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

async fn post(address: std::net::SocketAddr, path: &str, token: Option<&str>, body: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: Alertmanager/0.35.0\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/alerts/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn pushes_need_the_token_and_a_known_shape_and_dedupe_by_fingerprint() {
    let inbox = Inbox::default();
    let receiver = start("127.0.0.1:0", Some("s3cret".into()), None, inbox.clone())
        .await
        .unwrap();
    let address = receiver.address;
    let webhook = fixture("alertmanager-webhook.json");
    assert_eq!(post(address, "/alertmanager", None, &webhook).await, 401);
    assert_eq!(
        post(address, "/alertmanager", Some("wrong"), &webhook).await,
        401
    );
    assert_eq!(inbox.snapshot().len(), 0, "nothing taken without the token");
    assert_eq!(
        post(address, "/alertmanager", Some("s3cret"), &webhook).await,
        200
    );
    assert_eq!(
        post(address, "/alertmanager", Some("s3cret"), &webhook).await,
        200
    );
    assert_eq!(
        inbox.snapshot().len(),
        2,
        "the repeat delivery is deduplicated"
    );
    assert_eq!(
        post(
            address,
            "/falco",
            Some("s3cret"),
            &fixture("falco-syscall.json")
        )
        .await,
        200
    );
    assert_eq!(
        post(
            address,
            "/falco",
            Some("s3cret"),
            &fixture("falcosidekick-k8saudit.json")
        )
        .await,
        200
    );
    assert_eq!(inbox.snapshot().len(), 4);
    assert_eq!(
        post(address, "/falco", Some("s3cret"), "{\"output\": 1}").await,
        400
    );
    assert_eq!(
        post(address, "/generic", Some("s3cret"), "{}").await,
        400,
        "no mapping in the drill"
    );
    assert_eq!(post(address, "/other", Some("s3cret"), "{}").await, 404);
    assert_eq!(
        inbox.refused(),
        5,
        "two without a token, two bad bodies, one unknown route"
    );
}

#[tokio::test]
async fn without_a_token_every_push_is_refused() {
    let inbox = Inbox::default();
    let receiver = start("127.0.0.1:0", None, None, inbox.clone())
        .await
        .unwrap();
    let webhook = fixture("alertmanager-webhook.json");
    assert_eq!(
        post(receiver.address, "/alertmanager", Some(""), &webhook).await,
        401
    );
    assert!(inbox.snapshot().is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let inbox = Inbox::default();
    let receiver = start("127.0.0.1:0", Some("t".into()), None, inbox.clone())
        .await
        .unwrap();
    let mut stream = TcpStream::connect(receiver.address).await.unwrap();
    let head = format!(
        "POST /falco HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_chunked_body_past_the_bound_is_refused_and_a_bad_request_counted() {
    let inbox = Inbox::default();
    let receiver = start("127.0.0.1:0", Some("t".into()), None, inbox.clone())
        .await
        .unwrap();
    let mut stream = TcpStream::connect(receiver.address).await.unwrap();
    let head =
        "POST /falco HTTP/1.1\r\nAuthorization: Bearer t\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // One chunk just over the bound: no length was declared, so it is cut while it is read.
    let chunk = vec![b' '; MAX_BODY + 1];
    stream
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await
        .unwrap();
    let _ = stream.write_all(&chunk).await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let garbage = post_raw(receiver.address, "NOT HTTP AT ALL\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert_eq!(
        inbox.refused(),
        2,
        "the oversized push and the garbage are counted"
    );
    assert!(inbox.snapshot().is_empty());
}

async fn post_raw(address: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

#[test]
fn a_resolve_under_a_known_fingerprint_updates_the_alert_instead_of_adding_one() {
    let inbox = Inbox::default();
    let body: Value = serde_json::from_str(&fixture("alertmanager-webhook.json")).unwrap();
    let now = Timestamp::now();
    let mut alerts = alerts::from_alertmanager_webhook(&body, now).unwrap();
    assert_eq!(inbox.add(alerts.clone()), 2);
    assert!(inbox.snapshot()[0].firing);
    alerts[0].firing = false;
    assert_eq!(inbox.add(alerts), 0, "nothing new");
    assert!(!inbox.snapshot()[0].firing, "the resolve is taken");
}
