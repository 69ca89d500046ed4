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

use symbolon_core::api_limits::{
    MAX_BODY, MAX_TELEMETRY_CLIENT, MAX_TELEMETRY_COUNTS, MAX_TELEMETRY_REASON,
};

/// Distinct (client, kind, reason) counts kept between two reports, and
/// the bytes of their names: client names can be chosen by anyone who
/// presents a certificate, so both are bounded. Counts for names beyond
/// either bound are not kept until the next report.
const MAX_PENDING: usize = 50_000;
const MAX_PENDING_BYTES: usize = 8 << 20;

type Key = (String, &'static str, String);

#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<Key, i64>,
    /// Bytes of client names and reasons held in `counts`.
    bytes: usize,
}

#[derive(Debug)]
pub struct Telemetry {
    pending: Mutex<Pending>,
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        Arc::new(Telemetry {
            pending: Mutex::new(Pending::default()),
        })
    }

    fn add(&self, client: &str, kind: &'static str, reason: &str) {
        // Client names of refused handshakes are whatever the peer put in
        // its certificate: shorten them to what a report may carry, so one
        // hostile certificate cannot get a whole report refused.
        let key = (
            clip(client, MAX_TELEMETRY_CLIENT),
            kind,
            clip(reason, MAX_TELEMETRY_REASON),
        );
        if let Ok(mut p) = self.pending.lock() {
            if let Some(n) = p.counts.get_mut(&key) {
                *n += 1;
            } else if p.counts.len() < MAX_PENDING
                && p.bytes + key.0.len() + key.2.len() <= MAX_PENDING_BYTES
            {
                p.bytes += key.0.len() + key.2.len();
                p.counts.insert(key, 1);
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

    fn take(&self) -> HashMap<Key, i64> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p).counts)
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
        let head = serde_json::json!({
            "service": service,
            "trust": trust,
            "policy": policy_hash,
            "rules": rules,
        });
        let counts = counts
            .iter()
            .map(|((client, kind, reason), n)| {
                serde_json::json!({"client": client, "kind": kind, "reason": reason, "count": n})
            })
            .collect();
        let (bodies, left_out) = split_report(&head, counts);
        if left_out > 0 {
            tracing::warn!(
                "telemetry: {left_out} count(s) left out: the report's policy and trust alone fill a request body ({MAX_BODY} bytes)"
            );
        }
        let cert = live.borrow().tls.certified_key().clone();
        let mut bodies = bodies.into_iter();
        while let Some(body) = bodies.next() {
            match client::post_json(
                &ca,
                CaAnchor::Root(root.clone()),
                Some(cert.clone()),
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
                    // The rest would most likely fail the same way, each
                    // after its own timeout: drop them with this one.
                    let dropped = 1 + bodies.len();
                    for _ in 0..dropped {
                        metrics.inc(
                            "symbolon_gateway_telemetry_reports_total",
                            &[("result", "dropped")],
                        );
                    }
                    tracing::debug!("{dropped} telemetry report(s) dropped: {e}");
                    break;
                }
            }
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary, marked with a
/// trailing `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const MARK: &str = "…";
    let mut end = max - MARK.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

/// Splits one interval's counts into report bodies `ca serve` accepts:
/// each is `head` plus a `counts` array, at most `MAX_BODY` bytes and
/// `MAX_TELEMETRY_COUNTS` counts. A busy gateway with thousands of distinct
/// clients thus sends several reports instead of one that is refused whole.
/// There is always at least one body: an interval without traffic still
/// reports the policy in force. Also returns how many counts were left out
/// because `head` and that count alone would not fit in a body.
fn split_report(
    head: &serde_json::Value,
    counts: Vec<serde_json::Value>,
) -> (Vec<serde_json::Value>, usize) {
    let with = |counts: Vec<serde_json::Value>| {
        let mut body = head.clone();
        body["counts"] = serde_json::Value::Array(counts);
        body
    };
    // `{…,"counts":[]}`: what every body costs before its first count.
    let base = with(Vec::new()).to_string().len();
    let mut bodies = Vec::new();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut size = base;
    let mut left_out = 0;
    for c in counts {
        let len = c.to_string().len();
        if base + len > MAX_BODY {
            left_out += 1;
            continue;
        }
        // Its bytes, and the comma before it unless it comes first.
        let cost = len + usize::from(!batch.is_empty());
        if size + cost > MAX_BODY || batch.len() == MAX_TELEMETRY_COUNTS {
            bodies.push(with(std::mem::take(&mut batch)));
            size = base + len;
        } else {
            size += cost;
        }
        batch.push(c);
    }
    if !batch.is_empty() || bodies.is_empty() {
        bodies.push(with(batch));
    }
    (bodies, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn head() -> Value {
        json!({"service": "api", "trust": ["ab CN=Root"], "policy": "00".repeat(32), "rules": ["web"]})
    }

    fn count(client: &str, n: i64) -> Value {
        json!({"client": client, "kind": "failed", "reason": "unknown_ca", "count": n})
    }

    /// Every body fits the CA's limits, and together they carry exactly
    /// the counts given, each once.
    fn assert_split_exactly(bodies: &[Value], counts: &[Value]) {
        let mut seen = Vec::new();
        for b in bodies {
            assert!(
                b.to_string().len() <= MAX_BODY,
                "{} bytes",
                b.to_string().len()
            );
            let c = b["counts"].as_array().unwrap();
            assert!(c.len() <= MAX_TELEMETRY_COUNTS);
            assert_eq!(b["policy"], head()["policy"]);
            assert_eq!(b["rules"], head()["rules"]);
            seen.extend(c.iter().cloned());
        }
        assert_eq!(seen, counts);
    }

    #[test]
    fn a_report_too_big_for_one_request_is_split_into_bodies_that_fit() {
        // 3,000 clients with 200-byte names: about 700 KB of counts.
        let counts: Vec<Value> = (0..3000).map(|i| count(&format!("{i:0>200}"), i)).collect();
        let (bodies, left_out) = split_report(&head(), counts.clone());
        assert_eq!(left_out, 0);
        assert!(bodies.len() >= 10, "{} bodies", bodies.len());
        assert_split_exactly(&bodies, &counts);
        // Greedy: every body but the last is nearly full.
        for b in &bodies[..bodies.len() - 1] {
            assert!(b.to_string().len() > MAX_BODY - 400);
        }
    }

    #[test]
    fn counts_of_the_longest_client_names_fit_one_to_a_body_at_least() {
        let long = "x".repeat(MAX_TELEMETRY_CLIENT);
        let counts: Vec<Value> = (0..100).map(|i| count(&long, i)).collect();
        let (bodies, left_out) = split_report(&head(), counts.clone());
        assert_eq!(left_out, 0);
        assert_split_exactly(&bodies, &counts);
    }

    #[test]
    fn a_quiet_interval_still_reports_the_policy_once() {
        let (bodies, left_out) = split_report(&head(), Vec::new());
        assert_eq!(left_out, 0);
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["counts"], json!([]));
        assert_eq!(bodies[0]["rules"], json!(["web"]));
    }

    #[test]
    fn counts_that_cannot_fit_beside_a_huge_head_are_left_out_and_counted() {
        let mut big = head();
        // About 64 KB of rule names: room for small counts only.
        big["rules"] = json!(vec!["r".repeat(100); 620]);
        let small = count("spiffe://example.org/web", 1);
        let (bodies, left_out) = split_report(&big, vec![small.clone()]);
        assert_eq!(left_out, 0, "a small count still fits");
        assert_eq!(bodies.len(), 1);
        let huge = count(&"y".repeat(MAX_TELEMETRY_CLIENT), 1);
        let (bodies, left_out) = split_report(&big, vec![huge, small.clone()]);
        assert_eq!(left_out, 1);
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["counts"], json!([small]));
    }

    #[test]
    fn bug_a_hostile_certificate_subject_is_shortened_to_what_a_report_may_carry() {
        let t = Telemetry::new();
        // A refused handshake's client is the subject the peer wrote; make
        // it long and end it inside a multi-byte character.
        let subject = format!("CN={}", "é".repeat(5000));
        t.failed(&subject, "unknown_ca");
        t.denied("spiffe://example.org/web", &"r".repeat(1000));
        let taken = t.take();
        assert_eq!(taken.len(), 2);
        for (client, _, reason) in taken.keys() {
            assert!(client.len() <= MAX_TELEMETRY_CLIENT, "{}", client.len());
            assert!(reason.len() <= MAX_TELEMETRY_REASON, "{}", reason.len());
        }
        let clipped = taken.keys().find(|k| k.1 == "failed").unwrap();
        assert!(clipped.0.starts_with("CN=éé") && clipped.0.ends_with('…'));
        // Two refusals of the same hostile subject are one count of 2.
        t.failed(&subject, "unknown_ca");
        t.failed(&subject, "unknown_ca");
        assert_eq!(t.take().values().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn pending_counts_are_bounded_in_bytes_as_well_as_in_number() {
        let t = Telemetry::new();
        // 5,000 distinct names of 2 KB: 10 MB, over the 8 MiB budget.
        for i in 0..5000 {
            t.failed(&format!("{i:0>2048}"), "unknown_ca");
        }
        // A name already counted still counts once the budget is spent.
        t.failed(&format!("{:0>2048}", 0), "unknown_ca");
        let taken = t.take();
        let bytes: usize = taken.keys().map(|k| k.0.len() + k.2.len()).sum();
        assert!(bytes <= MAX_PENDING_BYTES, "{bytes}");
        assert!(taken.len() > 4000 && taken.len() < 5000, "{}", taken.len());
        assert_eq!(
            taken[&(format!("{:0>2048}", 0), "failed", "unknown_ca".into())],
            2
        );
        // The next interval starts with a fresh budget.
        t.failed("spiffe://example.org/web", "unknown_ca");
        assert_eq!(t.take().len(), 1);
    }

    #[test]
    fn clip_keeps_short_strings_and_cuts_on_a_character_boundary() {
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip(&"a".repeat(10), 10), "a".repeat(10));
        // "…" takes 3 bytes; "aé" the other 3.
        assert_eq!(clip("aéééé", 6), "aé…");
        assert_eq!(clip("aéééé", 5), "a…");
    }
}
