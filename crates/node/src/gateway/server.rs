//! Server mode: accept, handshake (with a deadline), authenticate, then hand
//! the connection to the HTTP or TCP forwarder. Every refusal is logged on
//! one line with its reason code, and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::HandshakeKind;
use symbolon_core::{PeerCert, Reason};
use symbolon_pki::{CertRef, VerifyError};
use symbolon_tls::{Admission, Admit, Evicted, Handshaking};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::config::{Loaded, Protocol, ServerSettings};
use super::state::Live;
use super::{Metrics, http, tcp};

/// What the forwarders need for one connection.
#[derive(Debug)]
pub struct ConnContext {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub peer: Option<PeerCert>,
    pub tls_version: &'static str,
    /// When the connection must end: the configured maximum lifetime, and
    /// never after the client certificate expires.
    pub deadline: Option<tokio::time::Instant>,
    /// Fires when the client certificate is revoked; keeps the connection
    /// registered while it lives.
    pub revoked: Option<super::revocation::ConnGuard>,
}

impl ConnContext {
    /// Resolves when the connection must close: its deadline passed or its
    /// certificate was revoked. Pending forever when neither can happen.
    pub async fn must_close(&self) -> &'static str {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let revoked = async {
            match &self.revoked {
                Some(g) => g.closed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => "maximum lifetime or client certificate expiry reached",
            _ = revoked => "client certificate revoked",
        }
    }
}

#[derive(Debug)]
pub struct Shared {
    pub cfg: Loaded,
    pub settings: ServerSettings,
    pub live: watch::Receiver<Arc<Live>>,
    pub metrics: Arc<Metrics>,
    pub upstream: http::Upstream,
    pub revocation: Option<Arc<super::revocation::Revocation>>,
    pub telemetry: Option<Arc<super::telemetry::Telemetry>>,
}

fn cert_fields(c: &CertRef) -> String {
    format!(
        "subject={:?} serial={} issuer={:?} not_before={} not_after={}",
        c.subject, c.serial, c.issuer, c.not_before, c.not_after
    )
}

/// Logs and counts a refused handshake.
fn refuse(
    shared: &Shared,
    remote: SocketAddr,
    reason: Reason,
    detail: &str,
    cert: Option<&CertRef>,
) {
    shared.metrics.inc(
        "symbolon_gateway_handshakes_total",
        &[("result", "error"), ("reason", reason.as_str())],
    );
    if let Some(t) = &shared.telemetry {
        t.failed(
            cert.map(|c| c.subject.as_str())
                .unwrap_or("unauthenticated"),
            reason.as_str(),
        );
    }
    match cert {
        Some(c) => tracing::warn!(
            reason = reason.as_str(),
            remote = %remote,
            "handshake refused: {detail} [{}]",
            cert_fields(c)
        ),
        None => {
            tracing::warn!(reason = reason.as_str(), remote = %remote, "handshake refused: {detail}")
        }
    }
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let admission = Admission::new(shared.settings.max_connections);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly
                // rather than spin.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // When full, the oldest connection still in its handshake makes
        // room (see `symbolon_tls::Admission`); only established ones hold
        // their slots against newcomers.
        let handshaking = match admission.admit() {
            Admit::Free(h) | Admit::Evicted(h) => h,
            Admit::Full => {
                shared.metrics.inc(
                    "symbolon_gateway_connections_refused_total",
                    &[("reason", "max_connections")],
                );
                tracing::warn!(remote = %remote, reason = "max_connections", "connection refused: server.max_connections ({}) reached, all by established connections", shared.settings.max_connections);
                drop(tcp);
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            shared
                .metrics
                .gauge_add("symbolon_gateway_active_connections", &[], 1.0);
            handle(tcp, remote, &shared, handshaking).await;
            shared
                .metrics
                .gauge_add("symbolon_gateway_active_connections", &[], -1.0);
        });
    }
}

/// Counts and logs a connection closed because a newer one took its slot
/// while it was `when` ("still in its handshake", "idle").
pub(super) fn evicted(shared: &Shared, remote: SocketAddr, when: &str) {
    shared.metrics.inc(
        "symbolon_gateway_connections_refused_total",
        &[("reason", "evicted")],
    );
    tracing::info!(remote = %remote, reason = "evicted", "connection closed: {when} when server.max_connections ({}) was reached; its slot went to a newer connection", shared.settings.max_connections);
}

