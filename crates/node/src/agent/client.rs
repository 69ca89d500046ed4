//! A small HTTPS client for the CA's API: one request per connection,
//! the CA authenticated by a pinned root or `ca.pem`, optionally mTLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use symbolon_tls::CaAnchor;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A CA endpoint: `https://host:port` (path prefix ignored).
#[derive(Clone, Debug)]
pub struct CaUrl {
    pub host: String,
    pub port: u16,
}

impl CaUrl {
    pub fn parse(url: &str) -> Result<CaUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("--ca {url:?}: must start with https://"))?;
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse().map_err(|_| format!("--ca {url:?}: bad port"))?,
            ),
            _ => (authority.to_string(), 443),
        };
        if host.is_empty() {
            return Err(format!("--ca {url:?}: no host"));
        }
        Ok(CaUrl { host, port })
    }
}

/// What went wrong talking to the CA.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The CA could not be reached or the TLS handshake failed.
    #[error("cannot reach the CA at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The CA answered with a refusal.
    #[error("the CA refused ({status}): {reason}: {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
    },
}

impl CallError {
    /// Refusals are final for this request; an unreachable CA may come back.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Unreachable { .. })
            || matches!(self, CallError::Refused { status, .. } if *status >= 500)
    }
}

/// Sends one request to the CA over a fresh TLS connection and returns the
/// response, or `Refused` for a 4xx/5xx (with the CA's JSON reason when
/// there is one). The whole exchange is bounded by `limit`.
async fn request(
    ca: &CaUrl,
    anchor: CaAnchor,
    client_cert: Option<Arc<CertifiedKey>>,
    req: hyper::Request<Full<Bytes>>,
    limit: Duration,
) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
    let url = format!("https://{}:{}", ca.host, ca.port);
    let unreachable = |detail: String| CallError::Unreachable {
        url: url.clone(),
        detail,
    };
    let config = symbolon_tls::ca_client_config(anchor, &ca.host, client_cert)
        .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(ca.host.clone()).map_err(|e| unreachable(e.to_string()))?;
    let work = async {
        let tcp = TcpStream::connect((ca.host.as_str(), ca.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))
    };
    let resp = tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(unreachable(format!("no answer within {limit:?}"))))?;
    let status = resp.status().as_u16();
    if status >= 400 {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        return Err(CallError::Refused {
            status,
            reason: json["reason"].as_str().unwrap_or("http").to_string(),
            message: json["message"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(resp)
}

fn build(
    ca: &CaUrl,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, CallError> {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("{}:{}", ca.host, ca.port));
    if let Some(ct) = content_type {
        b = b.header(hyper::header::CONTENT_TYPE, ct);
    }
    b.body(Full::new(body)).map_err(|e| CallError::Unreachable {
        url: format!("https://{}:{}", ca.host, ca.port),
        detail: e.to_string(),
    })
}

async fn body_bytes(
    ca: &CaUrl,
    resp: hyper::Response<hyper::body::Incoming>,
    limit: Duration,
) -> Result<Bytes, CallError> {
    let unreachable = |detail: String| CallError::Unreachable {
        url: format!("https://{}:{}", ca.host, ca.port),
        detail,
    };
    tokio::time::timeout(limit, resp.into_body().collect())
        .await
        .map_err(|_| unreachable(format!("body not received within {limit:?}")))?
        .map(|b| b.to_bytes())
        .map_err(|e| unreachable(e.to_string()))
}

/// POSTs JSON to `path` and returns the JSON answer.
pub async fn post_json(
    ca: &CaUrl,
    anchor: CaAnchor,
    client_cert: Option<Arc<CertifiedKey>>,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, CallError> {
    let req = build(
        ca,
        hyper::Method::POST,
        path,
        Some("application/json"),
        Bytes::from(body.to_string()),
    )?;
    let resp = request(ca, anchor, client_cert, req, Duration::from_secs(30)).await?;
    let bytes = body_bytes(ca, resp, Duration::from_secs(30)).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// Opens `GET path` and returns the response body as a stream of frames,
/// for long-lived responses (the revocation feed).
pub async fn get_stream(
    ca: &CaUrl,
    anchor: CaAnchor,
    path: &str,
) -> Result<hyper::body::Incoming, CallError> {
    let req = build(ca, hyper::Method::GET, path, None, Bytes::new())?;
    Ok(request(ca, anchor, None, req, Duration::from_secs(10))
        .await?
        .into_body())
}

/// GETs `path` and returns the whole body.
pub async fn get_bytes(ca: &CaUrl, anchor: CaAnchor, path: &str) -> Result<Bytes, CallError> {
    let req = build(ca, hyper::Method::GET, path, None, Bytes::new())?;
    let resp = request(ca, anchor, None, req, Duration::from_secs(10)).await?;
    body_bytes(ca, resp, Duration::from_secs(30)).await
}

/// POSTs raw bytes (e.g. an OCSP request) and returns the body.
pub async fn post_bytes(
    ca: &CaUrl,
    anchor: CaAnchor,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Bytes, CallError> {
    let req = build(
        ca,
        hyper::Method::POST,
        path,
        Some(content_type),
        Bytes::from(body),
    )?;
    let resp = request(ca, anchor, None, req, Duration::from_secs(15)).await?;
    body_bytes(ca, resp, Duration::from_secs(15)).await
}
