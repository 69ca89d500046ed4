//! Certificate, CSR and CRL files, PEM or DER, through what the project
//! does with them once loaded:
//! - `input::parse_objects` (every `--cert`, `--trust`, `client_ca`, CRL
//!   file goes through it);
//! - certificates: `describe_certificate` (`cert inspect`),
//!   `certificate_serial`, `subject_der`, and `verify` with the first
//!   certificate as leaf, the last as trust anchor, the others as
//!   intermediates and every CRL in the file — which on success extracts
//!   the `PeerCert` that policy and XFCC use;
//! - CSRs: `describe_csr`, `check_csr`;
//! - CRLs: `describe_crl` and the gateway's revocation reader
//!   (`gateway::revocation::read_crl`) against the file's certificates.
//!
//! Private keys are recognised but not opened (an encrypted one would run
//! up to 10 million PBKDF2 rounds per input).
//!
//! Properties: never panics; `parse_objects` returns at least one object
//! and, for DER, the input itself; a verified path runs leaf → anchor and
//! its `PeerCert` is the leaf's (fingerprint, SPIFFE ID only from a
//! `spiffe://` URI SAN that is also listed in `uris`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use symbolon_pki::input::{ObjectKind, parse_objects};
use symbolon_pki::{
    CertificateDer, CertificateRevocationListDer, Purpose, VerifyOptions, certificate_serial,
    check_csr, describe_certificate, describe_crl, describe_csr, sha256_hex, subject_der, verify,
};
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Ok(objects) = parse_objects("fuzz.pem".as_ref(), data) else {
        return;
    };
    assert!(!objects.is_empty());
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].der, data);
    }
    let now = OffsetDateTime::now_utc();
    let mut certs = Vec::new();
    let mut crls = Vec::new();
    for o in &objects {
        match o.kind {
            ObjectKind::Certificate => {
                let _ = describe_certificate(&o.der, now);
                let _ = certificate_serial(&o.der);
                let _ = subject_der(&o.der);
                certs.push(CertificateDer::from(o.der.clone()));
            }
            ObjectKind::Csr => {
                let _ = describe_csr(&o.der);
                let _ = check_csr(&o.der);
            }
            ObjectKind::Crl => {
                let _ = describe_crl(&o.der, now);
                crls.push(CertificateRevocationListDer::from(o.der.clone()));
            }
            ObjectKind::PrivateKey | ObjectKind::EncryptedPrivateKey => {}
        }
    }
    for crl in &crls {
        let _ = symbolon_node::gateway::revocation::read_crl(crl, &certs);
    }
    let (Some(leaf), Some(anchor)) = (certs.first(), certs.last()) else {
        return;
    };
    // Verify at a moment the leaf claims to be valid, so that seeds get
    // past the validity check.
    let at = x509_parser::parse_x509_certificate(leaf)
        .ok()
        .map(|(_, x)| x.validity().not_before.to_datetime() + time::Duration::minutes(1))
        .unwrap_or(now);
    let intermediates = if certs.len() > 2 {
        certs[1..certs.len() - 1].to_vec()
    } else {
        Vec::new()
    };
    let trust = [anchor.clone()];
    let opts = VerifyOptions {
        trust: &trust,
        intermediates: &intermediates,
        crls: &crls,
        at,
        purpose: Purpose::Any,
        name: None,
        max_intermediates: 4,
    };
    if let Ok(path) = verify(leaf, &opts) {
        assert!(path.path.len() >= 2);
        assert_eq!(path.path[0].role, "leaf");
        assert_eq!(path.path.last().map(|c| c.role), Some("trust anchor"));
        assert_eq!(path.peer.sha256, sha256_hex(leaf));
        if let Some(id) = &path.peer.spiffe_id {
            assert!(id.starts_with("spiffe://"));
            assert!(path.peer.uris.contains(id));
        }
    }
});
