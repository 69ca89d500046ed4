//! The JSON API under `/v1/`. Every refusal is a 4xx with a stable reason
//! code and a sentence, and nothing is recorded for it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use symbolon_core::{Identity, Metrics, PeerCert, format_duration, parse_duration};
use symbolon_pki::{BACKDATE, LeafSpec, Profile, RevocationReason, Serial};
use symbolon_store::{CertStatus, ListFilter, Redeemed, RevokeOutcome};
use time::OffsetDateTime;

use crate::{Authority, IssueError};

/// Request bodies (JSON with a PEM CSR) are small; anything larger is
/// refused before it is parsed.
pub const MAX_BODY: usize = symbolon_core::api_limits::MAX_BODY;
/// Failed token attempts allowed per client address per minute.
const TOKEN_FAILURES_PER_MINUTE: u32 = 20;

/// The verified client certificate of the connection, if any.
#[derive(Clone, Debug)]
pub struct Peer(pub Option<PeerCert>);

/// The client's address.
#[derive(Clone, Copy, Debug)]
pub struct Remote(pub SocketAddr);

#[derive(Debug)]
pub struct AppState {
    pub auth: Authority,
    pub metrics: Arc<Metrics>,
    /// The latest revocation state, published by the feed watcher.
    pub feed: tokio::sync::watch::Sender<Arc<crate::feed::FeedState>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AppState {
    pub fn new(auth: Authority, metrics: Arc<Metrics>) -> AppState {
        AppState {
            auth,
            metrics,
            feed: tokio::sync::watch::Sender::new(Arc::default()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn rate_limited(&self, ip: IpAddr) -> bool {
        let Ok(f) = self.failures.lock() else {
            return false;
        };
        match f.get(&ip) {
            Some((start, n)) if start.elapsed() < Duration::from_secs(60) => {
                *n >= TOKEN_FAILURES_PER_MINUTE
            }
            _ => false,
        }
    }

    fn count_failure(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(ip).or_insert((Instant::now(), 0));
            if e.0.elapsed() >= Duration::from_secs(60) {
                *e = (Instant::now(), 0);
            }
            e.1 += 1;
            // Bound memory under a flood of distinct addresses.
            if f.len() > 100_000 {
                f.retain(|_, (start, _)| start.elapsed() < Duration::from_secs(60));
            }
        }
    }
}

/// A refusal: HTTP status, stable reason code, sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

fn err(status: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        reason,
        message: message.into(),
    }
}

/// 408 for a request that did not arrive whole in time (`limits.request_timeout`).
pub(crate) fn request_timeout(limit: std::time::Duration) -> Response {
    err(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!("the request did not arrive whole within {limit:?}; send it again"),
    )
    .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"reason": self.reason, "message": self.message})),
        )
            .into_response()
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> ApiError {
        match e {
            IssueError::NotPermitted(m) => err(StatusCode::FORBIDDEN, "name_not_permitted", m),
            IssueError::Pki(symbolon_pki::PkiError::Refused(m)) => {
                err(StatusCode::BAD_REQUEST, "bad_csr", m)
            }
            IssueError::Pki(e) => err(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()),
            IssueError::Store(e) => {
                tracing::error!("store failure: {e}");
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the CA cannot record certificates right now; nothing was issued",
                )
            }
        }
    }
}

/// The answer to a request that arrived just as its idle connection's slot
/// went to a newer connection (`limits.max_connections` reached).
pub(crate) fn evicted() -> Response {
    err(
        StatusCode::SERVICE_UNAVAILABLE,
        "evicted",
        "the CA gave this idle connection's slot to a newer one (limits.max_connections); retry",
    )
    .into_response()
}

