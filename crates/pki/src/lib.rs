//! Keys, CSRs, certificates, CRLs, and chain verification with explained
//! failures. Certificates are built with rcgen, read with x509-parser and
//! verified with rustls-webpki; all crypto is aws-lc-rs.
#![forbid(unsafe_code)]

mod authority;
mod crl;
mod csr;
mod der;
mod error;
pub mod files;
pub mod input;
mod inspect;
mod issue;
mod keys;
mod ocsp;
mod serial;
mod token;
mod verify;

// === the public interface ===
pub use authority::{BACKDATE, CaOptions, Issuer, NewCa, create_ca};
pub use crl::{RevocationReason, RevokedEntry};
pub use csr::{CheckedCsr, check_csr};
pub use error::PkiError;
pub use inspect::{
    CertSummary, CrlEntrySummary, CrlSummary, CsrSummary, NameConstraintsSummary,
    describe_certificate, describe_crl, describe_csr, spki_pin,
};
pub use issue::{IssuedCert, LeafSpec, Profile};
pub use keys::{KeyInfo, KeyType, PBKDF2_ITERATIONS, check_spki_der, decrypt_pkcs8, encrypt_pkcs8};
pub use ocsp::{
    CertId, OcspFailure, OcspRequest, OcspStatus, check_ocsp_response, ocsp_failure, ocsp_request,
    parse_ocsp_request, read_ocsp_response,
};
pub use serial::Serial;
pub use token::{
    TokenClaims, TokenError, new_token_key, sign_token, token_claims_unverified, verify_token,
};
pub use verify::{
    CertRef, ExpectedName, Purpose, VerifiedPath, VerifyError, VerifyOptions, verify,
};

pub use rcgen::{KeyPair, PublicKeyData};
pub use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

/// PEM-encodes DER with the given label (64-column lines, `\n` endings).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Lower-case hex SHA-256, the fingerprint form Symbolon prints and accepts.
pub fn sha256_hex(bytes: &[u8]) -> String {
    // On the handshake path (fingerprints of every certificate on a
    // verified path): one allocation, no formatting machinery.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha256(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// RFC 3339 in UTC with second precision: `2026-11-25T03:00:00Z`.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_else(|_| t.to_string())
}

/// The serial number of a DER certificate, if it parses.
pub fn certificate_serial(der: &[u8]) -> Option<Serial> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Serial::from_be_bytes(x.raw_serial()))
}

/// The DER of a certificate's subject Name (the whole SEQUENCE).
pub fn subject_der(der: &[u8]) -> Option<Vec<u8>> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(x.subject().as_raw().to_vec())
}

#[cfg(test)]
mod digest_tests {
    #[test]
    fn sha256_hex_is_the_lower_case_digest() {
        // FIPS 180-2 test vector.
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::sha256(b"abc")[0], 0xba);
    }
}
