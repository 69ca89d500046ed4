//! CSR intake: everything a CA must check before it trusts a request.

use std::net::IpAddr;

use symbolon_core::Identity;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::{KeyInfo, PkiError};

/// A CSR that parsed, whose signature verified (proof of possession), whose
/// key is strong enough and whose names are well-formed. Whether the CA may
/// certify those names is the caller's next check.
#[derive(Clone, Debug)]
pub struct CheckedCsr {
    pub spki_der: Vec<u8>,
    pub identities: Vec<Identity>,
    pub common_name: Option<String>,
    pub key: KeyInfo,
}

fn refuse(m: impl Into<String>) -> PkiError {
    PkiError::Refused(m.into())
}

pub fn check_csr(der: &[u8]) -> Result<CheckedCsr, PkiError> {
    let csr = match X509CertificationRequest::from_der(der) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(refuse("the CSR has trailing data after it")),
        Err(_) => return Err(refuse("the CSR is not a valid PKCS#10 request")),
    };
    crate::verify::check_signature_algorithm(&csr.signature_algorithm.algorithm.to_id_string())
        .map_err(|m| refuse(format!("the CSR is signed with {m}")))?;
    let info = &csr.certification_request_info;
    let (key, verdict) = crate::keys::key_info(&info.subject_pki);
    verdict.map_err(|m| refuse(format!("weak key: {m}")))?;
    csr.verify_signature().map_err(|_| {
        refuse("the CSR's signature does not verify (bad_signature): it was altered or not signed by its key")
    })?;

    let mut identities = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    return Err(refuse(
                        "the CSR asks for a CA certificate; this CA issues leaf certificates only",
                    ));
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        identities.push(identity_from_san(name)?);
                    }
                }
                ParsedExtension::UnsupportedExtension { .. }
                | ParsedExtension::ParseError { .. } => {
                    // Other requested extensions are ignored: the profile,
                    // not the requester, decides key usages and constraints.
                }
                _ => {}
            }
        }
    }
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().map(str::to_string))
        .transpose()
        .map_err(|_| refuse("the CSR's common name is not a readable string"))?;
    if identities.is_empty() {
        return Err(refuse(
            "the CSR has no subjectAltName; identities come from SANs only (openssl: -addext \"subjectAltName=DNS:name\")",
        ));
    }
    identities.sort();
    identities.dedup();
    Ok(CheckedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        identities,
        common_name,
        key,
    })
}

pub(crate) fn identity_from_san(name: &GeneralName<'_>) -> Result<Identity, PkiError> {
    let bad = |e: symbolon_core::IdentityError| refuse(e.to_string());
    match name {
        GeneralName::DNSName(d) => Identity::dns(d).map_err(bad),
        GeneralName::URI(u) => Identity::uri(u).map_err(bad),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => Ok(Identity::Ip(IpAddr::from(
                <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
            ))),
            16 => Ok(Identity::Ip(IpAddr::from(
                <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
            ))),
            _ => Err(refuse("an IP address SAN has a bad length")),
        },
        other => Err(refuse(format!(
            "unsupported subjectAltName {other:?}; use DNS, IP or URI names"
        ))),
    }
}
