//! Getting and keeping a certificate: `symbolon enroll` (one-time token,
//! pinned root) and `symbolon agent` (renewal before expiry, atomic
//! install, reload hook).

pub mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::CertificateDer;
use symbolon_core::{Identity, Metrics};
use symbolon_pki::files::{self, PRIVATE, PUBLIC};
use symbolon_pki::{KeyType, PublicKeyData, Purpose, VerifyOptions, input};
use symbolon_tls::CaAnchor;
use time::OffsetDateTime;

use client::{CaUrl, CallError};

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";
pub const CA_FILE: &str = "ca.pem";

/// Every agent metric, as rendered at /metrics.
pub const METRICS: symbolon_core::MetricHelp = &[
    (
        "symbolon_agent_cert_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the installed certificate.",
    ),
    (
        "symbolon_agent_renewals_total",
        "counter",
        "Renewal attempts by result.",
    ),
    (
        "symbolon_agent_hook_runs_total",
        "counter",
        "Reload hook runs by result.",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Pki(#[from] symbolon_pki::PkiError),
}

/// A CSR for `identities` signed by `key`.
pub fn csr_pem(identities: &[Identity], key: &KeyPair) -> Result<String, AgentError> {
    let mut p = CertificateParams::default();
    // No subject: the identity is in the SANs (rcgen's default CN is a
    // placeholder that would end up in the certificate).
    p.distinguished_name = rcgen::DistinguishedName::new();
    for id in identities {
        let san = match id {
            Identity::Spiffe(s) => SanType::URI(
                s.to_string()
                    .try_into()
                    .map_err(|e| AgentError::Refused(format!("{e}")))?,
            ),
            Identity::Uri(u) => SanType::URI(
                u.as_str()
                    .try_into()
                    .map_err(|e| AgentError::Refused(format!("{e}")))?,
            ),
            Identity::Dns(d) => SanType::DnsName(
                d.as_str()
                    .try_into()
                    .map_err(|e| AgentError::Refused(format!("{e}")))?,
            ),
            Identity::Ip(ip) => SanType::IpAddress(*ip),
        };
        p.subject_alt_names.push(san);
    }
    let csr = p
        .serialize_request(key)
        .map_err(|e| AgentError::Refused(format!("building the CSR: {e}")))?;
    csr.pem()
        .map_err(|e| AgentError::Refused(format!("building the CSR: {e}")))
}

/// Checks an answer from the CA before anything is written: the leaf must
/// carry our key and chain to the root we trust. Returns the chain and root.
fn check_issued(
    answer: &serde_json::Value,
    key: &KeyPair,
    root: Option<&CertificateDer<'static>>,
) -> Result<(Vec<CertificateDer<'static>>, CertificateDer<'static>), AgentError> {
    let parse = |field: &str| -> Result<Vec<CertificateDer<'static>>, AgentError> {
        let text = answer[field]
            .as_str()
            .ok_or_else(|| AgentError::Refused(format!("the CA's answer has no {field}")))?;
        let blocks = pem::parse_many(text)
            .map_err(|e| AgentError::Refused(format!("the CA's {field} is not PEM: {e}")))?;
        Ok(blocks
            .into_iter()
            .map(|b| CertificateDer::from(b.into_contents()))
            .collect())
    };
    let chain = parse("certificate")?;
    let given_root = parse("ca")?
        .into_iter()
        .next()
        .ok_or_else(|| AgentError::Refused("the CA sent no root".into()))?;
    let root = match root {
        Some(r) if r.as_ref() != given_root.as_ref() => {
            return Err(AgentError::Refused(
                "the CA answered with a different root than ca.pem; refusing to install".into(),
            ));
        }
        Some(r) => r.clone(),
        None => given_root,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| AgentError::Refused("the CA sent no certificate".into()))?;
    let summary = symbolon_pki::describe_certificate(leaf, OffsetDateTime::now_utc())
        .ok_or_else(|| AgentError::Refused("the issued certificate does not parse".into()))?;
    if summary.spki_sha256 != symbolon_pki::spki_pin(&key.subject_public_key_info()) {
        return Err(AgentError::Refused(
            "the issued certificate does not carry our key; refusing to install it".into(),
        ));
    }
    let trust = [root.clone()];
    let opts = VerifyOptions {
        trust: &trust,
        intermediates: &chain[1..],
        crls: &[],
        at: OffsetDateTime::now_utc(),
        purpose: Purpose::Any,
        name: None,
        max_intermediates: 4,
    };
    symbolon_pki::verify(leaf, &opts)
        .map_err(|e| AgentError::Refused(format!("the issued certificate does not verify: {e}")))?;
    Ok((chain, root))
}

/// Writes cert.pem, key.pem (0600) and ca.pem so that either all three
/// are the new ones or none changed.
fn install(
    dir: &Path,
    chain: &[CertificateDer<'static>],
    key: &KeyPair,
    root: &CertificateDer<'static>,
) -> Result<(), AgentError> {
    let cert_pem: String = chain
        .iter()
        .map(|c| symbolon_pki::to_pem("CERTIFICATE", c))
        .collect();
    let key_pem = symbolon_pki::to_pem("PRIVATE KEY", &key.serialize_der());
    let ca_pem = symbolon_pki::to_pem("CERTIFICATE", root);
    // Key first in the commit order: a crash between renames leaves the new
    // key with the old certificate only for files read at that instant;
    // consumers reload after the hook, which runs once all are in place.
    files::write_all_atomic(&[
        (&dir.join(KEY_FILE), key_pem.as_bytes(), PRIVATE),
        (&dir.join(CERT_FILE), cert_pem.as_bytes(), PUBLIC),
        (&dir.join(CA_FILE), ca_pem.as_bytes(), PUBLIC),
    ])?;
    Ok(())
}

#[derive(Debug)]
pub struct Enrolled {
    pub serial: String,
    pub not_after: String,
    pub identities: Vec<String>,
}

/// `symbolon enroll`: key generated here (it never leaves the machine), CSR
/// for the token's identities, root pinned by fingerprint.
pub async fn enroll(
    ca: &CaUrl,
    fingerprint: &str,
    token: &str,
    out: &Path,
    key_type: KeyType,
) -> Result<Enrolled, AgentError> {
    let claims = symbolon_pki::token_claims_unverified(token)
        .map_err(|e| AgentError::Refused(format!("--token: {e}")))?;
    let identities = claims
        .parsed_identities()
        .map_err(|e| AgentError::Refused(format!("--token: {e}")))?;
    let key = key_type.generate()?;
    let csr = csr_pem(&identities, &key)?;
    let answer = client::post_json(
        ca,
        CaAnchor::Pinned(fingerprint.to_string()),
        None,
        "/v1/enroll",
        &serde_json::json!({"token": token, "csr": csr}),
    )
    .await?;
    let (chain, root) = check_issued(&answer, &key, None)?;
    if symbolon_pki::sha256_hex(&root) != fingerprint.replace(':', "").to_ascii_lowercase() {
        return Err(AgentError::Refused(
            "the root in the CA's answer is not the pinned one; refusing to install".into(),
        ));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| AgentError::Refused(format!("{}: cannot create: {e}", out.display())))?;
    install(out, &chain, &key, &root)?;
    Ok(Enrolled {
        serial: answer["serial"].as_str().unwrap_or_default().to_string(),
        not_after: answer["not_after"].as_str().unwrap_or_default().to_string(),
        identities: claims.identities,
    })
}

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub ca: CaUrl,
    pub dir: PathBuf,
    /// Fraction of the lifetime after which to renew (0.1–0.95).
    pub renew_at: f64,
    pub exec: Option<String>,
    pub signal: Option<(u32, String)>,
    pub once: bool,
    pub key_type: KeyType,
}

/// The installed certificate as the agent sees it.
struct Current {
    identities: Vec<Identity>,
    /// When the lifetime effectively started for scheduling: notBefore, or
    /// the time the file was written if later. CAs backdate notBefore for
    /// clock skew, which would otherwise make a short certificate due at
    /// once.
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    root: CertificateDer<'static>,
    key: Arc<rustls::sign::CertifiedKey>,
    serial: String,
}

fn read_current(dir: &Path) -> Result<Current, AgentError> {
    let chain = input::load_certificates(&dir.join(CERT_FILE))?;
    let root = input::load_certificates(&dir.join(CA_FILE))?.remove(0);
    let ck = symbolon_tls::load_certified_key(&dir.join(CERT_FILE), &dir.join(KEY_FILE))
        .map_err(|e| AgentError::Refused(e.to_string()))?;
    let s = symbolon_pki::describe_certificate(&chain[0], OffsetDateTime::now_utc()).ok_or_else(
        || AgentError::Refused(format!("{}: does not parse", dir.join(CERT_FILE).display())),
    )?;
    let parse_t = |t: &str| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let identities = s
        .subject_alt_names
        .iter()
        .filter_map(|n| n.parse::<Identity>().ok())
        .collect();
    let written = std::fs::metadata(dir.join(CERT_FILE))
        .and_then(|m| m.modified())
        .map(OffsetDateTime::from)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(Current {
        identities,
        not_before: parse_t(&s.not_before).max(written.min(OffsetDateTime::now_utc())),
        not_after: parse_t(&s.not_after),
        root,
        key: ck,
        serial: s.serial,
    })
}

fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    max.mul_f64(u32::from_be_bytes(b) as f64 / u32::MAX as f64)
}

