//! The HTTP receiver inside `contain drill`: `POST /falco`, `POST /alertmanager` and
//! `POST /generic`, each behind a bearer token, feeding one [`Inbox`]; and the pull mode that
//! polls Alertmanager's `/api/v2/alerts` into the same inbox.
//!
//! HTTP/1.1 by hand on a tokio listener: three routes, one request per connection
//! (`Connection: close`), bodies bounded. A full server framework would be most of the binary's
//! dependencies for this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::alerts::{self, Alert, IntakeError};
use super::spec::GenericMapping;

/// The largest body taken (a Falcosidekick batch or an Alertmanager group fits many times).
const MAX_BODY: usize = 1024 * 1024;
const MAX_HEAD: usize = 16 * 1024;

/// Every alert received, deduplicated by fingerprint, in arrival order.
#[derive(Clone, Default)]
pub struct Inbox {
    inner: Arc<Mutex<InboxState>>,
}

#[derive(Default)]
struct InboxState {
    alerts: Vec<Alert>,
    /// Where each `source/fingerprint` sits in `alerts`.
    seen: std::collections::HashMap<String, usize>,
    refused: u64,
}

impl Inbox {
    /// Adds alerts not seen before (by source and fingerprint); returns how many were new. A
    /// known alert delivered again only updates whether it still fires (Alertmanager sends the
    /// resolve of a firing under the same fingerprint).
    pub fn add(&self, alerts: Vec<Alert>) -> usize {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for alert in alerts {
            let key = format!("{}/{}", alert.source, alert.fingerprint);
            match state.seen.get(&key) {
                Some(&at) => state.alerts[at].firing = alert.firing,
                None => {
                    let at = state.alerts.len();
                    state.seen.insert(key, at);
                    state.alerts.push(alert);
                    added += 1;
                }
            }
        }
        added
    }

    /// Forgets every alert (arming looks afresh until the expected alerts are quiet).
    pub fn clear(&self) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.alerts.clear();
        state.seen.clear();
    }

    pub fn snapshot(&self) -> Vec<Alert> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alerts
            .clone()
    }

    /// Requests refused (bad token, bad body): shown in the report, they may be a broken sender.
    pub fn refused(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).refused
    }

    fn count_refused(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
    }
}

/// A running receiver; dropping it stops the listener.
pub struct Receiver {
    pub address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {listen}: {source}")]
pub struct ListenError {
    listen: String,
    source: std::io::Error,
}

/// Starts listening on `listen`; pushes need `Authorization: Bearer <token>`. Without a token
/// every push is refused (an open receiver would let anyone forge a drill's detection).
pub async fn start(
    listen: &str,
    token: Option<String>,
    generic: Option<GenericMapping>,
    inbox: Inbox,
) -> Result<Receiver, ListenError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ListenError {
            listen: listen.to_string(),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ListenError {
        listen: listen.to_string(),
        source,
    })?;
    let routes = Arc::new(Routes {
        token_hash: token.map(|t| Sha256::digest(t.as_bytes()).to_vec()),
        generic,
        inbox,
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), routes.serve(stream)).await;
            });
        }
    });
    Ok(Receiver { address, task })
}

struct Routes {
    /// The token's hash: compared hash to hash, so the comparison takes the same time however
    /// much of a guess is right.
    token_hash: Option<Vec<u8>>,
    generic: Option<GenericMapping>,
    inbox: Inbox,
}

/// A parsed request: method, path, headers (lowercased names), body.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Routes {
    async fn serve(&self, mut stream: TcpStream) {
        let (status, body) = match read_request(&mut stream).await {
            Ok(request) => self.handle(&request),
            Err(status) => (status, "bad request".to_string()),
        };
        if status >= 400 {
            self.inbox.count_refused();
        }
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            _ => "Error",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn handle(&self, request: &Request) -> (u16, String) {
        if request.method != "POST" {
            return (405, "POST only\n".into());
        }
        let route = request.path.split('?').next().unwrap_or("");
        if !matches!(route, "/falco" | "/alertmanager" | "/generic") {
            return (404, "routes: /falco /alertmanager /generic\n".into());
        }
        let presented = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|t| Sha256::digest(t.trim().as_bytes()).to_vec());
        match (&self.token_hash, presented) {
            (Some(expected), Some(given)) if *expected == given => {}
            _ => return (401, "a valid bearer token is required\n".into()),
        }
        let now = Timestamp::now();
        let parsed = alerts::parse_json(&request.body).and_then(|body| match route {
            "/falco" => alerts::from_falco(&body, now),
            "/alertmanager" => alerts::from_alertmanager_webhook(&body, now),
            _ => match &self.generic {
                Some(mapping) => alerts::from_generic(&body, mapping, now),
                None => Err(IntakeError::Shape {
                    shape: "generic",
                    problem: "the drill file has no receiver.generic mapping".into(),
                }),
            },
        });
        match parsed {
            Ok(alerts) => {
                let added = self.inbox.add(alerts);
                (200, format!("{added} new\n"))
            }
            Err(e) => (400, format!("{e}\n")),
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let mut buffer = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(413);
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if read == 0 {
            return Err(400);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| 400u16)?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: buffer[head_end + 4..].to_vec(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        // Senders here (Alertmanager, Falco, Falcosidekick) send Content-Length.
        return Err(400);
    }
    let length: usize = request
        .header("content-length")
        .map(|l| l.parse().map_err(|_| 400u16))
        .transpose()?
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(413);
    }
    while request.body.len() < length {
        let mut chunk = vec![0u8; (length - request.body.len()).min(64 * 1024)];
        let read = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if read == 0 {
            return Err(400);
        }
        request.body.extend_from_slice(&chunk[..read]);
    }
    request.body.truncate(length);
    Ok(request)
}

/// Polls Alertmanager's `GET /api/v2/alerts` (pull mode).
pub struct AlertmanagerClient {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

impl AlertmanagerClient {
    pub fn new(base: &str) -> Self {
        AlertmanagerClient {
            base: base.trim_end_matches('/').to_string(),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    /// Every alert Alertmanager holds now (active, silenced or inhibited, not resolved).
    pub async fn alerts(&self) -> Result<Vec<Alert>, String> {
        use http_body_util::BodyExt;
        let url = format!("{}/api/v2/alerts", self.base);
        let request = http::Request::get(&url)
            .header("accept", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer in 10 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        alerts::from_alertmanager_api(&value, Timestamp::now()).map_err(|e| format!("{url}: {e}"))
    }
}

#[cfg(test)]
mod tests;
