//! Telemetry to the control plane: counts of allowed requests, policy
//! denials by rule and failed handshakes by reason, per client identity,
//! sent every few seconds over mTLS. A control plane that is down costs
//! the gateway nothing but a counter of dropped reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use symbolon_core::Metrics;
use symbolon_tls::CaAnchor;
use tokio::sync::watch;

use super::state::Live;
use crate::agent::client::{self, CaUrl};

#[derive(Debug)]
pub struct Telemetry {
    counts: Mutex<HashMap<(String, &'static str, String), i64>>,
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        Arc::new(Telemetry {
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn add(&self, client: &str, kind: &'static str, reason: &str) {
        if let Ok(mut c) = self.counts.lock() {
            // Bounded: a flood of distinct identities cannot grow memory
            // without limit between two reports.
            if c.len() < 50_000 || c.contains_key(&(client.to_string(), kind, reason.to_string())) {
                *c.entry((client.to_string(), kind, reason.to_string()))
                    .or_insert(0) += 1;
            }
        }
    }

    pub fn allowed(&self, client: &str) {
        self.add(client, "allowed", "");
    }

    pub fn denied(&self, client: &str, rule: &str) {
        self.add(client, "denied", rule);
    }

    pub fn failed(&self, client: &str, reason: &str) {
        self.add(client, "failed", reason);
    }

    fn take(&self) -> HashMap<(String, &'static str, String), i64> {
        self.counts
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// How a peer appears in telemetry.
pub fn client_name(peer: Option<&symbolon_core::PeerCert>) -> String {
    match peer {
        Some(p) => p
            .spiffe_id
            .clone()
            .or_else(|| p.dns.first().cloned())
            .unwrap_or_else(|| p.subject.clone()),
        None => "unauthenticated".into(),
    }
}

pub async fn report_loop(
    t: Arc<Telemetry>,
    ca: CaUrl,
    service: String,
    interval: Duration,
    live: watch::Receiver<Arc<Live>>,
    anchors: Vec<rustls::pki_types::CertificateDer<'static>>,
    metrics: Arc<Metrics>,
) {
    let now = time::OffsetDateTime::now_utc();
    let trust: Vec<String> = anchors
        .iter()
        .filter_map(|c| {
            symbolon_pki::describe_certificate(c, now)
                .map(|s| format!("{} {}", s.sha256_fingerprint, s.subject))
        })
        .collect();
    let root = anchors
        .iter()
        .find(|c| symbolon_pki::describe_certificate(c, now).is_some_and(|s| s.self_signed))
        .or(anchors.first())
        .cloned();
    let Some(root) = root else { return };
    loop {
        tokio::time::sleep(interval).await;
        let counts = t.take();
        // The policy in force, so the control plane can audit changes.
        let policy = live.borrow().policy.clone();
        let policy_hash = symbolon_pki::sha256_hex(format!("{policy:?}").as_bytes());
        let rules: Vec<&str> = policy.rule_names().collect();
        let body = serde_json::json!({
            "service": service,
            "trust": trust,
            "policy": policy_hash,
            "rules": rules,
            "counts": counts.iter().map(|((client, kind, reason), n)| serde_json::json!({"client": client, "kind": kind, "reason": reason, "count": n})).collect::<Vec<_>>(),
        });
        let cert = live.borrow().tls.certified_key().clone();
        match client::post_json(
            &ca,
            CaAnchor::Root(root.clone()),
            Some(cert),
            "/v1/telemetry",
            &body,
        )
        .await
        {
            Ok(_) => metrics.inc(
                "symbolon_gateway_telemetry_reports_total",
                &[("result", "sent")],
            ),
            Err(e) => {
                metrics.inc(
                    "symbolon_gateway_telemetry_reports_total",
                    &[("result", "dropped")],
                );
                tracing::debug!("telemetry report dropped: {e}");
            }
        }
    }
}
