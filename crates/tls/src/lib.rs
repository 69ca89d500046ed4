//! rustls configurations for Symbolon: TLS 1.3 and 1.2 only, the aws-lc-rs
//! provider, and certificate verification done by `symbolon_pki::verify`
//! (the same verifier `symbolon cert verify` runs), so every refused
//! handshake has a reason code and a sentence. Also what both TLS servers
//! (the gateway and `ca serve`) do around the handshake: admission of
//! connections into a fixed number of slots, which requests are in flight
//! on each, and a deadline for a client's first bytes after it.
#![forbid(unsafe_code)]

mod activity;
mod admission;
mod client;
mod credentials;
mod first_bytes;
mod server;

// === the public interface ===
pub use activity::{Activity, Busy, Tracked};
pub use admission::{Admission, Admit, Evicted, Handshaking, Slot};
pub use client::{CaAnchor, ClientTls, ServerIdentity, ca_client_config};
pub use credentials::{TlsError, TrustBundle, certified_key_from_der, load_certified_key};
pub use first_bytes::{NoRequest, Prefetched, first_bytes};
pub use server::{ClientAuthMode, HandshakeOutcome, RevocationCheck, ServerTls, SessionState};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use symbolon_core::Reason;

/// The one crypto provider: aws-lc-rs, with rustls' default (AEAD-only)
/// cipher suites and key exchanges, SHA-256 suites first.
///
/// AES-128-GCM with SHA-256 goes before AES-256-GCM with SHA-384: every
/// handshake runs a dozen HKDF steps on the suite's hash, and SHA-256 has
/// CPU instructions (SHA-NI) where SHA-512/384 often has none, which makes
/// SHA-384 a fifth of a resumed handshake's CPU. Both are AEADs rated for
/// long-term use; AES-128-GCM is TLS 1.3's mandatory suite. Servers apply
/// this order (`ignore_client_order`), as nginx's `ssl_prefer_server_ciphers`.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.sort_by_key(|cs| {
        let (tls12, hash) = match cs {
            rustls::SupportedCipherSuite::Tls13(s) => (false, s.common.hash_provider.algorithm()),
            rustls::SupportedCipherSuite::Tls12(s) => (true, s.common.hash_provider.algorithm()),
        };
        (tls12, hash != rustls::crypto::hash::HashAlgorithm::SHA256)
    });
    Arc::new(p)
}

/// TLS 1.3 and 1.2; nothing older exists in rustls, and renegotiation is
/// never supported by it.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The TLS alert a refusal maps to, through rustls' CertificateError. This
/// is the one place that decides which alert a reason sends.
pub fn certificate_error(reason: Reason) -> rustls::CertificateError {
    use rustls::CertificateError as C;
    match reason {
        Reason::UnknownCa => C::UnknownIssuer,
        Reason::Expired => C::Expired,
        Reason::NotYetValid => C::NotValidYet,
        Reason::Revoked => C::Revoked,
        Reason::BadEku => C::InvalidPurpose,
        Reason::BadSignature => C::BadSignature,
        Reason::NameMismatch => C::NotValidForName,
        Reason::UnknownCriticalExtension => C::UnhandledCriticalExtension,
        Reason::PolicyDenied => C::ApplicationVerificationFailure,
        Reason::RevocationUnavailable => C::UnknownRevocationStatus,
        Reason::CrlExpired
        | Reason::CrlWrongIssuer
        | Reason::CrlBadSignature
        | Reason::CrlNotSigner => C::UnknownRevocationStatus,
        // bad_certificate: the certificate itself is unacceptable.
        _ => C::BadEncoding,
    }
}

/// Classifies a handshake error that did not come from our verifier.
pub fn reason_for(err: &rustls::Error) -> Reason {
    match err {
        rustls::Error::NoCertificatesPresented => Reason::NoClientCert,
        rustls::Error::InvalidCertificate(c) => match c {
            rustls::CertificateError::UnknownIssuer => Reason::UnknownCa,
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                Reason::Expired
            }
            rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. } => Reason::NotYetValid,
            rustls::CertificateError::Revoked => Reason::Revoked,
            rustls::CertificateError::InvalidPurpose
            | rustls::CertificateError::InvalidPurposeContext { .. } => Reason::BadEku,
            rustls::CertificateError::BadSignature => Reason::BadSignature,
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => Reason::NameMismatch,
            _ => Reason::Malformed,
        },
        _ => Reason::Malformed,
    }
}
