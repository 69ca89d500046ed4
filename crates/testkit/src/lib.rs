//! Test PKIs minted in code, including the broken certificates a verifier
//! must refuse. Dev-only: never linked into the product.
#![forbid(unsafe_code)]
// Test helpers panic on setup failure: that is the clearest test outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

pub use rcgen;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A CA made for a test: its certificate, key and the parameters that made it.
#[derive(Debug)]
pub struct TestCa {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
}

/// A leaf made for a test.
#[derive(Debug)]
pub struct TestLeaf {
    pub der: Vec<u8>,
    pub key: KeyPair,
}

fn serial() -> SerialNumber {
    symbolon_pki::Serial::random().as_bytes().to_vec().into()
}

/// Parameters of a CA valid from an hour ago for a year.
pub fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    p.serial_number = Some(serial());
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p
}

/// Parameters of a leaf for `dns`, valid from an hour ago for a day, with
/// both TLS EKUs.
pub fn leaf_params(dns: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns);
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(1);
    p.serial_number = Some(serial());
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p
}

impl TestCa {
    /// A self-signed root from `params`.
    pub fn root(params: CertificateParams) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        TestCa { params, key, der }
    }

    /// A CA certificate from `params`, signed by this CA.
    pub fn sub_ca(&self, params: CertificateParams) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        TestCa { params, key, der }
    }

    /// A leaf from `params`, signed by this CA.
    pub fn leaf(&self, params: CertificateParams) -> TestLeaf {
        let key = KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        TestLeaf { der, key }
    }

    /// A CRL listing `revoked` serials (DER content bytes), valid for a day.
    pub fn crl(&self, number: u64, revoked: &[&[u8]], next_update: OffsetDateTime) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }

    pub fn pem(&self) -> String {
        symbolon_pki::to_pem("CERTIFICATE", &self.der)
    }
}

impl TestLeaf {
    pub fn pem(&self) -> String {
        symbolon_pki::to_pem("CERTIFICATE", &self.der)
    }

    pub fn serial(&self) -> Vec<u8> {
        symbolon_pki::certificate_serial(&self.der)
            .unwrap()
            .as_bytes()
            .to_vec()
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}
