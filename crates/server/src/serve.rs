//! `ca serve`: HTTPS with a certificate the CA issues for itself, client
//! certificates requested (required by the endpoints that need them), the
//! API router, and background CRL refresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use symbolon_core::{Identity, Metrics};
use symbolon_pki::{LeafSpec, Profile};
use symbolon_store::CrlRecord;
use symbolon_tls::{
    Activity, Admission, Admit, ClientAuthMode, Evicted, NoRequest, ServerTls, SessionState,
    Tracked, TrustBundle,
};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, ApiError, AppState, Peer, Remote};
use crate::{Authority, IssueError};

/// Every CA metric, as rendered at /metrics.
pub const METRICS: symbolon_core::MetricHelp = &[
    (
        "symbolon_ca_certificates_issued_total",
        "counter",
        "Issuance attempts by operation (enroll, renew) and outcome (issued or the refusal reason).",
    ),
    (
        "symbolon_ca_revocations_total",
        "counter",
        "Revocations by reason.",
    ),
    (
        "symbolon_ca_token_refusals_total",
        "counter",
        "Refused enrollment tokens by reason.",
    ),
    (
        "symbolon_ca_crl_number",
        "gauge",
        "Number of the current CRL.",
    ),
    (
        "symbolon_ca_crl_age_seconds",
        "gauge",
        "Seconds since the current CRL's thisUpdate.",
    ),
    (
        "symbolon_ca_requests_total",
        "counter",
        "API requests by path and status.",
    ),
    (
        "symbolon_ca_request_duration_seconds",
        "histogram",
        "API request latency.",
    ),
    (
        "symbolon_ca_connections_refused_total",
        "counter",
        "Connections closed before serving them, by reason (max_connections, evicted, handshake_timeout, header_timeout).",
    ),
];

/// The endpoint a path belongs to, as a metric label: a fixed set, so
/// clients cannot create label values.
fn endpoint_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/v1/enroll",
        "/v1/renew",
        "/v1/revoke",
        "/v1/tokens",
        "/v1/crl",
        "/v1/revocations/feed",
        "/v1/roots",
        "/v1/certificates",
        "/v1/openapi.json",
        "/metrics",
    ];
    if path == "/v1/ocsp" || path.starts_with("/v1/ocsp/") {
        return "/v1/ocsp";
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return "/ui";
    }
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == path)
        .unwrap_or("other")
}

#[derive(Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Host names and addresses the CA's own certificate is issued for.
    pub names: Vec<Identity>,
    pub limits: Limits,
}

/// What one client may hold of the CA: without these, connections that
/// never finish a handshake, never finish their headers, or trickle a body
/// would each keep a socket and a task forever.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once. When all are taken, a newcomer takes
    /// the slot of the oldest still in its handshake, else of the one idle
    /// longest; only when every one has a request in flight is it closed.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// To send a request's headers; also the longest an idle HTTP/1.1
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// From the end of the headers to the response, body upload included.
    pub request_timeout: Duration,
}

pub fn note_crl(metrics: &Metrics, crl: &CrlRecord) {
    metrics.gauge_set("symbolon_ca_crl_number", &[], crl.number as f64);
}

/// Publishes a new CRL when none exists or two thirds of the latest one's
/// validity have passed (so relying parties never hold an expired one).
/// Reads only the CRL's dates, not its (possibly large) DER.
pub async fn ensure_fresh_crl(state: &AppState) -> Result<Option<CrlRecord>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let info = state
        .auth
        .store
        .latest_crl_info()
        .await
        .map_err(IssueError::from)?;
    match info {
        Some((_, this, next)) if now < this + (next - this) * 2 / 3 => Ok(None),
        _ => {
            let c = state.auth.publish_crl(None).await?;
            note_crl(&state.metrics, &c);
            Ok(Some(c))
        }
    }
}

/// The latest CRL, fresh (see [`ensure_fresh_crl`]).
pub async fn fresh_crl(state: &AppState) -> Result<CrlRecord, ApiError> {
    if let Some(c) = ensure_fresh_crl(state).await? {
        return Ok(c);
    }
    match state
        .auth
        .store
        .latest_crl()
        .await
        .map_err(IssueError::from)?
    {
        Some(c) => Ok(c),
        None => Ok(state.auth.publish_crl(None).await?),
    }
}

