//! Client side (gateway client mode): originate mTLS with our own
//! certificate and verify the server's identity with the pki verifier.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use symbolon_pki::{ExpectedName, Purpose, VerifyOptions};
use time::OffsetDateTime;

use crate::{TlsError, TrustBundle};

/// Who the upstream server must be. At least one is required: a server
/// that merely chains to the CA is not enough.
#[derive(Clone, Debug, Default)]
pub struct ServerIdentity {
    pub spiffe_id: Option<String>,
    pub dns: Option<String>,
    /// An IP address SAN, checked when neither a SPIFFE ID nor a DNS name
    /// is given (a server reached by address, e.g. `symbolon bench`).
    pub ip: Option<std::net::IpAddr>,
    /// base64 SHA-256 of the server's SubjectPublicKeyInfo.
    pub spki_sha256: Option<String>,
}

#[derive(Debug)]
struct IdentityVerifier {
    trust: Arc<TrustBundle>,
    identity: ServerIdentity,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let name = match (&self.identity.spiffe_id, &self.identity.dns) {
            (Some(id), _) => Some(ExpectedName::Uri(id.clone())),
            (None, Some(d)) => Some(ExpectedName::Dns(d.clone())),
            (None, None) => self.identity.ip.map(ExpectedName::Ip),
        };
        // When both a SPIFFE ID and a DNS name are configured, both must match.
        let also_dns = match (&self.identity.spiffe_id, &self.identity.dns) {
            (Some(_), Some(d)) => Some(d.clone()),
            _ => None,
        };
        let opts = VerifyOptions {
            trust: &self.trust.certs,
            intermediates,
            crls: &[],
            at,
            purpose: Purpose::Server,
            name,
            max_intermediates: 4,
        };
        let verified = symbolon_pki::verify(end_entity, &opts).map_err(|e| {
            tracing::warn!(reason = %e.reason, "upstream certificate refused: {}", e.message);
            rustls::Error::InvalidCertificate(crate::certificate_error(e.reason))
        })?;
        if let Some(d) = also_dns
            && !verified
                .peer
                .dns
                .iter()
                .any(|n| symbolon_core::dns_name_matches(n, &d))
        {
            tracing::warn!(
                reason = "name_mismatch",
                "upstream certificate does not name DNS {d}"
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        if let Some(pin) = &self.identity.spki_sha256
            && verified.peer.spki_sha256 != pin.trim_start_matches("sha256//")
        {
            tracing::warn!(
                reason = "name_mismatch",
                "upstream key pin sha256//{} is not the configured sha256//{}",
                verified.peer.spki_sha256,
                pin.trim_start_matches("sha256//")
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn new(
        cert: Arc<CertifiedKey>,
        trust: Arc<TrustBundle>,
        identity: ServerIdentity,
    ) -> Result<ClientTls, TlsError> {
        let provider = crate::provider();
        let verifier = Arc::new(IdentityVerifier {
            trust,
            identity,
            algs: provider.signature_verification_algorithms,
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(crate::PROTOCOL_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(FixedClientCert(cert)));
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// === talking to the CA (enroll, renew) ===

/// How a client trusts the CA's HTTPS endpoint.
#[derive(Clone, Debug)]
pub enum CaAnchor {
    /// Before enrollment: the root is not on disk yet. The server presents
    /// it in its chain; it is trusted only if its SHA-256 matches this pin
    /// (no trust on first use).
    Pinned(String),
    /// After enrollment: the root saved as `ca.pem`.
    Root(CertificateDer<'static>),
}

#[derive(Debug)]
struct CaVerifier {
    anchor: CaAnchor,
    host: Option<ExpectedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor: CertificateDer<'static> = match &self.anchor {
            CaAnchor::Root(r) => r.clone(),
            CaAnchor::Pinned(fp) => {
                let want = fp.replace(':', "").to_ascii_lowercase();
                let Some(c) = intermediates
                    .iter()
                    .find(|c| symbolon_pki::sha256_hex(c) == want)
                else {
                    let seen: Vec<String> = intermediates
                        .iter()
                        .map(|c| symbolon_pki::sha256_hex(c))
                        .collect();
                    return Err(rustls::Error::General(format!(
                        "the CA presented no certificate with the pinned fingerprint {want} (it presented {}); check --fingerprint against the root fingerprint `symbolon ca init` printed",
                        seen.join(", ")
                    )));
                };
                // Only a root may be the anchor: pinning an intermediate
                // would trust whatever root the server chose to present.
                let self_signed = symbolon_pki::describe_certificate(c, OffsetDateTime::now_utc())
                    .is_some_and(|s| s.self_signed);
                if !self_signed {
                    return Err(rustls::Error::General(format!(
                        "the pinned fingerprint {want} is not a root certificate's; pin the root fingerprint `symbolon ca init` printed"
                    )));
                }
                c.clone().into_owned()
            }
        };
        let at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let trust = [anchor];
        let opts = VerifyOptions {
            trust: &trust,
            intermediates,
            crls: &[],
            at,
            purpose: Purpose::Server,
            name: self.host.clone(),
            max_intermediates: 4,
        };
        symbolon_pki::verify(end_entity, &opts).map_err(|e| {
            rustls::Error::General(format!(
                "the CA's certificate is refused: {}: {}",
                e.reason, e.message
            ))
        })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A client config for the CA's API: the CA is authenticated by `anchor`
/// and its certificate must name `host` (DNS name or IP address); our own
/// certificate is presented when given (renewal, admin calls).
pub fn ca_client_config(
    anchor: CaAnchor,
    host: &str,
    client_cert: Option<Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crate::provider();
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ExpectedName::Ip(ip),
        Err(_) => ExpectedName::Dns(host.trim_end_matches('.').to_ascii_lowercase()),
    };
    let verifier = Arc::new(CaVerifier {
        anchor,
        host: Some(host),
        algs: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        Some(c) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(c))),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
