//! Creating a CA (self-signed root and the intermediate it signs) and the
//! online issuer that signs leaves and CRLs with the intermediate's key.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use crate::{KeyType, PkiError, Serial};

/// Certificates start a minute in the past, so a peer whose clock lags a
/// little does not see a fresh certificate as "not yet valid".
pub const BACKDATE: time::Duration = time::Duration::minutes(1);

#[derive(Clone, Debug)]
pub struct CaOptions {
    pub name: String,
    pub key_type: KeyType,
    pub root_lifetime: Duration,
    pub intermediate_lifetime: Duration,
}

/// A freshly created CA: both certificates and both keys (PKCS#8 DER).
#[derive(Debug)]
pub struct NewCa {
    pub root_der: CertificateDer<'static>,
    pub root_key_pkcs8: Vec<u8>,
    pub intermediate_der: CertificateDer<'static>,
    pub intermediate_key_pkcs8: Vec<u8>,
}

pub(crate) fn to_time(d: Duration) -> Result<time::Duration, PkiError> {
    time::Duration::try_from(d).map_err(|_| PkiError::Refused("lifetime out of range".into()))
}

fn ca_params(
    cn: String,
    org: &str,
    path_len: u8,
    key_usages: Vec<KeyUsagePurpose>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = key_usages;
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(Serial::random().to_rcgen());
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

/// Creates the root (path length 1: it signs intermediates only) and an
/// intermediate (path length 0: it signs leaves only).
pub fn create_ca(opts: &CaOptions, now: OffsetDateTime) -> Result<NewCa, PkiError> {
    let name = opts.name.trim();
    if name.is_empty() || name.len() > 48 || name.chars().any(|c| c.is_control()) {
        return Err(PkiError::Refused(
            "the CA name must be 1 to 48 printable characters".into(),
        ));
    }
    let not_before = now - BACKDATE;
    let root_not_after = now + to_time(opts.root_lifetime)?;
    let int_not_after = now + to_time(opts.intermediate_lifetime)?;
    if int_not_after > root_not_after {
        return Err(PkiError::Refused(format!(
            "the intermediate lifetime ({}) must not be longer than the root lifetime ({})",
            symbolon_core::format_duration(opts.intermediate_lifetime),
            symbolon_core::format_duration(opts.root_lifetime)
        )));
    }

    let root_key = opts.key_type.generate()?;
    let mut root_params = ca_params(
        format!("{name} Root CA"),
        name,
        1,
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
        not_before,
        root_not_after,
    );
    root_params.key_identifier_method = KeyIdMethod::PreSpecified(crate::keys::key_identifier(
        &root_key.subject_public_key_info(),
    )?);
    let root_cert = root_params.self_signed(&root_key)?;
    let root_issuer = rcgen::Issuer::from_params(&root_params, &root_key);

    let int_key = opts.key_type.generate()?;
    let mut int_params = ca_params(
        format!("{name} Intermediate CA"),
        name,
        0,
        // digitalSignature lets the intermediate sign OCSP responses itself.
        vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ],
        not_before,
        int_not_after,
    );
    int_params.use_authority_key_identifier_extension = true;
    int_params.key_identifier_method = KeyIdMethod::PreSpecified(crate::keys::key_identifier(
        &int_key.subject_public_key_info(),
    )?);
    let int_cert = int_params.signed_by(&int_key, &root_issuer)?;

    Ok(NewCa {
        root_der: root_cert.der().clone(),
        root_key_pkcs8: root_key.serialize_der(),
        intermediate_der: int_cert.der().clone(),
        intermediate_key_pkcs8: int_key.serialize_der(),
    })
}

/// The online signer: the intermediate certificate and its key, checked to
/// belong together and to be allowed to sign certificates and CRLs.
#[derive(Debug)]
pub struct Issuer {
    cert: CertificateDer<'static>,
    key: KeyPair,
    not_after: OffsetDateTime,
    subject: String,
    /// subjectKeyIdentifier, repeated as authorityKeyIdentifier in CRLs.
    key_id: Option<Vec<u8>>,
    /// Base URL for CRL distribution point and OCSP AIA entries, if any.
    public_url: Option<String>,
}

impl Issuer {
    pub fn new(cert: CertificateDer<'static>, key: KeyPair) -> Result<Issuer, PkiError> {
        let (_, x509) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|_| PkiError::Refused("the issuer certificate is not valid DER".into()))?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::Refused(
                "the issuer key does not match the issuer certificate".into(),
            ));
        }
        if !x509.is_ca() || !has_key_usage(&x509, |ku| ku.key_cert_sign()) {
            return Err(PkiError::Refused(
                "the issuer certificate is not a CA with keyCertSign".into(),
            ));
        }
        let key_id = x509
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            });
        Ok(Issuer {
            key_id,
            not_after: x509.validity().not_after.to_datetime(),
            subject: x509.subject().to_string(),
            cert,
            key,
            public_url: None,
        })
    }

    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    /// Changes the base URL put into new certificates' CRL and OCSP fields.
    pub fn set_public_url(&mut self, url: Option<String>) {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_string());
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    pub(crate) fn key_id_method(&self) -> KeyIdMethod {
        match &self.key_id {
            Some(id) => KeyIdMethod::PreSpecified(id.clone()),
            None => KeyIdMethod::Sha256,
        }
    }

    pub(crate) fn signing_key(&self) -> &KeyPair {
        &self.key
    }

    pub(crate) fn rcgen_issuer(&self) -> Result<rcgen::Issuer<'static, &KeyPair>, PkiError> {
        Ok(rcgen::Issuer::from_ca_cert_der(&self.cert, &self.key)?)
    }
}

pub(crate) fn has_key_usage(
    x509: &X509Certificate<'_>,
    f: impl Fn(&x509_parser::extensions::KeyUsage) -> bool,
) -> bool {
    matches!(x509.key_usage(), Ok(Some(ku)) if f(ku.value))
}
