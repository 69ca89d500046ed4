//! Client mode: accept plain text on loopback, originate mTLS to the
//! upstream with our certificate, and refuse an upstream whose certificate
//! does not carry the configured identity.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use symbolon_core::Reason;
use symbolon_tls::ClientTls;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::Metrics;
use super::config::{ClientSettings, Loaded};

pub async fn serve(
    listener: TcpListener,
    cfg: Loaded,
    settings: ClientSettings,
    tls: ClientTls,
    metrics: Arc<Metrics>,
) {
    let connector = TlsConnector::from(tls.config());
    let name = match &settings.identity.dns {
        Some(d) => ServerName::try_from(d.clone()).ok(),
        None => None,
    }
    .unwrap_or_else(|| ServerName::IpAddress(cfg.upstream.ip().into()));
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let Ok((mut local, remote)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics.inc(
                "symbolon_gateway_connections_refused_total",
                &[("reason", "max_connections")],
            );
            continue;
        };
        let connector = connector.clone();
        let name = name.clone();
        let metrics = metrics.clone();
        let upstream = cfg.upstream;
        let timeout = settings.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = local.set_nodelay(true);
            let started = std::time::Instant::now();
            let attempt = async {
                let tcp = TcpStream::connect(upstream).await?;
                let _ = tcp.set_nodelay(true);
                connector.connect(name, tcp).await
            };
            let mut tls = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let reason = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<rustls::Error>())
                        .map(symbolon_tls::reason_for)
                        .unwrap_or(Reason::Malformed);
                    metrics.inc(
                        "symbolon_gateway_handshakes_total",
                        &[("result", "error"), ("reason", reason.as_str())],
                    );
                    tracing::warn!(reason = reason.as_str(), remote = %remote, upstream = %upstream, "upstream handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    metrics.inc(
                        "symbolon_gateway_handshakes_total",
                        &[("result", "error"), ("reason", "handshake_timeout")],
                    );
                    tracing::warn!(reason = "handshake_timeout", upstream = %upstream, "no upstream handshake within {timeout:?}");
                    return;
                }
            };
            metrics.inc(
                "symbolon_gateway_handshakes_total",
                &[("result", "ok"), ("reason", "full")],
            );
            metrics.observe(
                "symbolon_gateway_handshake_duration_seconds",
                &[],
                started.elapsed().as_secs_f64(),
            );
            let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
        });
    }
}
