//! The HTTP receiver inside `contain drill`: `POST /falco`, `POST /alertmanager` and
//! `POST /generic`, each behind a bearer token, feeding one [`Inbox`]; and the pull mode that
//! polls Alertmanager's `/api/v2/alerts` into the same inbox.
//!
//! HTTP/1.1 on hyper's server (a network-facing parser is not one to write by hand): three
//! routes, one request per connection, the token checked before a body is read, bodies bounded
//! (a declared length over the bound is refused at once, 413), ten seconds per connection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::alerts::{self, Alert, IntakeError};
use super::spec::GenericMapping;

/// The largest body taken (a Falcosidekick batch or an Alertmanager group fits many times).
const MAX_BODY: usize = 1024 * 1024;
/// What hyper buffers of one connection at most (the request head must fit).
const MAX_BUFFER: usize = 64 * 1024;

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
                let inbox = routes.inbox.clone();
                let service = hyper::service::service_fn(move |request| {
                    let routes = routes.clone();
                    async move { Ok::<_, Infallible>(routes.serve(request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .max_buf_size(MAX_BUFFER)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A request hyper could not parse was answered 400 by hyper: refused too.
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), connection).await
                    && e.is_parse()
                {
                    inbox.count_refused();
                }
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

impl Routes {
    async fn serve(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = self.answer(request).await;
        if status >= 400 {
            self.inbox.count_refused();
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        response
    }

    async fn answer(&self, request: Request<Incoming>) -> (u16, String) {
        if request.method() != Method::POST {
            return (405, "POST only\n".into());
        }
        let route = request.uri().path().to_string();
        if !matches!(route.as_str(), "/falco" | "/alertmanager" | "/generic") {
            return (404, "routes: /falco /alertmanager /generic\n".into());
        }
        let presented = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|t| Sha256::digest(t.trim().as_bytes()).to_vec());
        match (&self.token_hash, presented) {
            (Some(expected), Some(given)) if *expected == given => {}
            _ => return (401, "a valid bearer token is required\n".into()),
        }
        let declared = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY) {
            return (413, format!("bodies are taken up to {MAX_BODY} bytes\n"));
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return (413, format!("bodies are taken up to {MAX_BODY} bytes\n"));
            }
            Err(_) => return (400, "the body could not be read\n".into()),
        };
        self.handle(&route, &body)
    }

    fn handle(&self, route: &str, body: &[u8]) -> (u16, String) {
        let now = Timestamp::now();
        let parsed = alerts::parse_json(body).and_then(|body| match route {
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
