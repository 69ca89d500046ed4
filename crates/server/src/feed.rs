//! The revocation feed: `GET /v1/revocations/feed`, server-sent events.
//!
//! A subscriber first gets the full current set (`snapshot`), then each new
//! revocation (`revoked`), and a `heartbeat` every second carrying the
//! current revocation number so it can tell fresh data from a dead link.
//! The revocation number is the CRL number: every revocation — through the
//! API, the CLI or another replica — publishes a new CRL, and a watcher
//! polls the store for it, so all replicas feed the same state.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::AppState;

/// How often the store is checked for a new CRL number.
const POLL: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FeedEntry {
    pub serial: String,
    pub issuer: String,
    pub reason: String,
    pub revoked_at: String,
}

#[derive(Clone, Debug, Default)]
pub struct FeedState {
    pub number: u64,
    pub entries: Vec<FeedEntry>,
}

/// Watches the store and publishes every new revocation state.
pub fn spawn_watcher(auth: Arc<AppState>) {
    tokio::spawn(async move {
        let mut current = 0u64;
        loop {
            // Only the number is read here: this runs ten times a second.
            match auth.auth.store.latest_crl_info().await {
                Ok(Some((number, _, _))) if number > current => {
                    match auth.auth.store.revoked(OffsetDateTime::now_utc()).await {
                        Ok(list) => {
                            current = number;
                            let issuer = auth.auth.issuer.subject().to_string();
                            let entries = list
                                .into_iter()
                                .map(|r| FeedEntry {
                                    serial: r.serial,
                                    issuer: issuer.clone(),
                                    reason: r.reason,
                                    revoked_at: symbolon_pki::rfc3339(r.revoked_at),
                                })
                                .collect();
                            auth.metrics.gauge_set(
                                "symbolon_ca_revocation_number",
                                &[],
                                current as f64,
                            );
                            auth.feed.send_replace(Arc::new(FeedState {
                                number: current,
                                entries,
                            }));
                        }
                        Err(e) => {
                            tracing::error!("revocation feed: reading revocations failed: {e}")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("revocation feed: reading the latest CRL failed: {e}"),
            }
            tokio::time::sleep(POLL).await;
        }
    });
}

fn event(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

pub async fn feed(State(state): State<Arc<AppState>>) -> Response {
    let mut rx = state.feed.subscribe();
    let (tx, out) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let snapshot = rx.borrow_and_update().clone();
        let mut sent: HashSet<String> = snapshot.entries.iter().map(|e| e.serial.clone()).collect();
        let mut number = snapshot.number;
        if tx
            .send(event(
                "snapshot",
                &serde_json::json!({"number": number, "entries": snapshot.entries}),
            ))
            .await
            .is_err()
        {
            return;
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let st = rx.borrow_and_update().clone();
                    let fresh: Vec<&FeedEntry> = st.entries.iter().filter(|e| !sent.contains(&e.serial)).collect();
                    number = st.number;
                    let msg = event("revoked", &serde_json::json!({"number": number, "entries": fresh}));
                    sent.extend(fresh.iter().map(|e| e.serial.clone()));
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                _ = beat.tick() => {
                    if tx.send(event("heartbeat", &serde_json::json!({"number": number}))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = ReceiverStream::new(out).map(Ok::<Bytes, Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