async fn run_hook(opts: &AgentOptions, metrics: &Metrics) {
    if let Some(cmd) = &opts.exec {
        let result = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&opts.dir)
            .status()
            .await;
        let ok = matches!(&result, Ok(s) if s.success());
        metrics.inc(
            "symbolon_agent_hook_runs_total",
            &[("result", if ok { "ok" } else { "error" })],
        );
        if !ok {
            tracing::error!("--exec {cmd:?} failed: {result:?}");
        }
    }
    if let Some((pid, sig)) = &opts.signal {
        let result = tokio::process::Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .await;
        let ok = matches!(&result, Ok(s) if s.success());
        metrics.inc(
            "symbolon_agent_hook_runs_total",
            &[("result", if ok { "ok" } else { "error" })],
        );
        if !ok {
            tracing::error!("--signal {pid}:{sig} failed: {result:?}");
        }
    }
}

async fn renew_once(opts: &AgentOptions, cur: &Current) -> Result<Current, AgentError> {
    let key = opts.key_type.generate()?;
    let csr = csr_pem(&cur.identities, &key)?;
    let answer = client::post_json(
        &opts.ca,
        CaAnchor::Root(cur.root.clone()),
        Some(cur.key.clone()),
        "/v1/renew",
        &serde_json::json!({"csr": csr}),
    )
    .await?;
    let (chain, root) = check_issued(&answer, &key, Some(&cur.root))?;
    install(&opts.dir, &chain, &key, &root)?;
    read_current(&opts.dir)
}