async fn handle(
    tcp: TcpStream,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    mut handshaking: Handshaking,
) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(remote);
    let live = shared.live.borrow().clone();
    let (config, outcome) = match live.tls.for_connection() {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("cannot build the TLS configuration: {e}");
            return;
        }
    };
    let accepted = tokio::time::timeout(
        shared.settings.handshake_timeout,
        handshaking.run(TlsAcceptor::from(config).accept(tcp)),
    )
    .await;
    let recorded = outcome.lock().ok().and_then(|mut s| s.take());
    let stream: TlsStream<TcpStream> = match accepted {
        Ok(Err(Evicted)) => {
            evicted(shared, remote, "still in its handshake");
            return;
        }
        Err(_) => {
            refuse(
                shared,
                remote,
                Reason::HandshakeTimeout,
                &format!(
                    "no complete handshake within {:?}",
                    shared.settings.handshake_timeout
                ),
                None,
            );
            return;
        }
        Ok(Ok(Err(io))) => {
            if let Some(Err(ve)) = &recorded {
                refuse(
                    shared,
                    remote,
                    ve.reason,
                    &ve.message,
                    ve.certificate.as_deref(),
                );
            } else if io.kind() == std::io::ErrorKind::UnexpectedEof
                && io
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                    .is_none()
            {
                // A TCP health check or port probe: it never spoke TLS, so it
                // is not a refused client. Counted, logged at debug only.
                shared.metrics.inc(
                    "symbolon_gateway_connections_refused_total",
                    &[("reason", "closed_before_handshake")],
                );
                tracing::debug!(remote = %remote, "connection closed before completing a TLS handshake");
            } else {
                let tls_err = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                let reason = tls_err
                    .map(symbolon_tls::reason_for)
                    .unwrap_or(Reason::Malformed);
                let detail = match reason {
                    Reason::NoClientCert => {
                        "no client certificate presented (server.mode = \"strict\")".to_string()
                    }
                    _ => format!("TLS error: {io}"),
                };
                refuse(shared, remote, reason, &detail, None);
            }
            return;
        }
        Ok(Ok(Ok(s))) => s,
    };
    // From here the slot is this connection's until it closes (in HTTP
    // mode, a newcomer may still take it while no request is in flight).
    let Ok(slot) = handshaking.established() else {
        evicted(shared, remote, "still in its handshake");
        return;
    };
    let (_, conn) = stream.get_ref();
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let tls_version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    // A resumed session skipped the verifier: verify again against the
    // trust bundle in force now, so a reload (or revocation) is never
    // bypassed by resumption.
    let peer = match recorded {
        Some(Ok(path)) => Some(path.peer),
        Some(Err(ve)) => {
            refuse(
                shared,
                remote,
                ve.reason,
                &ve.message,
                ve.certificate.as_deref(),
            );
            return;
        }
        None => match conn.peer_certificates() {
            Some(chain) if !chain.is_empty() => match shared.live.borrow().tls.reverify(chain) {
                Ok(path) => Some(path.peer),
                Err(VerifyError {
                    reason,
                    message,
                    certificate,
                    ..
                }) => {
                    refuse(
                        shared,
                        remote,
                        reason,
                        &format!("resumed session no longer valid: {message}"),
                        certificate.as_deref(),
                    );
                    return;
                }
            },
            _ => None,
        },
    };
    if let (Some(rev), Some(p)) = (&shared.revocation, &peer) {
        let chain: Vec<rustls::pki_types::CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|x| x.clone().into_owned()).collect())
            .unwrap_or_default();
        if let Err((reason, message)) = rev.check_ocsp(p, &chain).await {
            refuse(shared, remote, reason, &message, None);
            return;
        }
    }
    shared.metrics.inc(
        "symbolon_gateway_handshakes_total",
        &[
            ("result", "ok"),
            ("reason", if resumed { "resumed" } else { "full" }),
        ],
    );
    shared.metrics.observe(
        "symbolon_gateway_handshake_duration_seconds",
        &[],
        started.elapsed().as_secs_f64(),
    );

    let now = time::OffsetDateTime::now_utc();
    let mut deadline = shared
        .settings
        .max_connection_lifetime
        .map(|d| tokio::time::Instant::now() + d);
    if let Some(p) = &peer {
        let left = (p.not_after - now).whole_milliseconds().max(0) as u64;
        let cert_end = tokio::time::Instant::now() + std::time::Duration::from_millis(left);
        deadline = Some(deadline.map_or(cert_end, |d| d.min(cert_end)));
    }
    let revoked = match (&shared.revocation, &peer) {
        (Some(r), Some(p)) => {
            // Register, then check again: a revocation that arrived while
            // the handshake was in flight (after the verifier ran, before
            // registration) would otherwise never close this connection.
            let guard = r.register(p);
            if let Err((reason, message)) = symbolon_tls::RevocationCheck::check(r.as_ref(), p) {
                refuse(shared, remote, reason, &message, None);
                return;
            }
            Some(guard)
        }
        _ => None,
    };
    let ctx = ConnContext {
        remote,
        local,
        peer,
        tls_version,
        deadline,
        revoked,
    };
    match shared.cfg.protocol {
        Protocol::Http => http::serve_connection(stream, ctx, shared.clone(), slot).await,
        // A byte stream has no requests to tell idle from busy: it keeps
        // its slot until it closes.
        Protocol::Tcp => {
            let _slot = slot;
            tcp::forward(stream, ctx, shared.clone()).await
        }
    }
}
