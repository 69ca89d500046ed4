//! TCP mode: authorize the connection (policy without path), connect
//! upstream, optionally send a PROXY protocol v2 header carrying the
//! verified identity, then copy bytes both ways.

use std::sync::Arc;

use symbolon_core::RequestFacts;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::identity::{proxy_v2, xfcc};
use super::server::{ConnContext, Shared};

pub async fn forward(mut stream: TlsStream<TcpStream>, ctx: ConnContext, shared: Arc<Shared>) {
    let live = shared.live.borrow().clone();
    let decision = live.policy.evaluate(&RequestFacts {
        peer: ctx.peer.as_ref(),
        path: None,
        method: None,
        now: time::OffsetDateTime::now_utc(),
    });
    if let Some(rule) = decision.would_deny() {
        shared.metrics.inc(
            "symbolon_gateway_policy_decisions_total",
            &[("rule", rule), ("effect", "audit_deny")],
        );
        tracing::info!(reason = "policy_denied", mode = "audit", rule, remote = %ctx.remote, "connection would be denied (audit rule, allowed)");
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
        let who = ctx
            .peer
            .as_ref()
            .map(|p| format!("subject={:?} serial={}", p.subject, p.serial))
            .unwrap_or_else(|| "unauthenticated".into());
        tracing::warn!(reason = "policy_denied", rule = decision.rule_label(), remote = %ctx.remote, "connection denied [{who}]");
        let _ = stream.shutdown().await;
        return;
    }
    if decision.would_deny().is_none() {
        shared.metrics.inc(
            "symbolon_gateway_policy_decisions_total",
            &[("rule", decision.rule_label()), ("effect", "allow")],
        );
    }
    let mut upstream = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(shared.cfg.upstream),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared
                .metrics
                .inc("symbolon_gateway_upstream_errors_total", &[]);
            tracing::error!(reason = "upstream_unavailable", upstream = %shared.cfg.upstream, "cannot connect upstream: {e}");
            return;
        }
        Err(_) => {
            shared
                .metrics
                .inc("symbolon_gateway_upstream_errors_total", &[]);
            tracing::error!(reason = "upstream_unavailable", upstream = %shared.cfg.upstream, "upstream connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if shared.cfg.proxy_protocol {
        let identity = ctx.peer.as_ref().map(|p| xfcc(live.by.as_deref(), p));
        let header = proxy_v2(
            ctx.remote,
            ctx.local,
            ctx.tls_version,
            ctx.peer.as_ref(),
            identity.as_deref(),
        );
        if let Err(e) = upstream.write_all(&header).await {
            tracing::error!(
                reason = "upstream_unavailable",
                "writing the PROXY header failed: {e}"
            );
            return;
        }
    }
    let copy = tokio::io::copy_bidirectional(&mut stream, &mut upstream);
    tokio::select! {
        _ = copy => {}
        why = ctx.must_close() => {
            tracing::info!(remote = %ctx.remote, "connection closed: {why}");
        }
    }
}
