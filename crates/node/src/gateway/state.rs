//! The live configuration — TLS credentials, trust bundle, policy — published
//! on a watch channel. Reloads build a complete new state first; only a
//! state that loaded without error replaces the old one, so a broken file
//! never takes the gateway down. Open connections keep what they started
//! with; new handshakes and new requests see the new state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use symbolon_core::Policy;
use symbolon_tls::{ClientAuthMode, ServerTls, SessionState, TrustBundle};
use tokio::sync::watch;

use super::Metrics;
use super::config::{self, Loaded, Role};

#[derive(Debug)]
pub struct Live {
    pub tls: ServerTls,
    pub policy: Arc<Policy>,
    /// Our own URI SAN, for XFCC `By=`.
    pub by: Option<String>,
    pub generation: u64,
}

pub fn build(
    cfg: &Loaded,
    sessions: &SessionState,
    generation: u64,
    metrics: &Metrics,
    revocation: Option<Arc<super::revocation::Revocation>>,
) -> Result<Live, String> {
    let Role::Server(s) = &cfg.role else {
        return Err("not a server-mode configuration".into());
    };
    let cert = symbolon_tls::load_certified_key(&s.cert, &s.key).map_err(|e| e.to_string())?;
    let trust = TrustBundle::load(&s.client_ca).map_err(|e| e.to_string())?;
    let mode = if s.permissive {
        ClientAuthMode::Permissive
    } else {
        ClientAuthMode::Strict
    };
    let leaf = cert
        .cert
        .first()
        .ok_or("the certificate file holds no certificate")?;
    let summary = symbolon_pki::describe_certificate(leaf, time::OffsetDateTime::now_utc())
        .ok_or("the gateway certificate does not parse")?;
    let by = summary
        .subject_alt_names
        .iter()
        .find_map(|n| n.strip_prefix("URI:").map(str::to_string));

    let expiry = "symbolon_gateway_certificate_expiry_timestamp_seconds";
    metrics.gauge_clear(expiry);
    let ts = |rfc: &str| {
        time::OffsetDateTime::parse(rfc, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp() as f64)
            .unwrap_or(0.0)
    };
    metrics.gauge_set(
        expiry,
        &[("kind", "server"), ("subject", &summary.subject)],
        ts(&summary.not_after),
    );
    for ca in &trust.certs {
        if let Some(c) = symbolon_pki::describe_certificate(ca, time::OffsetDateTime::now_utc()) {
            metrics.gauge_set(
                expiry,
                &[("kind", "client_ca"), ("subject", &c.subject)],
                ts(&c.not_after),
            );
        }
    }
    let alpn = match cfg.protocol {
        config::Protocol::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        config::Protocol::Tcp => Vec::new(),
    };
    Ok(Live {
        tls: match revocation {
            Some(r) => {
                ServerTls::new(cert, Arc::new(trust), mode, alpn, sessions).with_revocation(r)
            }
            None => ServerTls::new(cert, Arc::new(trust), mode, alpn, sessions),
        },
        policy: cfg.policy.clone(),
        by,
        generation,
    })
}

/// The files whose change triggers a reload: the config (policy lives
/// there), the certificate, its key and the client CA bundle.
fn watched(cfg: &Loaded) -> Vec<PathBuf> {
    let mut v = vec![cfg.file.clone()];
    if let Role::Server(s) = &cfg.role {
        v.extend([s.cert.clone(), s.key.clone(), s.client_ca.clone()]);
    }
    v
}

fn fingerprint(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    // Content, not mtime: a rename-over keeps working, and two writes in the
    // same second are not missed. These files are a few kilobytes.
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

/// Watches files (polling, every `interval`) and SIGHUP; publishes a new
/// state when one loads cleanly, logs and keeps the old one otherwise.
pub async fn reload_loop(
    mut cfg: Loaded,
    tx: watch::Sender<Arc<Live>>,
    sessions: SessionState,
    metrics: Arc<Metrics>,
    interval: Duration,
    revocation: Option<Arc<super::revocation::Revocation>>,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&watched(&cfg));
    let mut generation = tx.borrow().generation;
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = fingerprint(&watched(&cfg));
        if !by_signal && now == seen {
            continue;
        }
        seen = now;
        let trigger = if by_signal { "SIGHUP" } else { "file change" };
        let fresh = match config::load(&cfg.file) {
            Ok(fresh) => fresh,
            Err(e) => {
                metrics.inc("symbolon_gateway_reloads_total", &[("result", "error")]);
                tracing::error!(
                    trigger,
                    "reload refused, still serving the previous configuration: {e}"
                );
                continue;
            }
        };
        if let (Role::Server(old), Role::Server(new)) = (&cfg.role, &fresh.role)
            && old.listen != new.listen
        {
            tracing::warn!(
                "server.listen changed to {}; a new listen address takes effect on restart",
                new.listen
            );
        }
        generation += 1;
        match build(&fresh, &sessions, generation, &metrics, revocation.clone()) {
            Ok(live) => {
                metrics.inc("symbolon_gateway_reloads_total", &[("result", "ok")]);
                tracing::info!(
                    trigger,
                    generation,
                    "reloaded certificate, trust bundle and policy"
                );
                let _ = tx.send(Arc::new(live));
                cfg = fresh;
                seen = fingerprint(&watched(&cfg));
            }
            Err(e) => {
                metrics.inc("symbolon_gateway_reloads_total", &[("result", "error")]);
                tracing::error!(
                    trigger,
                    "reload refused, still serving the previous certificate and policy: {e}"
                );
            }
        }
    }
}