fn expired_message(opts: &AgentOptions, cur: &Current) -> String {
    format!(
        "the certificate in {} (serial {}) expired at {}; the CA renews only valid certificates, so enroll again with a new token: symbolon enroll --ca https://{}:{} --fingerprint <root sha256> --token <token> --out {}",
        opts.dir.join(CERT_FILE).display(),
        cur.serial,
        symbolon_pki::rfc3339(cur.not_after),
        opts.ca.host,
        opts.ca.port,
        opts.dir.display()
    )
}

/// Runs until stopped (or after one renewal with `once`).
pub async fn run_agent(opts: AgentOptions, metrics: Arc<Metrics>) -> Result<(), AgentError> {
    let mut cur = read_current(&opts.dir)?;
    loop {
        metrics.gauge_set(
            "symbolon_agent_cert_expiry_timestamp_seconds",
            &[],
            cur.not_after.unix_timestamp() as f64,
        );
        let now = OffsetDateTime::now_utc();
        if now >= cur.not_after {
            return Err(AgentError::Refused(expired_message(&opts, &cur)));
        }
        let lifetime = (cur.not_after - cur.not_before).max(time::Duration::seconds(1));
        let life_std = Duration::try_from(lifetime).unwrap_or(Duration::from_secs(1));
        // Renew at the chosen fraction, spread by up to 5% of the lifetime
        // so a fleet issued together does not renew together.
        let due = cur.not_before
            + lifetime * opts.renew_at
            + time::Duration::try_from(jitter(life_std / 20)).unwrap_or_default();
        if !opts.once && due > now {
            tracing::info!(serial = %cur.serial, renew_at = %symbolon_pki::rfc3339(due), "next renewal scheduled");
            tokio::time::sleep(Duration::try_from(due - now).unwrap_or_default()).await;
        }
        let mut delay = Duration::from_millis(500);
        let cap = (life_std / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match renew_once(&opts, &cur).await {
                Ok(next) => {
                    metrics.inc("symbolon_agent_renewals_total", &[("result", "ok")]);
                    tracing::info!(serial = %next.serial, previous = %cur.serial, not_after = %symbolon_pki::rfc3339(next.not_after), "renewed and installed");
                    cur = next;
                    metrics.gauge_set(
                        "symbolon_agent_cert_expiry_timestamp_seconds",
                        &[],
                        cur.not_after.unix_timestamp() as f64,
                    );
                    run_hook(&opts, &metrics).await;
                    break;
                }
                Err(e) => {
                    metrics.inc("symbolon_agent_renewals_total", &[("result", "error")]);
                    let retry = matches!(&e, AgentError::Call(c) if c.is_retryable());
                    if OffsetDateTime::now_utc() >= cur.not_after {
                        return Err(AgentError::Refused(expired_message(&opts, &cur)));
                    }
                    if !retry {
                        return Err(e);
                    }
                    let left = cur.not_after - OffsetDateTime::now_utc();
                    tracing::warn!(
                        remaining = %symbolon_core::format_duration(Duration::try_from(left).unwrap_or_default()),
                        "renewal failed, keeping the current certificate and retrying in {delay:?}: {e}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(cap);
                }
            }
        }
        if opts.once {
            return Ok(());
        }
    }
}