fn body_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request bodies are limited to {MAX_BODY} bytes"),
            )
        } else {
            err(StatusCode::BAD_REQUEST, "malformed", r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

/// How an API caller appears in the audit trail.
fn actor(p: &PeerCert) -> String {
    let who = p
        .spiffe_id
        .clone()
        .or_else(|| p.dns.first().cloned())
        .unwrap_or_else(|| p.subject.clone());
    format!("api:{who} (serial {})", p.serial)
}

/// The caller's certificate, which must be one this CA issued and has not
/// revoked: the TLS layer checks the chain, the store knows revocations.
async fn require_peer<'a>(state: &AppState, peer: &'a Peer) -> Result<&'a PeerCert, ApiError> {
    let p = peer.0.as_ref().ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "no_client_cert",
            "this endpoint needs a client certificate issued by this CA (mTLS)",
        )
    })?;
    let record = state
        .auth
        .store
        .get(&p.serial)
        .await
        .map_err(IssueError::from)?;
    match record {
        None => Err(err(
            StatusCode::FORBIDDEN,
            "unknown_certificate",
            format!("serial {} was not issued by this CA", p.serial),
        )),
        Some(r) if r.revoked_at.is_some() => Err(err(
            StatusCode::FORBIDDEN,
            "revoked",
            format!(
                "certificate {} is revoked; enroll again with a new token",
                p.serial
            ),
        )),
        Some(_) => Ok(p),
    }
}

async fn require_admin<'a>(state: &AppState, peer: &'a Peer) -> Result<&'a PeerCert, ApiError> {
    let p = require_peer(state, peer).await?;
    if state.auth.is_admin(p) {
        Ok(p)
    } else {
        Err(err(
            StatusCode::FORBIDDEN,
            "not_admin",
            format!(
                "{} is not an admin of this CA (admins in ca.toml)",
                p.spiffe_id
                    .clone()
                    .or_else(|| p.dns.first().cloned())
                    .unwrap_or_else(|| p.subject.clone())
            ),
        ))
    }
}

#[derive(serde::Serialize)]
pub struct IssuedJson {
    /// Leaf then intermediate, PEM.
    pub certificate: String,
    /// The root, PEM: the trust anchor to save as ca.pem.
    pub ca: String,
    pub serial: String,
    pub not_after: String,
}

fn issued_json(auth: &Authority, cert: &symbolon_pki::IssuedCert) -> IssuedJson {
    IssuedJson {
        certificate: cert.chain_pem(),
        ca: symbolon_pki::to_pem("CERTIFICATE", &auth.root),
        serial: cert.serial.to_hex(),
        not_after: symbolon_pki::rfc3339(cert.not_after),
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/renew", post(renew))
        .route("/v1/revoke", post(revoke))
        .route("/v1/tokens", post(create_token))
        .route("/v1/crl", get(crl))
        .route("/v1/revocations/feed", get(crate::feed::feed))
        .route("/v1/ocsp", post(ocsp_post))
        .route("/v1/ocsp/{*request}", get(ocsp_get))
        .route("/v1/roots", get(roots))
        .route("/v1/certificates", get(certificates))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/telemetry", post(telemetry))
        .merge(crate::ui::routes())
        .fallback(|| async {
            err(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// === enroll ===

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
    /// PEM CSR.
    csr: String,
}

fn csr_der(pem_text: &str) -> Result<Vec<u8>, ApiError> {
    let block = pem::parse(pem_text.trim()).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "bad_csr",
            format!("csr: not PEM ({e})"),
        )
    })?;
    if !matches!(
        block.tag(),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
    ) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_csr",
            format!(
                "csr: a PEM \"{}\" block, not a CERTIFICATE REQUEST",
                block.tag()
            ),
        ));
    }
    Ok(block.into_contents())
}

