//! Revocation the gateway enforces: the control plane's feed (pushed within
//! a second), CRLs (URLs or files), a staleness limit with fail-closed or
//! fail-open behaviour, rollback protection, and closing the live
//! connections of a certificate the moment it is revoked.
//!
//! The handshake path only reads an in-memory map (O(1)); all network work
//! happens in background tasks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use symbolon_core::{Metrics, PeerCert, Reason};
use symbolon_tls::{CaAnchor, RevocationCheck};
use tokio::sync::Notify;

use crate::agent::client::{self, CaUrl};

/// Where revocation data comes from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub feed: Option<CaUrl>,
    /// Ask OCSP (the certificate's AIA URL, or `ocsp_url`) after the
    /// handshake when no fresh answer is cached.
    pub ocsp: bool,
    pub ocsp_url: Option<String>,
    pub crls: Vec<CrlSource>,
    pub crl_refresh: Duration,
    /// The trust anchor for the CA's HTTPS endpoint and CRL signatures.
    pub anchors: Vec<rustls::pki_types::CertificateDer<'static>>,
}

#[derive(Clone, Debug)]
pub enum CrlSource {
    Url(CaUrl, String),
    File(PathBuf),
}

/// (issuer, serial, reason, revoked at) as a source reports it.
pub type RevokedEntry = (String, String, String, String);

/// Live connections per certificate key, each with the Notify that closes it.
type Registry = HashMap<String, Vec<(u64, Arc<Notify>)>>;

/// A verified CRL: its number, whether it is current, its entries.
pub type CrlContents = (String, u64, bool, Vec<RevokedEntry>);

#[derive(Debug, Default)]
struct Inner {
    /// `issuer \\n serial` → (reason, revoked_at).
    revoked: HashMap<String, (String, String)>,
    feed_number: u64,
    /// Highest CRL number seen per CRL issuer (each CA numbers its own).
    crl_numbers: HashMap<String, u64>,
    /// When a source last confirmed the data is current.
    fresh_at: Option<Instant>,
    last_warning: Option<Instant>,
}

/// A cached OCSP answer: revoked (reason, time) or good, until nextUpdate.
type OcspAnswer = (Option<(String, String)>, time::OffsetDateTime);

/// The gateway's revocation state.
#[derive(Debug)]
pub struct Revocation {
    inner: RwLock<Inner>,
    ocsp_cache: Mutex<HashMap<String, OcspAnswer>>,
    /// Whether a feed or CRL source exists; staleness applies to them (OCSP
    /// answers carry their own nextUpdate).
    bulk: bool,
    ocsp: Option<(
        Option<String>,
        Vec<rustls::pki_types::CertificateDer<'static>>,
    )>,
    fail_open: bool,
    max_staleness: Duration,
    conns: Mutex<Registry>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

fn key(issuer: &str, serial: &str) -> String {
    format!("{issuer}\n{}", serial.to_ascii_lowercase())
}

/// Unregisters a connection when it ends.
#[derive(Debug)]
pub struct ConnGuard {
    rev: Arc<Revocation>,
    key: String,
    id: u64,
    pub closed: Arc<Notify>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.rev.conns.lock()
            && let Some(v) = c.get_mut(&self.key)
        {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                c.remove(&self.key);
            }
        }
    }
}

