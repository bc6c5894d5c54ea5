//! A small OCI distribution client: manifests, blobs (checked against their digest), uploads,
//! and the registries' token and basic authentication, with credentials from Docker's
//! `config.json`. Plain HTTP is used only for registries on this machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use super::reference::ImageRef;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Media types of image manifests, as registries want them in `Accept`.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests and signature payloads are small; nothing larger is read into memory.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} is unreachable: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} answered {code} for {path}: {message}")]
    Status {
        registry: String,
        code: u16,
        path: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("registry credentials: {0}")]
    Config(String),
}

/// A registry answer.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A client for the registries an image lives in.
pub struct Registry {
    http: HttpClient,
    credentials: HashMap<String, (String, String)>,
    tokens: Mutex<HashMap<String, String>>,
    timeout: Duration,
}

/// Docker's config.json: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(|dir| PathBuf::from(dir).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        })
}

fn read_credentials(path: &Path) -> Result<HashMap<String, (String, String)>, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))?;
    let mut credentials = HashMap::new();
    for (host, entry) in config
        .get("auths")
        .and_then(|a| a.as_object())
        .into_iter()
        .flatten()
    {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let pair = match entry.get("auth").and_then(|a| a.as_str()) {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|text| {
                    text.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                }),
            None => match (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => None,
            },
        };
        if let Some(pair) = pair {
            credentials.insert(host, pair);
        }
    }
    Ok(credentials)
}

