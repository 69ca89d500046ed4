//! HTTP mode: HTTP/1.1 and HTTP/2 from clients (ALPN), each request
//! authorized against the current policy, then forwarded over pooled
//! HTTP/1.1 connections with the verified identity in XFCC.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use symbolon_core::{RequestFacts, normalize_path};
use symbolon_tls::{Activity, NoRequest, Slot, Tracked};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::identity::xfcc;
use super::server::{ConnContext, Shared};

pub type Body = BoxBody<Bytes, hyper::Error>;

const XFCC: &str = "x-forwarded-client-cert";

/// Pooled plain-HTTP connections to the upstream.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    addr: SocketAddr,
}

impl Upstream {
    pub fn new(addr: SocketAddr) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(connector);
        Upstream { client, addr }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub async fn serve_connection(
    stream: TlsStream<TcpStream>,
    ctx: ConnContext,
    shared: Arc<Shared>,
    slot: Slot,
) {
    let header_timeout = shared.settings.header_timeout;
    let ctx = Arc::new(ctx);
    let svc_ctx = ctx.clone();
    let activity = Activity::new(slot);
    let svc_activity = activity.clone();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        let shared = svc_shared.clone();
        let busy = svc_activity.busy();
        async move {
            // Taken while idle, just as this request arrived: the
            // connection is closing; the client may retry elsewhere.
            let Ok(busy) = busy else {
                return Ok(json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"reason": "evicted", "detail": "the gateway gave this idle connection's slot to a newer one; retry"}),
                ));
            };
            let resp = handle(req, &ctx, &shared).await;
            Ok::<_, Infallible>(resp.map(|b| BoxBody::new(Tracked::new(b, busy))))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper never times out headers: a client could hold a
    // slot forever by trickling them, or by idling between requests.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // hyper's header timeout does not cover the bytes it reads to tell
    // HTTP/1 from HTTP/2: bound the wait for those here.
    let stream = tokio::select! {
        first = symbolon_tls::first_bytes(stream, header_timeout) => match first {
            Ok(s) => s,
            Err(NoRequest::Silent(d)) => {
                tracing::info!(remote = %ctx.remote, reason = "header_timeout", "connection closed: no request within {d:?} of the handshake (server.header_timeout)");
                return;
            }
            Err(NoRequest::Closed(e)) => {
                tracing::debug!(remote = %ctx.remote, "connection closed before its first request: {e:?}");
                return;
            }
        },
        why = ctx.must_close() => {
            tracing::info!(remote = %ctx.remote, "connection closed: {why}");
            return;
        }
        _ = activity.evicted() => {
            super::server::evicted(&shared, ctx.remote, "idle");
            return;
        }
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        why = ctx.must_close() => {
            tracing::info!(remote = %ctx.remote, "connection closed: {why}");
        }
        _ = activity.evicted() => {
            super::server::evicted(&shared, ctx.remote, "idle");
        }
        // HTTP/2 has no idle timeout of its own in hyper (see `Activity`).
        _ = activity.idle_for(header_timeout) => {
            tracing::info!(remote = %ctx.remote, reason = "header_timeout", "connection closed: no request for {header_timeout:?} (server.header_timeout)");
        }
    }
}

fn peer_fields(ctx: &ConnContext) -> String {
    match &ctx.peer {
        Some(p) => format!(
            "subject={:?} serial={} issuer={:?} not_after={} spiffe_id={}",
            p.subject,
            p.serial,
            p.issuer,
            symbolon_pki::rfc3339(p.not_after),
            p.spiffe_id.as_deref().unwrap_or("-")
        ),
        None => "unauthenticated".to_string(),
    }
}

async fn handle(req: Request<Incoming>, ctx: &ConnContext, shared: &Shared) -> Response<Body> {
    let resp = authorize_and_forward(req, ctx, shared).await;
    shared.metrics.inc(
        "symbolon_gateway_requests_total",
        &[("status", resp.status().as_str())],
    );
    resp
}