async fn enroll(
    State(state): State<Arc<AppState>>,
    Extension(remote): Extension<Remote>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IssuedJson>, ApiError> {
    let ip = remote.0.ip();
    if state.rate_limited(ip) {
        state.metrics.inc(
            "symbolon_ca_token_refusals_total",
            &[("reason", "rate_limited")],
        );
        return Err(err(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed token attempts from this address; wait a minute",
        ));
    }
    let result = enroll_inner(&state, body).await;
    if let Err(e) = &result {
        if e.reason.starts_with("token_") {
            state.count_failure(ip);
            state
                .metrics
                .inc("symbolon_ca_token_refusals_total", &[("reason", e.reason)]);
        }
        state.metrics.inc(
            "symbolon_ca_certificates_issued_total",
            &[
                ("operation", "enroll"),
                ("profile", "none"),
                ("outcome", e.reason),
            ],
        );
        tracing::warn!(reason = e.reason, remote = %remote.0, "enroll refused: {}", e.message);
    }
    result
}

async fn enroll_inner(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IssuedJson>, ApiError> {
    let body: EnrollBody = body_json(body)?;
    let claims = symbolon_pki::verify_token(&state.auth.token_key, &body.token)
        .map_err(|e| err(StatusCode::FORBIDDEN, "token_invalid", e.to_string()))?;
    if OffsetDateTime::now_utc().unix_timestamp() >= claims.expires_at {
        return Err(err(
            StatusCode::FORBIDDEN,
            "token_expired",
            "the token has expired; ask for a new one (symbolon ca token)",
        ));
    }
    let allowed = claims
        .parsed_identities()
        .map_err(|e| err(StatusCode::FORBIDDEN, "token_invalid", e))?;
    let csr = symbolon_pki::check_csr(&csr_der(&body.csr)?)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()))?;
    if let Some(extra) = csr.identities.iter().find(|i| !allowed.contains(i)) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "name_not_permitted",
            format!(
                "the CSR asks for {extra}, which the token does not allow (it allows {})",
                claims.identities.join(", ")
            ),
        ));
    }
    let spec = LeafSpec {
        profile: Profile::default_for(&csr.identities),
        identities: csr.identities.clone(),
        // Never the requester's CN: policies and upstreams may match on it,
        // and only the token (or the held certificate) says who this is.
        common_name: None,
        lifetime: state.auth.default_leaf,
    };
    spec.validate()
        .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()))?;
    let cert = state.auth.sign(&csr.spki_der, &spec)?;
    match state.auth.redeem(&claims.id, &cert).await? {
        Redeemed::Recorded => {}
        Redeemed::AlreadyUsed { at } => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "token_used",
                format!(
                    "the token was already used at {}; tokens are single-use",
                    symbolon_pki::rfc3339(at)
                ),
            ));
        }
        Redeemed::Expired { .. } => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "token_expired",
                "the token has expired; ask for a new one",
            ));
        }
        Redeemed::UnknownToken => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "token_invalid",
                "this CA has no record of the token",
            ));
        }
    }
    state.metrics.inc(
        "symbolon_ca_certificates_issued_total",
        &[
            ("operation", "enroll"),
            ("profile", cert.profile.as_str()),
            ("outcome", "issued"),
        ],
    );
    tracing::info!(serial = %cert.serial, identities = ?claims.identities, "enrolled");
    Ok(Json(issued_json(&state.auth, &cert)))
}

// === renew ===

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    csr: String,
}