impl Registry {
    /// A client with credentials from `docker_config` (or the default file, when it exists).
    pub fn new(docker_config: Option<&Path>) -> Result<Self, RegistryError> {
        let credentials = match docker_config
            .map(Path::to_path_buf)
            .or_else(default_docker_config)
        {
            Some(path) if path.exists() || docker_config.is_some() => read_credentials(&path)?,
            _ => HashMap::new(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| RegistryError::Config(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Registry {
            http: Client::builder(TokioExecutor::new()).build(https),
            credentials,
            tokens: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(30),
        })
    }

    fn base(&self, image: &ImageRef) -> String {
        let scheme = if image.is_loopback() { "http" } else { "https" };
        format!("{scheme}://{}", image.registry)
    }

    /// Sends a request, answering a bearer or basic authentication challenge once.
    async fn send(
        &self,
        image: &ImageRef,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        push: bool,
    ) -> Result<Response, RegistryError> {
        let scope = format!(
            "repository:{}:{}",
            image.repository,
            if push { "pull,push" } else { "pull" }
        );
        let mut authorization = self
            .tokens
            .lock()
            .expect("token lock")
            .get(&scope)
            .map(|t| format!("Bearer {t}"));
        for attempt in 0..2 {
            let response = self
                .raw(
                    image,
                    method.clone(),
                    url,
                    headers,
                    body.clone(),
                    authorization.as_deref(),
                )
                .await?;
            if response.status != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            authorization = Some(self.authenticate(image, &challenge, &scope).await?);
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn raw(
        &self,
        image: &ImageRef,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            registry: image.registry.clone(),
            message,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", concat!("contain/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, authorization);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RegistryError::Invalid(format!("{url}: {e}")))?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(self.timeout, Limited::new(body, MAX_BODY).collect())
            .await
            .map_err(|_| unreachable("the answer stalled".into()))?
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn authenticate(
        &self,
        image: &ImageRef,
        challenge: &str,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let basic = self
            .credentials
            .get(&image.registry)
            .map(|(user, password)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            });
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return basic.ok_or_else(|| RegistryError::Status {
                registry: image.registry.clone(),
                code: 401,
                path: String::new(),
                message: "authentication required and no credentials for this registry in the Docker config".into(),
            });
        };
        let field = |name: &str| {
            params.split(',').find_map(|part| {
                let (key, value) = part.trim().split_once('=')?;
                (key == name).then(|| value.trim_matches('"').to_string())
            })
        };
        let realm = field("realm").ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{}: a bearer challenge without a realm",
                image.registry
            ))
        })?;
        let mut url = format!("{realm}?scope={scope}");
        if let Some(service) = field("service") {
            url.push_str(&format!("&service={service}"));
        }
        let answer = self
            .raw(image, Method::GET, &url, &[], Vec::new(), basic.as_deref())
            .await?;
        if !answer.status.is_success() {
            return Err(RegistryError::Status {
                registry: image.registry.clone(),
                code: answer.status.as_u16(),
                path: realm,
                message: "token request refused".into(),
            });
        }
        let token: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| RegistryError::Invalid(format!("token answer: {e}")))?;
        let token = token
            .get("token")
            .or_else(|| token.get("access_token"))
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        self.tokens
            .lock()
            .expect("token lock")
            .insert(scope.to_string(), token.clone());
        Ok(format!("Bearer {token}"))
    }

    fn status_error(image: &ImageRef, path: &str, response: &Response) -> RegistryError {
        let message = String::from_utf8_lossy(&response.body)
            .chars()
            .take(300)
            .collect::<String>();
        RegistryError::Status {
            registry: image.registry.clone(),
            code: response.status.as_u16(),
            path: path.to_string(),
            message,
        }
    }

    /// A manifest by tag or digest: its bytes and digest, or `None` when there is none.
    pub async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
    ) -> Result<Option<(Bytes, String)>, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let url = format!("{}{path}", self.base(image));
        let response = self
            .send(
                image,
                Method::GET,
                &url,
                &[("accept", MANIFEST_TYPES.to_string())],
                Vec::new(),
                false,
            )
            .await?;
        match response.status {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
                if reference.starts_with("sha256:") && reference != digest {
                    return Err(RegistryError::Invalid(format!(
                        "{image}: the registry sent a manifest whose digest is {digest}, not {reference}"
                    )));
                }
                Ok(Some((response.body, digest)))
            }
            _ => Err(Self::status_error(image, &path, &response)),
        }
    }

    /// The digest a reference names now (a tag is resolved; a digest is checked to exist).
    pub async fn resolve(&self, image: &ImageRef) -> Result<String, RegistryError> {
        match self.manifest(image, image.reference()).await? {
            Some((_, digest)) => Ok(digest),
            None => Err(RegistryError::Invalid(format!(
                "{image} does not exist in the registry"
            ))),
        }
    }

    /// A blob, checked against its digest.
    pub async fn blob(&self, image: &ImageRef, digest: &str) -> Result<Bytes, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", image.repository);
        let mut url = format!("{}{path}", self.base(image));
        for _ in 0..4 {
            let response = self
                .send(image, Method::GET, &url, &[], Vec::new(), false)
                .await?;
            if response.status.is_redirection() {
                url = response
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                continue;
            }
            if !response.status.is_success() {
                return Err(Self::status_error(image, &path, &response));
            }
            let actual = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
            if actual != digest {
                return Err(RegistryError::Invalid(format!(
                    "{image}: blob {digest} has the content of {actual}"
                )));
            }
            return Ok(response.body);
        }
        Err(RegistryError::Invalid(format!(
            "{image}: too many redirects for blob {digest}"
        )))
    }

    /// Uploads a blob (monolithic upload) and returns its digest.
    pub async fn push_blob(&self, image: &ImageRef, data: &[u8]) -> Result<String, RegistryError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let path = format!("/v2/{}/blobs/uploads/", image.repository);
        let start = self
            .send(
                image,
                Method::POST,
                &format!("{}{path}", self.base(image)),
                &[],
                Vec::new(),
                true,
            )
            .await?;
        if start.status != StatusCode::ACCEPTED {
            return Err(Self::status_error(image, &path, &start));
        }
        let location = start
            .headers
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        let location = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{}{location}", self.base(image))
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let headers = [("content-type", "application/octet-stream".to_string())];
        let put = self
            .send(image, Method::PUT, &url, &headers, data.to_vec(), true)
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(Self::status_error(image, &path, &put));
        }
        Ok(digest)
    }

    /// Uploads a manifest under a tag (or digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let headers = [("content-type", media_type.to_string())];
        let put = self
            .send(
                image,
                Method::PUT,
                &format!("{}{path}", self.base(image)),
                &headers,
                data.to_vec(),
                true,
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(Self::status_error(image, &path, &put));
        }
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }
}

/// An error with its causes, since hyper's own message ("client error (Connect)") hides them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
