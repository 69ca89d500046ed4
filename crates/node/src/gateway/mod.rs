//! `symbolon gateway`: wiring of configuration, live state, listeners and
//! the metrics endpoint.

pub mod client;
pub mod config;
pub mod http;
pub mod identity;
pub mod revocation;
pub mod server;
pub mod stapling;
pub mod state;
pub mod tcp;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

pub use symbolon_core::Metrics;
use tokio::net::TcpListener;
use tokio::sync::watch;

use config::{Loaded, Role};

/// Every gateway metric, as rendered at /metrics.
pub const METRICS: symbolon_core::MetricHelp = &[
    (
        "symbolon_gateway_handshakes_total",
        "counter",
        "TLS handshakes by result and reason code.",
    ),
    (
        "symbolon_gateway_handshake_duration_seconds",
        "histogram",
        "Time from TCP accept to the end of the TLS handshake.",
    ),
    (
        "symbolon_gateway_active_connections",
        "gauge",
        "Connections currently open.",
    ),
    (
        "symbolon_gateway_connections_refused_total",
        "counter",
        "Connections closed before the handshake, by reason.",
    ),
    (
        "symbolon_gateway_requests_total",
        "counter",
        "HTTP requests answered, by status code.",
    ),
    (
        "symbolon_gateway_policy_decisions_total",
        "counter",
        "Policy decisions by rule and effect (audit_deny: an audit rule would have denied).",
    ),
    (
        "symbolon_gateway_certificate_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the gateway's certificate and of each trusted client CA.",
    ),
    (
        "symbolon_gateway_reloads_total",
        "counter",
        "Configuration and credential reloads by result.",
    ),
    (
        "symbolon_gateway_revocation_data_age_seconds",
        "gauge",
        "Seconds since a revocation source last confirmed fresh data (-1: never).",
    ),
    (
        "symbolon_gateway_revocation_entries",
        "gauge",
        "Revoked certificates known.",
    ),
    (
        "symbolon_gateway_revocation_rollbacks_total",
        "counter",
        "Revocation data refused because it was older than data already seen.",
    ),
    (
        "symbolon_gateway_revocation_fail_open_total",
        "counter",
        "Handshakes accepted with stale revocation data (on_unavailable = fail-open).",
    ),
    (
        "symbolon_gateway_revocation_source_errors_total",
        "counter",
        "Failed fetches or checks of a revocation source.",
    ),
    (
        "symbolon_gateway_connections_closed_total",
        "counter",
        "Live connections closed by the gateway, by reason.",
    ),
    (
        "symbolon_gateway_ocsp_staple_fetches_total",
        "counter",
        "OCSP responses fetched for stapling, by result.",
    ),
    (
        "symbolon_gateway_ocsp_staple_next_update_timestamp_seconds",
        "gauge",
        "nextUpdate of the stapled OCSP response.",
    ),
    (
        "symbolon_gateway_telemetry_reports_total",
        "counter",
        "Telemetry reports to the control plane, sent or dropped.",
    ),
    (
        "symbolon_gateway_upstream_errors_total",
        "counter",
        "Failures to reach or talk to the upstream.",
    ),
];

/// How often watched files are compared for a reload.
const RELOAD_POLL: Duration = Duration::from_millis(500);