async fn renew(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IssuedJson>, ApiError> {
    let result = renew_inner(&state, &peer, body).await;
    let (profile, outcome) = match &result {
        Ok((_, profile)) => (profile.as_str(), "issued"),
        Err(e) => {
            tracing::warn!(reason = e.reason, "renew refused: {}", e.message);
            ("none", e.reason)
        }
    };
    state.metrics.inc(
        "symbolon_ca_certificates_issued_total",
        &[
            ("operation", "renew"),
            ("profile", profile),
            ("outcome", outcome),
        ],
    );
    result.map(|(json, _)| json)
}

async fn renew_inner(
    state: &AppState,
    peer: &Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Json<IssuedJson>, Profile), ApiError> {
    let p = require_peer(state, peer).await?;
    let current = state
        .auth
        .store
        .get(&p.serial)
        .await
        .map_err(IssueError::from)?
        .ok_or_else(|| {
            err(
                StatusCode::FORBIDDEN,
                "unknown_certificate",
                format!("serial {} was not issued by this CA", p.serial),
            )
        })?;
    if current.revoked_at.is_some() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "revoked",
            format!(
                "certificate {} is revoked; enroll again with a new token",
                p.serial
            ),
        ));
    }
    if current.not_after < OffsetDateTime::now_utc() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "expired",
            "the certificate has expired; enroll again with a new token",
        ));
    }
    let body: RenewBody = body_json(body)?;
    let csr = symbolon_pki::check_csr(&csr_der(&body.csr)?)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()))?;
    let held: Vec<Identity> = current
        .identities
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    if let Some(extra) = csr.identities.iter().find(|i| !held.contains(i)) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "name_not_permitted",
            format!("renewal keeps the identity: {extra} is not in the current certificate"),
        ));
    }
    let lifetime =
        (current.not_after - current.not_before - BACKDATE).max(time::Duration::seconds(10));
    let lifetime = Duration::try_from(lifetime)
        .unwrap_or(state.auth.default_leaf)
        .min(state.auth.max_leaf);
    let spec = LeafSpec {
        profile: current.profile.parse().unwrap_or(Profile::Peer),
        identities: csr.identities.clone(),
        // Never the requester's CN: policies and upstreams may match on it,
        // and only the token (or the held certificate) says who this is.
        common_name: None,
        lifetime,
    };
    let cert = state.auth.sign(&csr.spki_der, &spec)?;
    state
        .auth
        .record(
            &cert,
            symbolon_store::Audit {
                actor: &actor(p),
                action: "renew",
            },
        )
        .await?;
    tracing::info!(serial = %cert.serial, previous = %p.serial, "renewed for {}", format_duration(lifetime));
    Ok((Json(issued_json(&state.auth, &cert)), cert.profile))
}

// === revoke ===

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    serial: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = require_peer(&state, &peer).await?;
    let body: RevokeBody = body_json(body)?;
    let serial = Serial::parse_hex(&body.serial)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "malformed", e))?
        .to_hex();
    if serial != p.serial && !state.auth.is_admin(p) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "not_admin",
            "only an admin may revoke another certificate; a certificate may revoke itself",
        ));
    }
    let reason: RevocationReason = body
        .reason
        .as_deref()
        .unwrap_or("unspecified")
        .parse()
        .map_err(|e: String| err(StatusCode::BAD_REQUEST, "malformed", e))?;
    let now = OffsetDateTime::now_utc();
    let outcome = state
        .auth
        .store
        .revoke(
            &serial,
            reason.as_str(),
            now,
            symbolon_store::Audit {
                actor: &actor(p),
                action: "revoke",
            },
        )
        .await
        .map_err(IssueError::from)?;
    let (at, reason_text, changed) = match outcome {
        RevokeOutcome::Revoked => (now, reason.as_str().to_string(), true),
        RevokeOutcome::AlreadyRevoked { at, reason } => (at, reason, false),
        RevokeOutcome::NotFound => {
            return Err(err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("serial {serial} was not issued by this CA"),
            ));
        }
    };
    let crl = if changed {
        state.metrics.inc(
            "symbolon_ca_revocations_total",
            &[("reason", reason.as_str())],
        );
        tracing::info!(serial, reason = reason.as_str(), by = %p.serial, "revoked");
        let crl = state.auth.publish_crl(None).await?;
        crate::serve::note_crl(&state.metrics, &crl);
        Some(crl.number)
    } else {
        None
    };
    Ok(Json(serde_json::json!({
        "serial": serial,
        "revoked_at": symbolon_pki::rfc3339(at),
        "reason": reason_text,
        "already_revoked": !changed,
        "crl_number": crl,
    })))
}