impl Revocation {
    pub fn new(
        fail_open: bool,
        max_staleness: Duration,
        metrics: Arc<Metrics>,
        sources: &Sources,
    ) -> Arc<Revocation> {
        Arc::new(Revocation {
            inner: RwLock::new(Inner::default()),
            ocsp_cache: Mutex::new(HashMap::new()),
            bulk: sources.feed.is_some() || !sources.crls.is_empty(),
            ocsp: sources
                .ocsp
                .then(|| (sources.ocsp_url.clone(), sources.anchors.clone())),
            fail_open,
            max_staleness,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    /// Registers a live connection so a revocation can close it.
    pub fn register(self: &Arc<Self>, peer: &PeerCert) -> ConnGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(Notify::new());
        let k = key(&peer.issuer, &peer.serial);
        if let Ok(mut c) = self.conns.lock() {
            c.entry(k.clone()).or_default().push((id, closed.clone()));
        }
        ConnGuard {
            rev: self.clone(),
            key: k,
            id,
            closed,
        }
    }

    fn close(&self, keys: &[String]) {
        let Ok(c) = self.conns.lock() else { return };
        for k in keys {
            if let Some(v) = c.get(k) {
                for (_, n) in v {
                    // notify_one stores a permit, so a connection that is
                    // not waiting at this instant still sees it.
                    n.notify_one();
                    self.metrics.inc(
                        "symbolon_gateway_connections_closed_total",
                        &[("reason", "revoked")],
                    );
                }
            }
        }
    }

    fn merge(&self, inner: &mut Inner, entries: Vec<RevokedEntry>) -> Vec<String> {
        let mut fresh = Vec::new();
        // One line per revocation, but a summary for bulk loads (a first
        // CRL of a million entries must not write a million lines).
        let chatty = entries.len() <= 20;
        for (issuer, serial, reason, at) in entries {
            let k = key(&issuer, &serial);
            if !inner.revoked.contains_key(&k) {
                if chatty {
                    tracing::warn!(
                        reason = "revoked",
                        serial,
                        issuer,
                        revocation_reason = reason,
                        "certificate revoked: refusing new handshakes and closing its connections"
                    );
                }
                fresh.push(k.clone());
            }
            inner.revoked.insert(k, (reason, at));
        }
        self.metrics.gauge_set(
            "symbolon_gateway_revocation_entries",
            &[],
            inner.revoked.len() as f64,
        );
        fresh
    }

    /// Applies feed data numbered `number`. Refuses state older than what
    /// was already seen (a restored database must not un-revoke anything).
    pub fn apply_feed(&self, number: u64, entries: Vec<RevokedEntry>) -> bool {
        let fresh = {
            let Ok(mut inner) = self.inner.write() else {
                return false;
            };
            if number < inner.feed_number {
                self.metrics.inc(
                    "symbolon_gateway_revocation_rollbacks_total",
                    &[("source", "feed")],
                );
                tracing::error!(
                    seen = inner.feed_number,
                    offered = number,
                    "ALERT: the revocation feed went backwards (restored database?); keeping the newer state"
                );
                return false;
            }
            inner.feed_number = number;
            inner.fresh_at = Some(Instant::now());
            self.merge(&mut inner, entries)
        };
        self.close(&fresh);
        true
    }

    /// A heartbeat confirms freshness; a number ahead of ours means we
    /// missed an update and must resubscribe for a snapshot.
    pub fn heartbeat(&self, number: u64) -> bool {
        let Ok(mut inner) = self.inner.write() else {
            return false;
        };
        if number < inner.feed_number {
            self.metrics.inc(
                "symbolon_gateway_revocation_rollbacks_total",
                &[("source", "feed")],
            );
            tracing::error!(
                seen = inner.feed_number,
                offered = number,
                "ALERT: the revocation feed went backwards; keeping the newer state"
            );
            return true;
        }
        if number > inner.feed_number {
            return false;
        }
        inner.fresh_at = Some(Instant::now());
        true
    }

    /// Applies a verified CRL numbered `number`.
    pub fn apply_crl(
        &self,
        issuer: &str,
        number: u64,
        current: bool,
        entries: Vec<RevokedEntry>,
    ) -> Result<(), String> {
        let fresh = {
            let Ok(mut inner) = self.inner.write() else {
                return Err("state lock poisoned".into());
            };
            let seen = inner.crl_numbers.get(issuer).copied().unwrap_or(0);
            if number < seen {
                self.metrics.inc(
                    "symbolon_gateway_revocation_rollbacks_total",
                    &[("source", "crl")],
                );
                let msg = format!(
                    "CRL number {number} from {issuer} is lower than {seen} already seen (restored database?); refused, keeping the newer state"
                );
                tracing::error!("ALERT: {msg}");
                return Err(msg);
            }
            inner.crl_numbers.insert(issuer.to_string(), number);
            if current {
                inner.fresh_at = Some(Instant::now());
            }
            self.merge(&mut inner, entries)
        };
        self.close(&fresh);
        Ok(())
    }

    /// The OCSP source, run after the handshake and before any byte goes
    /// upstream: a cached answer is used until its nextUpdate; otherwise the
    /// responder is asked, and a failure follows `on_unavailable`.
    pub async fn check_ocsp(
        &self,
        peer: &PeerCert,
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<(), (Reason, String)> {
        let Some((url, anchors)) = &self.ocsp else {
            return Ok(());
        };
        let k = key(&peer.issuer, &peer.serial);
        let now = time::OffsetDateTime::now_utc();
        let cached = self
            .ocsp_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&k).cloned())
            .filter(|(_, next)| *next > now);
        let answer = match cached {
            Some(a) => Ok(a),
            None => self.ask_ocsp(url.as_deref(), anchors, chain).await,
        };
        match answer {
            Ok((revoked, next)) => {
                if let Ok(mut c) = self.ocsp_cache.lock() {
                    if c.len() > 100_000 {
                        c.retain(|_, (_, n)| *n > now);
                    }
                    c.insert(k, (revoked.clone(), next));
                }
                match revoked {
                    Some((reason, at)) => {
                        let fresh = self
                            .inner
                            .write()
                            .map(|mut i| {
                                self.merge(
                                    &mut i,
                                    vec![(
                                        peer.issuer.clone(),
                                        peer.serial.clone(),
                                        reason.clone(),
                                        at.clone(),
                                    )],
                                )
                            })
                            .unwrap_or_default();
                        self.close(&fresh);
                        Err((
                            Reason::Revoked,
                            format!(
                                "OCSP says serial {} was revoked at {at} (reason {reason})",
                                peer.serial
                            ),
                        ))
                    }
                    None => Ok(()),
                }
            }
            Err(e) => {
                self.metrics.inc(
                    "symbolon_gateway_revocation_source_errors_total",
                    &[("source", "ocsp")],
                );
                if self.fail_open {
                    self.metrics
                        .inc("symbolon_gateway_revocation_fail_open_total", &[]);
                    tracing::warn!(
                        reason = "revocation_unavailable",
                        "OCSP unavailable ({e}); on_unavailable = \"fail-open\": accepting serial {}",
                        peer.serial
                    );
                    Ok(())
                } else {
                    Err((
                        Reason::RevocationUnavailable,
                        format!("OCSP unavailable ({e}); on_unavailable = \"fail-closed\""),
                    ))
                }
            }
        }
    }

    async fn ask_ocsp(
        &self,
        url: Option<&str>,
        anchors: &[rustls::pki_types::CertificateDer<'static>],
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<OcspAnswer, String> {
        let leaf = chain.first().ok_or("no client certificate")?;
        let now = time::OffsetDateTime::now_utc();
        let summary = symbolon_pki::describe_certificate(leaf, now)
            .ok_or("the certificate does not parse")?;
        let url = url
            .map(str::to_string)
            .or_else(|| summary.ocsp_urls.first().cloned())
            .ok_or("the certificate names no OCSP responder and revocation.ocsp_url is not set")?;
        let issuer = chain
            .iter()
            .skip(1)
            .chain(anchors.iter())
            .find(|c| {
                symbolon_pki::describe_certificate(c, now)
                    .is_some_and(|s| s.subject == summary.issuer)
            })
            .ok_or(
                "the issuer certificate is neither in the client's chain nor in server.client_ca",
            )?;
        let root = anchors
            .iter()
            .find(|c| symbolon_pki::describe_certificate(c, now).is_some_and(|s| s.self_signed))
            .or(anchors.first())
            .ok_or("no trust anchor")?;
        let ca = CaUrl::parse(&url).map_err(|e| e.replace("--ca ", "OCSP URL "))?;
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_else(|| "/".into());
        let req = symbolon_pki::ocsp_request(leaf, issuer).map_err(|e| e.to_string())?;
        let resp = client::post_bytes(
            &ca,
            CaAnchor::Root(root.clone()),
            &path,
            "application/ocsp-request",
            req,
        )
        .await
        .map_err(|e| e.to_string())?;
        let (status, next) = symbolon_pki::read_ocsp_response(&resp, leaf, issuer)?;
        match status {
            symbolon_pki::OcspStatus::Good => Ok((None, next)),
            symbolon_pki::OcspStatus::Revoked { at, reason } => {
                Ok((Some((reason.to_string(), symbolon_pki::rfc3339(at))), next))
            }
            symbolon_pki::OcspStatus::Unknown => {
                Err("the OCSP responder does not know this certificate".into())
            }
        }
    }

    /// Seconds since a source last confirmed fresh data.
    pub fn age(&self) -> Option<Duration> {
        self.inner
            .read()
            .ok()
            .and_then(|i| i.fresh_at.map(|t| t.elapsed()))
    }
}

impl RevocationCheck for Revocation {
    fn check(&self, peer: &PeerCert) -> Result<(), (Reason, String)> {
        let Ok(inner) = self.inner.read() else {
            return Err((
                Reason::RevocationUnavailable,
                "revocation state unavailable".into(),
            ));
        };
        if let Some((reason, at)) = inner.revoked.get(&key(&peer.issuer, &peer.serial)) {
            return Err((
                Reason::Revoked,
                format!(
                    "serial {} was revoked at {at} (reason {reason})",
                    peer.serial
                ),
            ));
        }
        let stale = self.bulk
            && inner
                .fresh_at
                .is_none_or(|t| t.elapsed() > self.max_staleness);
        if !stale {
            return Ok(());
        }
        let age = inner
            .fresh_at
            .map(|t| format!("{}s old", t.elapsed().as_secs()))
            .unwrap_or_else(|| "never confirmed".into());
        drop(inner);
        if self.fail_open {
            self.metrics
                .inc("symbolon_gateway_revocation_fail_open_total", &[]);
            let warn = self.inner.write().ok().map(|mut i| {
                let due = i
                    .last_warning
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
                if due {
                    i.last_warning = Some(Instant::now());
                }
                due
            });
            if warn == Some(true) {
                tracing::warn!(
                    reason = "revocation_unavailable",
                    "revocation data is stale ({age}, limit {:?}); on_unavailable = \"fail-open\": accepting serial {}",
                    self.max_staleness,
                    peer.serial
                );
            }
            Ok(())
        } else {
            Err((
                Reason::RevocationUnavailable,
                format!(
                    "no revocation source confirmed fresh data within max_staleness ({:?}; data {age}); on_unavailable = \"fail-closed\"",
                    self.max_staleness
                ),
            ))
        }
    }
}

fn parse_entries(v: &serde_json::Value) -> Vec<RevokedEntry> {
    v["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e["issuer"].as_str()?.to_string(),
                        e["serial"].as_str()?.to_string(),
                        e["reason"].as_str().unwrap_or("unspecified").to_string(),
                        e["revoked_at"].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Follows the feed forever, reconnecting with capped backoff.
async fn follow_feed(rev: Arc<Revocation>, ca: CaUrl, anchor: CaAnchor) {
    let mut delay = Duration::from_millis(200);
    loop {
        match client::get_stream(&ca, anchor.clone(), "/v1/revocations/feed").await {
            Ok(mut body) => {
                delay = Duration::from_millis(200);
                tracing::info!(ca = %format!("{}:{}", ca.host, ca.port), "following the revocation feed");
                let mut buf = String::new();
                'stream: loop {
                    // A silent link is a dead link: heartbeats come every second.
                    let frame =
                        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
                            Ok(Some(Ok(f))) => f,
                            _ => break 'stream,
                        };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    buf.push_str(&String::from_utf8_lossy(&data));
                    while let Some(end) = buf.find("\n\n") {
                        let msg: String = buf.drain(..end + 2).collect();
                        let mut event = "";
                        let mut payload = String::new();
                        for line in msg.lines() {
                            if let Some(e) = line.strip_prefix("event: ") {
                                event = e;
                            } else if let Some(d) = line.strip_prefix("data: ") {
                                payload.push_str(d);
                            }
                        }
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                            continue;
                        };
                        let number = v["number"].as_u64().unwrap_or(0);
                        let ok = match event {
                            "snapshot" | "revoked" => rev.apply_feed(number, parse_entries(&v)),
                            "heartbeat" => rev.heartbeat(number),
                            _ => true,
                        };
                        if !ok {
                            // Missed an update or saw a rollback: resubscribe.
                            break 'stream;
                        }
                    }
                }
                tracing::warn!("revocation feed disconnected; reconnecting");
            }
            Err(e) => tracing::warn!(
                reason = "revocation_unavailable",
                "revocation feed unavailable: {e}"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Verifies a CRL against the trust anchors and returns (number, current, entries).
pub fn read_crl(
    der: &[u8],
    anchors: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<CrlContents, String> {
    let (_, crl) =
        x509_parser::parse_x509_crl(der).map_err(|_| "not a valid DER CRL".to_string())?;
    let signer = anchors
        .iter()
        .filter_map(|a| x509_parser::parse_x509_certificate(a).ok().map(|(_, x)| x))
        .find(|x| {
            x.subject().as_raw() == crl.issuer().as_raw()
                && crl.verify_signature(x.public_key()).is_ok()
        })
        .ok_or_else(|| {
            format!(
                "the CRL from {} is not signed by a CA in server.client_ca",
                crl.issuer()
            )
        })?;
    drop(signer);
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .ok_or("the CRL has no CRL number")?;
    let now = x509_parser::time::ASN1Time::now();
    let current = crl.next_update().is_some_and(|n| n > now);
    let issuer = crl.issuer().to_string();
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| {
            let serial = symbolon_pki::Serial::from_be_bytes(r.raw_serial()).to_hex();
            // The same words and time format as the feed, so a refusal reads
            // the same whichever source reported it.
            let code = r.reason_code().map(|(_, c)| c.0).unwrap_or(0);
            let reason = symbolon_pki::RevocationReason::ALL
                .iter()
                .find(|x| x.code() == code)
                .map(|x| x.as_str().to_string())
                .unwrap_or_else(|| format!("reason code {code}"));
            (
                issuer.clone(),
                serial,
                reason,
                symbolon_pki::rfc3339(r.revocation_date.to_datetime()),
            )
        })
        .collect();
    Ok((issuer, number, current, entries))
}

async fn poll_crls(rev: Arc<Revocation>, sources: Sources, anchor: CaAnchor) {
    // Per source: the digest of the last CRL applied and its nextUpdate. An
    // unchanged CRL is not parsed and merged again, only reconfirmed.
    let mut last: Vec<Option<(String, String, u64, time::OffsetDateTime)>> =
        vec![None; sources.crls.len()];
    loop {
        for (i, src) in sources.crls.iter().enumerate() {
            let bytes = match src {
                CrlSource::File(p) => tokio::fs::read(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display())),
                CrlSource::Url(ca, path) => client::get_bytes(ca, anchor.clone(), path)
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string()),
            };
            let der = bytes.and_then(|b| {
                if b.starts_with(b"-----BEGIN") {
                    pem::parse(&b)
                        .map(|p| p.into_contents())
                        .map_err(|e| format!("bad PEM: {e}"))
                } else {
                    Ok(b)
                }
            });
            let applied = der.and_then(|d| {
                let digest = symbolon_pki::sha256_hex(&d);
                let now = time::OffsetDateTime::now_utc();
                if let Some((seen, issuer, number, next)) = &last[i]
                    && *seen == digest
                {
                    return rev.apply_crl(issuer, *number, *next > now, Vec::new());
                }
                let (issuer, number, current, entries) = read_crl(&d, &sources.anchors)?;
                rev.apply_crl(&issuer, number, current, entries)?;
                let next = x509_parser::parse_x509_crl(&d)
                    .ok()
                    .and_then(|(_, c)| c.next_update().map(|t| t.to_datetime()))
                    .unwrap_or(now);
                last[i] = Some((digest, issuer, number, next));
                Ok(())
            });
            if let Err(e) = applied {
                rev.metrics.inc(
                    "symbolon_gateway_revocation_source_errors_total",
                    &[("source", "crl")],
                );
                tracing::warn!(reason = "revocation_unavailable", "CRL source {src:?}: {e}");
            }
        }
        tokio::time::sleep(sources.crl_refresh).await;
    }
}

/// Starts the background sources and the age gauge.
pub fn start(rev: Arc<Revocation>, sources: Sources) {
    let anchor = CaAnchor::Root(
        sources
            .anchors
            .iter()
            .find(|c| {
                symbolon_pki::describe_certificate(c, time::OffsetDateTime::now_utc())
                    .is_some_and(|s| s.self_signed)
            })
            .or(sources.anchors.first())
            .cloned()
            .unwrap_or_else(|| rustls::pki_types::CertificateDer::from(Vec::new())),
    );
    if let Some(feed) = sources.feed.clone() {
        tokio::spawn(follow_feed(rev.clone(), feed, anchor.clone()));
    }
    if !sources.crls.is_empty() {
        tokio::spawn(poll_crls(rev.clone(), sources, anchor));
    }
    tokio::spawn(async move {
        loop {
            let age = rev.age().map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY);
            rev.metrics.gauge_set(
                "symbolon_gateway_revocation_data_age_seconds",
                &[],
                if age.is_finite() { age } else { -1.0 },
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