async fn authorize_and_forward(
    mut req: Request<Incoming>,
    ctx: &ConnContext,
    shared: &Shared,
) -> Response<Body> {
    let path = match normalize_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(reason = "malformed", remote = %ctx.remote, "request refused: {e} ({:?})", req.uri().path());
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"reason": "malformed", "detail": e.to_string()}),
            );
        }
    };
    let method = req.method().as_str().to_string();
    let live = shared.live.borrow().clone();
    let decision = live.policy.evaluate(&RequestFacts {
        peer: ctx.peer.as_ref(),
        path: Some(&path),
        method: Some(&method),
        now: time::OffsetDateTime::now_utc(),
    });
    if let Some(rule) = decision.would_deny() {
        shared.metrics.inc(
            "symbolon_gateway_policy_decisions_total",
            &[("rule", rule), ("effect", "audit_deny")],
        );
        tracing::info!(reason = "policy_denied", mode = "audit", rule, remote = %ctx.remote, "{method} {path} would be denied (audit rule, allowed) [{}]", peer_fields(ctx));
    }
    if let Some(t) = &shared.telemetry {
        let who = super::telemetry::client_name(ctx.peer.as_ref());
        if decision.is_allowed() {
            t.allowed(&who);
        } else {
            t.denied(&who, decision.rule_label());
        }
    }
    if !decision.is_allowed() {
        shared.metrics.inc(
            "symbolon_gateway_policy_decisions_total",
            &[("rule", decision.rule_label()), ("effect", "deny")],
        );
        tracing::warn!(reason = "policy_denied", rule = decision.rule_label(), remote = %ctx.remote, "{method} {path} denied [{}]", peer_fields(ctx));
        return json_response(
            StatusCode::FORBIDDEN,
            serde_json::json!({"reason": "policy_denied", "rule": decision.rule_label()}),
        );
    }
    if decision.would_deny().is_none() {
        shared.metrics.inc(
            "symbolon_gateway_policy_decisions_total",
            &[("rule", decision.rule_label()), ("effect", "allow")],
        );
    }

    // Rewrite for the upstream: the normalised path (what policy checked),
    // no hop-by-hop headers, no client-supplied XFCC, our XFCC.
    let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| {
        req.headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let uri = match format!("http://{}{pq}", shared.upstream.addr).parse::<http::Uri>() {
        Ok(u) => u,
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"reason": "malformed", "detail": "request target"}),
            );
        }
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    headers.remove(XFCC);
    if !headers.contains_key(HOST)
        && let Some(a) = authority.and_then(|a| HeaderValue::from_str(&a).ok())
    {
        headers.insert(HOST, a);
    }
    if let Some(peer) = &ctx.peer {
        // A subject with a control character cannot go in a header. The
        // request is refused rather than forwarded without the identity:
        // the backend would take it for an anonymous one.
        let Ok(v) = HeaderValue::from_str(&xfcc(live.by.as_deref(), peer)) else {
            tracing::warn!(
                reason = "malformed",
                remote = %ctx.remote,
                serial = %peer.serial,
                "request refused: the client certificate's identity cannot be written into x-forwarded-client-cert (a control character in its subject?)"
            );
            return json_response(
                StatusCode::FORBIDDEN,
                serde_json::json!({"reason": "malformed", "detail": "client certificate identity not representable in x-forwarded-client-cert"}),
            );
        };
        headers.insert(HeaderName::from_static(XFCC), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    if let Ok(v) = HeaderValue::from_str(&ctx.remote.ip().to_string()) {
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }

    let req = req.map(|b| b.boxed());
    match shared.upstream.client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            shared
                .metrics
                .inc("symbolon_gateway_upstream_errors_total", &[]);
            tracing::error!(reason = "upstream_unavailable", upstream = %shared.upstream.addr, "upstream request failed: {e}");
            json_response(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"reason": "upstream_unavailable"}),
            )
        }
    }
}

/// RFC 9110 §7.6.1: connection-specific headers are not forwarded, nor any
/// header the Connection header names.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(h);
    }
}