// === tokens (admin) ===

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    identities: Vec<String>,
    #[serde(default)]
    ttl: Option<String>,
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let admin = require_admin(&state, &peer).await?;
    let body: TokenBody = body_json(body)?;
    let ids = body
        .identities
        .iter()
        .map(|s| {
            s.parse::<Identity>()
                .map_err(|e| err(StatusCode::BAD_REQUEST, "malformed", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = parse_duration(body.ttl.as_deref().unwrap_or("15m"))
        .map_err(|e| err(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    let (token, expires) = state.auth.create_token(&actor(admin), &ids, ttl).await?;
    Ok(Json(
        serde_json::json!({"token": token, "expires_at": symbolon_pki::rfc3339(expires)}),
    ))
}

// === CRL, roots, inventory ===

async fn crl(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let current = crate::serve::fresh_crl(&state).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        current.der,
    )
        .into_response())
}

async fn roots(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        symbolon_pki::to_pem("CERTIFICATE", &state.auth.root),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    expiring_within: Option<String>,
    status: Option<String>,
}

async fn certificates(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &peer).await?;
    let Query(q) = query.map_err(|e| err(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let expiring_within = q
        .expiring_within
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("expiring_within: {e}"),
            )
        })?;
    let status = match q.status.as_deref() {
        None => None,
        Some("valid") => Some(CertStatus::Valid),
        Some("expired") => Some(CertStatus::Expired),
        Some("revoked") => Some(CertStatus::Revoked),
        Some(other) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("status {other:?}: use valid, expired or revoked"),
            ));
        }
    };
    let now = OffsetDateTime::now_utc();
    let filter = ListFilter {
        expiring_within,
        revoked_only: status == Some(CertStatus::Revoked),
    };
    let records = state
        .auth
        .store
        .list(&filter, now)
        .await
        .map_err(IssueError::from)?;
    let items: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| status.is_none_or(|s| r.status(now) == s))
        .map(|r| {
            serde_json::json!({
                "serial": r.serial,
                "status": r.status(now).as_str(),
                "identities": r.identities,
                "profile": r.profile,
                "not_before": symbolon_pki::rfc3339(r.not_before),
                "not_after": symbolon_pki::rfc3339(r.not_after),
                "sha256_fingerprint": r.fingerprint,
                "revoked_at": r.revoked_at.map(symbolon_pki::rfc3339),
                "revocation_reason": r.revocation_reason,
            })
        })
        .collect();
    Ok(Json(serde_json::Value::Array(items)))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(Some((_, this_update, _))) = state.auth.store.latest_crl_info().await {
        let age = (OffsetDateTime::now_utc() - this_update).as_seconds_f64();
        state
            .metrics
            .gauge_set("symbolon_ca_crl_age_seconds", &[], age);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

// === OCSP (RFC 6960) ===

fn ocsp_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/ocsp-response")], body).into_response()
}

/// Answers one OCSP request: good / revoked / unknown from the store,
/// signed by the issuing CA, nonce echoed. Protocol-level failures are
/// OCSP failure responses (HTTP 200), as clients expect.
async fn answer_ocsp(state: &AppState, der: &[u8]) -> Response {
    use symbolon_pki::{OcspFailure, OcspStatus};
    let req = match symbolon_pki::parse_ocsp_request(der) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(reason = "malformed", "OCSP: {e}");
            return ocsp_bytes(symbolon_pki::ocsp_failure(OcspFailure::MalformedRequest));
        }
    };
    if req.ids.iter().any(|id| !state.auth.issuer.issued(id)) {
        return ocsp_bytes(symbolon_pki::ocsp_failure(OcspFailure::Unauthorized));
    }
    let mut answers = Vec::with_capacity(req.ids.len());
    for id in &req.ids {
        let status = match state.auth.store.get(&id.serial.to_hex()).await {
            Ok(Some(r)) => match (r.revoked_at, r.revocation_reason) {
                (Some(at), Some(reason)) => OcspStatus::Revoked {
                    at,
                    reason: reason.parse().unwrap_or(RevocationReason::Unspecified),
                },
                _ => OcspStatus::Good,
            },
            Ok(None) => OcspStatus::Unknown,
            Err(e) => {
                tracing::error!("OCSP: store failure: {e}");
                return ocsp_bytes(symbolon_pki::ocsp_failure(OcspFailure::TryLater));
            }
        };
        answers.push((id.clone(), status));
    }
    let now = OffsetDateTime::now_utc();
    let next =
        now + time::Duration::try_from(state.auth.crl_next_update).unwrap_or(time::Duration::HOUR);
    match state
        .auth
        .issuer
        .sign_ocsp(&answers, req.nonce.as_deref(), now, next)
    {
        Ok(body) => {
            state
                .metrics
                .inc("symbolon_ca_ocsp_responses_total", &[("result", "signed")]);
            ocsp_bytes(body)
        }
        Err(e) => {
            tracing::error!("OCSP signing failed: {e}");
            ocsp_bytes(symbolon_pki::ocsp_failure(OcspFailure::InternalError))
        }
    }
}

