//! A plain-HTTP `/metrics` endpoint for a registry.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use symbolon_core::Metrics;
use tokio::net::TcpListener;

/// Binds `addr` now (so a taken port fails the start) and serves in the
/// background.
pub async fn start(addr: SocketAddr, key: &str, metrics: Arc<Metrics>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{key}: cannot listen on {addr}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            if req.uri().path() == "/metrics" {
                                hyper::Response::builder()
                                    .header(
                                        "content-type",
                                        "text/plain; version=0.0.4; charset=utf-8",
                                    )
                                    .body(Full::new(Bytes::from(metrics.render())))
                            } else {
                                hyper::Response::builder().status(404).body(Full::new(
                                    Bytes::from_static(b"not found; try /metrics\n"),
                                ))
                            }
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(())
}
