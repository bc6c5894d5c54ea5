//! Webhook notifications: a POST of a JSON body rendered from a handlebars template, generic
//! (`notify.json.hbs`) or Slack-compatible (`notify.slack.hbs`, an incoming webhook's `text`).
//! Bounded to a few seconds; the body must parse as JSON before it is sent, so a broken
//! template is reported, never posted.

use std::path::Path;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::escape::escape_json;
use crate::report::templates::{render, template};

const JSON: &str = include_str!("templates/notify.json.hbs");
const SLACK: &str = include_str!("templates/notify.slack.hbs");

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The body's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Json,
    Slack,
}

/// One webhook: `json=URL` or `slack=URL` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub flavor: Flavor,
    pub url: String,
}

impl std::str::FromStr for Webhook {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (flavor, url) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected json=URL or slack=URL"))?;
        let flavor = match flavor {
            "json" => Flavor::Json,
            "slack" => Flavor::Slack,
            other => return Err(format!("`{other}`: the formats are json and slack")),
        };
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!("`{url}`: an http:// or https:// URL is needed"));
        }
        Ok(Webhook {
            flavor,
            url: url.to_string(),
        })
    }
}

/// Slack's mrkdwn wants `&`, `<` and `>` escaped (they start links and mentions), then the text
/// goes inside a JSON string.
fn escape_slack(text: &str) -> String {
    escape_json(
        &text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

impl Webhook {
    /// `slack webhook https://host/…` without the path (which often holds a secret).
    pub fn describe(&self) -> String {
        let host = self
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(ToString::to_string))
            .unwrap_or_default();
        let flavor = match self.flavor {
            Flavor::Json => "json",
            Flavor::Slack => "slack",
        };
        format!("{flavor} webhook {host}")
    }

    /// The body for `view`, checked to be JSON.
    pub fn body(&self, view: &Value, templates: Option<&Path>) -> Result<String, String> {
        let (file, shipped, escape): (&str, &'static str, fn(&str) -> String) = match self.flavor {
            Flavor::Json => ("notify.json.hbs", JSON, escape_json),
            Flavor::Slack => ("notify.slack.hbs", SLACK, escape_slack),
        };
        let text = template(templates, file, shipped)?;
        let body = render(escape, file, &text, view)?;
        serde_json::from_str::<Value>(&body)
            .map_err(|e| format!("template {file} does not render JSON: {e}"))?;
        Ok(body)
    }

    /// Posts the notice with `client`; an error says why it was not delivered.
    pub async fn deliver(
        &self,
        client: &HttpClient,
        view: &Value,
        templates: Option<&Path>,
    ) -> Result<(), String> {
        let body = self.body(view, templates)?;
        let request = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("contain/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(DELIVERY_TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("no answer in {} s", DELIVERY_TIMEOUT.as_secs()))?
            .map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// The HTTP(S) client every webhook of a run shares.
pub type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Builds it once per run: the system's TLS roots are read here, not at every delivery.
pub fn client() -> Result<HttpClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(message: &str) -> Value {
        json!({"event": "step", "run": "r1", "playbook": "p", "cluster": "https://c", "user": "u",
               "step": "isolate", "action": "network.isolate", "target": "Pod shop/web",
               "status": "done", "message": message, "at": "t"})
    }

    #[test]
    fn hostile_text_stays_inside_its_json_string_in_both_flavors() {
        let hostile = "\"}, \"evil\": true, {\"<@channel> & \u{1b}[31m";
        for flavor in [Flavor::Json, Flavor::Slack] {
            let hook = Webhook {
                flavor,
                url: "http://127.0.0.1:1/x".into(),
            };
            let body: Value =
                serde_json::from_str(&hook.body(&view(hostile), None).unwrap()).unwrap();
            assert!(body.get("evil").is_none(), "{body}");
            let text = body
                .get("message")
                .or(body.get("text"))
                .unwrap()
                .as_str()
                .unwrap();
            assert!(!text.contains('\u{1b}'), "{text}");
            if flavor == Flavor::Slack {
                assert!(text.contains("&lt;@channel&gt; &amp;"), "{text}");
            }
        }
    }

    #[test]
    fn a_webhook_is_a_format_and_an_http_url() {
        assert_eq!(
            "slack=https://hooks.example/T/B/x"
                .parse::<Webhook>()
                .unwrap()
                .flavor,
            Flavor::Slack
        );
        assert!("teams=https://x".parse::<Webhook>().is_err());
        assert!("json=ftp://x".parse::<Webhook>().is_err());
        assert!("https://x".parse::<Webhook>().is_err());
        let hook: Webhook = "json=https://hooks.example/secret-token".parse().unwrap();
        assert_eq!(hook.describe(), "json webhook hooks.example");
    }
}