async fn ocsp_post(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(b) => answer_ocsp(&state, &b).await,
        Err(_) => ocsp_bytes(symbolon_pki::ocsp_failure(
            symbolon_pki::OcspFailure::MalformedRequest,
        )),
    }
}

async fn ocsp_get(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(request): axum::extract::Path<String>,
) -> Response {
    use base64::Engine;
    // The request is base64 (RFC 6960 appendix A.1), URL-encoded; some
    // clients send '+' and '/' raw, others percent-encoded.
    let b64: String = request.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))
        });
    match decoded {
        Ok(der) => answer_ocsp(&state, &der).await,
        Err(_) => ocsp_bytes(symbolon_pki::ocsp_failure(
            symbolon_pki::OcspFailure::MalformedRequest,
        )),
    }
}

// === telemetry from gateways ===

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryBody {
    service: String,
    #[serde(default)]
    trust: Vec<String>,
    /// SHA-256 of the gateway's compiled policy, and its rule names.
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    counts: Vec<TelemetryCountBody>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryCountBody {
    client: String,
    kind: String,
    #[serde(default)]
    reason: String,
    count: i64,
}

/// Gateways report aggregated counts every few seconds over mTLS; the
/// reporting gateway is identified by its own certificate.
async fn telemetry(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = require_peer(&state, &peer).await?;
    let body: TelemetryBody = body_json(body)?;
    if body.counts.len() > symbolon_core::api_limits::MAX_TELEMETRY_COUNTS
        || body.service.is_empty()
        || body.service.len() > 128
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "malformed",
            "a report holds 1 to 10000 counts and a service name of at most 128 characters",
        ));
    }
    let mut counts = Vec::with_capacity(body.counts.len());
    for c in body.counts {
        if !matches!(c.kind.as_str(), "allowed" | "denied" | "failed")
            || c.count < 0
            || c.client.len() > symbolon_core::api_limits::MAX_TELEMETRY_CLIENT
            || c.reason.len() > symbolon_core::api_limits::MAX_TELEMETRY_REASON
        {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "malformed",
                "each count needs kind allowed|denied|failed, a non-negative count, and bounded strings",
            ));
        }
        counts.push(symbolon_store::TelemetryCount {
            client: c.client,
            kind: c.kind,
            reason: c.reason,
            count: c.count,
        });
    }
    let gateway = p
        .spiffe_id
        .clone()
        .or_else(|| p.dns.first().cloned())
        .unwrap_or_else(|| p.subject.clone());
    if body
        .policy
        .as_ref()
        .is_some_and(|p| p.len() != 64 || !p.chars().all(|c| c.is_ascii_hexdigit()))
        || body.rules.len() > 1000
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "malformed",
            "policy must be a SHA-256 in hex, with at most 1000 rule names",
        ));
    }
    let report = symbolon_store::TelemetryReport {
        gateway,
        service: body.service,
        trust: body.trust,
        policy: body.policy.map(|p| (p.to_ascii_lowercase(), body.rules)),
        counts,
    };
    state
        .auth
        .store
        .record_telemetry(&report, OffsetDateTime::now_utc())
        .await
        .map_err(IssueError::from)?;
    Ok(Json(serde_json::json!({"accepted": report.counts.len()})))
}