/// Runs the gateway until the process is stopped. The configuration was
/// validated by `config::load`; credentials are loaded here, before any
/// port is bound, so a bad certificate fails the start, not the first
/// connection.
pub async fn run(cfg: Loaded) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new(METRICS));
    match cfg.role.clone() {
        Role::Server(settings) => {
            let sessions = symbolon_tls::SessionState::new().map_err(|e| e.to_string())?;
            let rev = settings.revocation.as_ref().map(|r| {
                let rev = revocation::Revocation::new(
                    r.fail_open,
                    r.max_staleness,
                    metrics.clone(),
                    &r.sources,
                );
                revocation::start(rev.clone(), r.sources.clone());
                rev
            });
            let live = state::build(&cfg, &sessions, 1, &metrics, rev.clone())?;
            let listener = bind(settings.listen, "server.listen").await?;
            start_metrics(&cfg, metrics.clone()).await?;
            let (tx, rx) = watch::channel(Arc::new(live));
            tracing::info!(listen = %settings.listen, upstream = %cfg.upstream, mode = if settings.permissive { "permissive" } else { "strict" }, "gateway listening");
            let shared = Arc::new(server::Shared {
                upstream: http::Upstream::new(cfg.upstream),
                cfg: cfg.clone(),
                settings,
                live: rx,
                metrics: metrics.clone(),
                revocation: rev.clone(),
                telemetry: cfg.telemetry.as_ref().map(|_| telemetry::Telemetry::new()),
            });
            if let (Some((url, service, interval)), Some(t)) =
                (cfg.telemetry.clone(), shared.telemetry.clone())
            {
                let anchors = symbolon_pki::input::load_certificates(&shared.settings.client_ca)
                    .map_err(|e| e.to_string())?;
                tokio::spawn(telemetry::report_loop(
                    t,
                    url,
                    service,
                    interval,
                    shared.live.clone(),
                    anchors,
                    metrics.clone(),
                ));
            }
            let anchor = symbolon_tls::CaAnchor::Root(stapling_anchor(&shared.settings.client_ca)?);
            tokio::spawn(stapling::staple_loop(tx.clone(), anchor, metrics.clone()));
            tokio::spawn(state::reload_loop(
                cfg,
                tx,
                sessions,
                metrics,
                RELOAD_POLL,
                rev,
            ));
            server::serve(listener, shared).await;
        }
        Role::Client(settings) => {
            let cert = symbolon_tls::load_certified_key(&settings.cert, &settings.key)
                .map_err(|e| e.to_string())?;
            let trust =
                symbolon_tls::TrustBundle::load(&settings.trust).map_err(|e| e.to_string())?;
            let tls =
                symbolon_tls::ClientTls::new(cert, Arc::new(trust), settings.identity.clone())
                    .map_err(|e| e.to_string())?;
            let listener = bind(settings.listen, "client.listen").await?;
            start_metrics(&cfg, metrics.clone()).await?;
            tracing::info!(listen = %settings.listen, upstream = %cfg.upstream, "gateway client mode listening");
            client::serve(listener, cfg, settings, tls, metrics).await;
        }
    }
    Ok(())
}

/// The root that authenticates the CA's OCSP endpoint: the self-signed
/// certificate in the client CA bundle (or its first certificate).
fn stapling_anchor(
    client_ca: &std::path::Path,
) -> Result<rustls::pki_types::CertificateDer<'static>, String> {
    let certs = symbolon_pki::input::load_certificates(client_ca).map_err(|e| e.to_string())?;
    let now = time::OffsetDateTime::now_utc();
    let root = certs
        .iter()
        .find(|c| symbolon_pki::describe_certificate(c, now).is_some_and(|s| s.self_signed))
        .or(certs.first());
    root.cloned()
        .ok_or_else(|| format!("{}: no certificate", client_ca.display()))
}

async fn bind(addr: std::net::SocketAddr, key: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{key}: cannot listen on {addr}: {e}"))
}

async fn start_metrics(cfg: &Loaded, metrics: Arc<Metrics>) -> Result<(), String> {
    match cfg.metrics {
        Some(addr) => crate::metrics_server::start(addr, "metrics.listen", metrics).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// Every metric the gateway writes must be declared, or it is never
    /// rendered at /metrics (the registry renders declared names only).
    #[test]
    fn every_metric_written_is_declared() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway");
        let declared: Vec<&str> = super::METRICS.iter().map(|m| m.0).collect();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for (i, _) in text.match_indices("\"symbolon_gateway_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name == "symbolon_gateway_" {
                    continue; // this test's own search string
                }
                assert!(
                    declared.contains(&name.as_str()),
                    "{name} is written but not declared in METRICS"
                );
            }
        }
    }
}
