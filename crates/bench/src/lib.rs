//! `symbolon bench`: load generators users size deployments with.
//!
//! - [`handshake`]: full or resumed mTLS handshakes against any TLS server.
//! - [`http`]: keep-alive HTTP requests at a fixed rate (open loop: latency
//!   counts from when a request was due, so a stalled server cannot hide
//!   its stall by slowing the generator down).
//! - [`issue`]: certificate issuance, in process or over a CA's API.
//! - [`crypto`]: the crypto bound of a full mTLS handshake on this machine.
//!
//! Each returns a [`Report`]: completed operations, rate, HdrHistogram
//! latency percentiles and failures counted by reason.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod handshake;
pub mod http;
pub mod issue;
mod report;

pub use report::{Budget, Latency, Progress, Report, Samples};

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use symbolon_tls::{ClientTls, ServerIdentity, TrustBundle};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Tls(#[from] symbolon_tls::TlsError),
}

/// Our client certificate and how we check the server: its certificate
/// must chain to `trust` and name `server_name` (a DNS name or an IP).
pub fn client_config(
    cert: &Path,
    key: &Path,
    trust: &Path,
    server_name: &str,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), BenchError> {
    let certified = symbolon_tls::load_certified_key(cert, key)?;
    let trust = Arc::new(TrustBundle::load(trust)?);
    let name = server_name.trim_start_matches('[').trim_end_matches(']');
    let (identity, sni) = match name.parse::<IpAddr>() {
        Ok(ip) => (
            ServerIdentity {
                ip: Some(ip),
                ..ServerIdentity::default()
            },
            ServerName::IpAddress(ip.into()),
        ),
        Err(_) => (
            ServerIdentity {
                dns: Some(name.to_ascii_lowercase()),
                ..ServerIdentity::default()
            },
            ServerName::try_from(name.to_string()).map_err(|_| {
                BenchError::Usage(format!(
                    "--server-name {name:?} is neither a DNS name nor an IP address"
                ))
            })?,
        ),
    };
    let tls = ClientTls::new(certified, trust, identity)?;
    Ok((tls.config(), sni))
}

/// Splits `host:port` (IPv6 in brackets).
pub fn host_port(target: &str, default_port: Option<u16>) -> Result<(String, u16), BenchError> {
    let bad = || {
        BenchError::Usage(format!(
            "--target {target:?}: expected HOST:PORT (IPv6 as [::1]:PORT)"
        ))
    };
    match target.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.starts_with('[')) => {
            let host = h.trim_start_matches('[').trim_end_matches(']');
            Ok((host.to_string(), p.parse().map_err(|_| bad())?))
        }
        _ => match default_port {
            Some(p) if !target.is_empty() && !target.contains(':') => Ok((target.to_string(), p)),
            _ => Err(bad()),
        },
    }
}

/// A short, stable name for why an operation failed: the TLS alert the
/// peer sent (`alert_bad_certificate`), why we refused the server's
/// certificate (`server_cert_…`), or the socket error.
pub fn classify(err: &std::io::Error) -> String {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return classify_tls(tls);
    }
    use std::io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => "connection_refused".into(),
        K::ConnectionReset => "connection_reset".into(),
        K::UnexpectedEof => "closed_by_peer".into(),
        K::TimedOut => "timeout".into(),
        K::BrokenPipe => "broken_pipe".into(),
        other => format!("io_{}", snake(&format!("{other:?}"))),
    }
}

fn classify_tls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::AlertReceived(a) => format!("alert_{}", snake(&format!("{a:?}"))),
        rustls::Error::InvalidCertificate(c) => {
            format!("server_cert_{}", snake(&format!("{c:?}")))
        }
        rustls::Error::NoCertificatesPresented => "server_sent_no_certificate".into(),
        other => format!("tls_{}", snake(&format!("{other:?}"))),
    }
}

/// `BadCertificate` → `bad_certificate`, `UnknownCA` → `unknown_ca`;
/// stops at the first non-word character so variants with payloads keep
/// only their name.
fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            break;
        }
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_stable_snake_case_names() {
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert_eq!(classify(&alert), "alert_bad_certificate");
        let unknown = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify(&unknown), "server_cert_unknown_issuer");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), "connection_refused");
        assert_eq!(snake("General(\"x\")"), "general");
        assert_eq!(snake("UnknownCA"), "unknown_ca");
    }

    #[test]
    fn targets_parse_with_and_without_default_ports() {
        assert_eq!(
            host_port("127.0.0.1:8443", None).unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(host_port("[::1]:443", None).unwrap(), ("::1".into(), 443));
        assert_eq!(
            host_port("example.org", Some(443)).unwrap(),
            ("example.org".into(), 443)
        );
        assert!(host_port("example.org", None).is_err());
        assert!(host_port(":443", None).is_err());
        assert!(host_port("h:notaport", None).is_err());
    }
}
