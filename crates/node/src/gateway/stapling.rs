//! OCSP stapling of the gateway's own certificate (RFC 6066): the response
//! is fetched from the certificate's OCSP URL, checked (signed by the
//! issuer, status good), stapled to every handshake, cached until its
//! nextUpdate and refreshed half-way there. A reload that keeps the same
//! certificate keeps the cached staple.

use std::sync::Arc;
use std::time::Duration;

use symbolon_core::Metrics;
use symbolon_tls::CaAnchor;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::state::Live;
use crate::agent::client::{self, CaUrl};

struct Cached {
    leaf_sha256: String,
    response: Vec<u8>,
    fetched: OffsetDateTime,
    next_update: OffsetDateTime,
}

impl Cached {
    fn due(&self) -> bool {
        let now = OffsetDateTime::now_utc();
        now >= self.fetched + (self.next_update - self.fetched) / 2
    }
}

async fn fetch(
    url: &str,
    anchor: &CaAnchor,
    leaf: &[u8],
    issuer: &[u8],
) -> Result<(Vec<u8>, OffsetDateTime), String> {
    let ca = CaUrl::parse(url).map_err(|e| e.replace("--ca ", "OCSP URL "))?;
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());
    let req = symbolon_pki::ocsp_request(leaf, issuer).map_err(|e| e.to_string())?;
    let resp = client::post_bytes(&ca, anchor.clone(), &path, "application/ocsp-request", req)
        .await
        .map_err(|e| e.to_string())?;
    let next = symbolon_pki::check_ocsp_response(&resp, leaf, issuer)?;
    Ok((resp.to_vec(), next))
}

pub async fn staple_loop(tx: watch::Sender<Arc<Live>>, anchor: CaAnchor, metrics: Arc<Metrics>) {
    let mut rx = tx.subscribe();
    let mut cache: Option<Cached> = None;
    loop {
        let live = rx.borrow_and_update().clone();
        let ck = live.tls.certified_key().clone();
        let mut wait = Duration::from_secs(10);
        if let (Some(leaf), Some(issuer)) = (ck.cert.first(), ck.cert.get(1)) {
            let summary = symbolon_pki::describe_certificate(leaf, OffsetDateTime::now_utc());
            let url = summary.as_ref().and_then(|s| s.ocsp_urls.first().cloned());
            let fp = symbolon_pki::sha256_hex(leaf);
            match url {
                None => wait = Duration::from_secs(3600),
                Some(url) => {
                    let usable = cache.as_ref().filter(|c| c.leaf_sha256 == fp && !c.due());
                    if usable.is_none() {
                        match fetch(&url, &anchor, leaf, issuer).await {
                            Ok((response, next_update)) => {
                                metrics.inc(
                                    "symbolon_gateway_ocsp_staple_fetches_total",
                                    &[("result", "ok")],
                                );
                                metrics.gauge_set(
                                    "symbolon_gateway_ocsp_staple_next_update_timestamp_seconds",
                                    &[],
                                    next_update.unix_timestamp() as f64,
                                );
                                tracing::info!(next_update = %symbolon_pki::rfc3339(next_update), "stapling a fresh OCSP response for our certificate");
                                cache = Some(Cached {
                                    leaf_sha256: fp.clone(),
                                    response,
                                    fetched: OffsetDateTime::now_utc(),
                                    next_update,
                                });
                            }
                            Err(e) => {
                                metrics.inc(
                                    "symbolon_gateway_ocsp_staple_fetches_total",
                                    &[("result", "error")],
                                );
                                tracing::warn!("OCSP stapling: {e}; retrying");
                            }
                        }
                    }
                    if let Some(c) = cache.as_ref().filter(|c| c.leaf_sha256 == fp) {
                        if ck.ocsp.as_deref() != Some(c.response.as_slice()) {
                            let stapled = Live {
                                tls: live.tls.with_ocsp(c.response.clone()),
                                policy: live.policy.clone(),
                                by: live.by.clone(),
                                generation: live.generation,
                            };
                            tx.send_replace(Arc::new(stapled));
                            rx.borrow_and_update();
                        }
                        let half = (c.fetched + (c.next_update - c.fetched) / 2)
                            - OffsetDateTime::now_utc();
                        wait = Duration::try_from(half)
                            .unwrap_or(Duration::from_secs(10))
                            .clamp(Duration::from_secs(10), Duration::from_secs(3600));
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rx.changed() => {}
        }
    }
}