/// Issues (and records) the CA's own HTTPS certificate. The chain presented
/// includes the root, so enrolling clients can match it against the pinned
/// fingerprint.
async fn own_tls(
    auth: &Authority,
    names: &[Identity],
    sessions: &SessionState,
) -> Result<(ServerTls, Duration), String> {
    let key = symbolon_pki::KeyType::EcdsaP256
        .generate()
        .map_err(|e| e.to_string())?;
    let lifetime = auth.max_leaf.min(Duration::from_secs(30 * 86_400));
    let spec = LeafSpec {
        identities: names.to_vec(),
        common_name: None,
        profile: Profile::Server,
        lifetime,
    };
    // The CA's own names need not be inside the namespace it grants others.
    let cert = auth
        .issuer
        .issue(
            &symbolon_pki::PublicKeyData::subject_public_key_info(&key),
            &spec,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| format!("issuing the CA's own certificate: {e}"))?;
    auth.record(
        &cert,
        symbolon_store::Audit {
            actor: "ca serve",
            action: "issue_own_https",
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut chain = cert.chain.clone();
    chain.push(auth.root.clone());
    let ck = symbolon_tls::certified_key_from_der(chain, key.serialize_der())
        .map_err(|e| e.to_string())?;
    let trust = Arc::new(TrustBundle::from_certs(vec![auth.root.clone()]));
    let tls = ServerTls::new(
        ck,
        trust,
        ClientAuthMode::Permissive,
        vec![b"http/1.1".to_vec()],
        sessions,
    );
    Ok((tls, lifetime))
}

pub async fn run(auth: Authority, opts: ServeOptions) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new(METRICS));
    let sessions = SessionState::new().map_err(|e| e.to_string())?;
    let (tls, lifetime) = own_tls(&auth, &opts.names, &sessions).await?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", opts.listen))?;
    let state = Arc::new(AppState::new(auth, metrics.clone()));
    crate::feed::spawn_watcher(state.clone());
    if let Ok(c) = fresh_crl(&state).await {
        note_crl(&metrics, &c);
    }
    let (tx, rx) = watch::channel(Arc::new(tls));
    tracing::info!(listen = %opts.listen, "CA serving");

    // Renew our own certificate at two thirds of its life.
    let renew_state = state.clone();
    let names = opts.names.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(lifetime * 2 / 3).await;
            match own_tls(&renew_state.auth, &names, &sessions).await {
                Ok((t, _)) => {
                    let _ = tx.send(Arc::new(t));
                    tracing::info!("renewed the CA's own HTTPS certificate");
                }
                Err(e) => tracing::error!("renewing the CA's own HTTPS certificate failed: {e}"),
            }
        }
    });
    // Telemetry retention: drop buckets older than the configured window.
    let prune_state = state.clone();
    tokio::spawn(async move {
        loop {
            let keep = time::Duration::try_from(prune_state.auth.telemetry_retention)
                .unwrap_or(time::Duration::days(7));
            match prune_state
                .auth
                .store
                .prune_telemetry(OffsetDateTime::now_utc() - keep)
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::info!(rows = n, "pruned telemetry older than the retention window")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("pruning telemetry failed: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    // Keep the CRL fresh even when nobody asks for it.
    let crl_state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            if let Err(e) = ensure_fresh_crl(&crl_state).await {
                tracing::error!(reason = e.reason, "CRL refresh failed: {}", e.message);
            }
        }
    });

    let router = api::router(state.clone());
    let limits = opts.limits.clone();
    let admission = Admission::new(limits.max_connections);
    // HTTP/1.1 only: the API's clients (agents, gateways, curl, browsers)
    // need nothing more, and hyper's HTTP/2 server has no idle timeout, so
    // a client could hold a slot forever after its preface.
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let Ok((tcp, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // When full, the oldest connection still in its handshake makes
        // room (see `symbolon_tls::Admission`); only established ones hold
        // their slots against newcomers.
        let mut handshaking = match admission.admit() {
            Admit::Free(h) | Admit::Evicted(h) => h,
            Admit::Full => {
                metrics.inc(
                    "symbolon_ca_connections_refused_total",
                    &[("reason", "max_connections")],
                );
                tracing::warn!(
                    reason = "max_connections",
                    remote = %remote,
                    "connection refused: {} established connections are open (limits.max_connections)",
                    limits.max_connections
                );
                drop(tcp);
                continue;
            }
        };
        let max_connections = limits.max_connections;
        let tls = rx.borrow().clone();
        let router = router.clone();
        let metrics = metrics.clone();
        let http = http.clone();
        let request_timeout = limits.request_timeout;
        let handshake_timeout = limits.handshake_timeout;
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let Ok((cfg, outcome)) = tls.for_connection() else {
                return;
            };
            let evicted = |when: &str| {
                metrics.inc(
                    "symbolon_ca_connections_refused_total",
                    &[("reason", "evicted")],
                );
                tracing::info!(
                    reason = "evicted",
                    remote = %remote,
                    "connection closed: {when} when {max_connections} connections were open (limits.max_connections); its slot went to a newer connection"
                );
            };
            let stream = match tokio::time::timeout(
                handshake_timeout,
                handshaking.run(TlsAcceptor::from(cfg).accept(tcp)),
            )
            .await
            {
                Ok(Ok(Ok(s))) => s,
                Ok(Err(Evicted)) => {
                    evicted("still in its handshake");
                    return;
                }
                Ok(Ok(Err(e))) => {
                    let detail = outcome
                        .lock()
                        .ok()
                        .and_then(|mut o| o.take())
                        .and_then(|r| r.err());
                    match detail {
                        Some(v) => {
                            tracing::warn!(reason = %v.reason, remote = %remote, "handshake refused: {}", v.message)
                        }
                        None => tracing::debug!(remote = %remote, "handshake failed: {e}"),
                    }
                    return;
                }
                Err(_) => {
                    metrics.inc(
                        "symbolon_ca_connections_refused_total",
                        &[("reason", "handshake_timeout")],
                    );
                    tracing::info!(
                        reason = "handshake_timeout",
                        remote = %remote,
                        "no complete handshake within {handshake_timeout:?} (limits.handshake_timeout)"
                    );
                    return;
                }
            };
            // From here the slot is this connection's until it closes.
            // From here the slot is this connection's until it closes,
            // but a newcomer may take it while no request is in flight.
            let Ok(slot) = handshaking.established() else {
                evicted("still in its handshake");
                return;
            };
            let activity = Activity::new(slot);
            let recorded = outcome.lock().ok().and_then(|mut o| o.take());
            let peer = match recorded {
                Some(Ok(path)) => Some(path.peer),
                Some(Err(_)) => return,
                None => match stream.get_ref().1.peer_certificates() {
                    Some(chain) if !chain.is_empty() => match tls.reverify(chain) {
                        Ok(p) => Some(p.peer),
                        Err(e) => {
                            tracing::warn!(reason = %e.reason, remote = %remote, "resumed session refused: {}", e.message);
                            return;
                        }
                    },
                    _ => None,
                },
            };
            // hyper's header timeout does not cover the bytes it reads to
            // tell HTTP/1 from HTTP/2: bound the wait for those here.
            let first = tokio::select! {
                first = symbolon_tls::first_bytes(stream, header_timeout) => first,
                _ = activity.evicted() => {
                    evicted("idle");
                    return;
                }
            };
            let stream = match first {
                Ok(s) => s,
                Err(NoRequest::Silent(d)) => {
                    metrics.inc(
                        "symbolon_ca_connections_refused_total",
                        &[("reason", "header_timeout")],
                    );
                    tracing::info!(
                        reason = "header_timeout",
                        remote = %remote,
                        "connection closed: no request within {d:?} of the handshake (limits.header_timeout)"
                    );
                    return;
                }
                Err(NoRequest::Closed(e)) => {
                    tracing::debug!(remote = %remote, "connection closed before its first request: {e:?}");
                    return;
                }
            };
            let peer = Peer(peer);
            let svc_activity = activity.clone();
            let svc_metrics = metrics.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let metrics = svc_metrics.clone();
                    let busy = svc_activity.busy();
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(Remote(remote));
                    async move {
                        // Taken while idle, just as this request arrived:
                        // the connection is closing; the client may retry.
                        let Ok(busy) = busy else {
                            return Ok(api::evicted());
                        };
                        let started = std::time::Instant::now();
                        let path = req.uri().path().to_string();
                        let resp = match tokio::time::timeout(
                            request_timeout,
                            router.oneshot(req.map(axum::body::Body::new)),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                tracing::info!(
                                    reason = "request_timeout",
                                    remote = %remote,
                                    "{path}: no complete request within {request_timeout:?} (limits.request_timeout)"
                                );
                                Ok(api::request_timeout(request_timeout))
                            }
                        };
                        if let Ok(r) = &resp {
                            // Label by endpoint, never by user-supplied paths.
                            let label = endpoint_label(&path);
                            metrics.inc(
                                "symbolon_ca_requests_total",
                                &[("path", label), ("status", r.status().as_str())],
                            );
                            metrics.observe(
                                "symbolon_ca_request_duration_seconds",
                                &[],
                                started.elapsed().as_secs_f64(),
                            );
                        }
                        // In flight until the body is sent (the revocation
                        // feed's never is, while the gateway listens).
                        resp.map(|r| r.map(|b| axum::body::Body::new(Tracked::new(b, busy))))
                    }
                },
            );
            tokio::select! {
                _ = http.serve_connection(TokioIo::new(stream), svc) => {}
                _ = activity.evicted() => evicted("idle"),
            }
        });
    }
}
