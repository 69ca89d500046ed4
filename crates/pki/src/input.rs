//! Reading certificates, CSRs, CRLs and keys from files, PEM or DER, with
//! errors that name the file and say what was found instead.

use std::path::Path;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::FromDer;

use crate::PkiError;

/// What a PEM block or DER blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Certificate,
    Csr,
    Crl,
    PrivateKey,
    EncryptedPrivateKey,
}

impl ObjectKind {
    pub fn describe(self) -> &'static str {
        match self {
            ObjectKind::Certificate => "a certificate",
            ObjectKind::Csr => "a certificate signing request",
            ObjectKind::Crl => "a CRL",
            ObjectKind::PrivateKey => "a private key",
            ObjectKind::EncryptedPrivateKey => "an encrypted private key",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Object {
    pub kind: ObjectKind,
    pub der: Vec<u8>,
}

/// Reads a file whole, mapping "not found" to its own error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => PkiError::NotFound {
            path: path.to_path_buf(),
        },
        _ => PkiError::Io {
            path: path.to_path_buf(),
            error: source,
        },
    })
}

/// Splits a file into its objects: every PEM block, or one DER object
/// recognised by parsing it.
pub fn parse_objects(path: &Path, bytes: &[u8]) -> Result<Vec<Object>, PkiError> {
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let blocks = pem::parse_many(bytes).map_err(|e| {
            PkiError::bad_input(
                path,
                format!("corrupt PEM ({e}); re-export the file or check it was copied whole"),
            )
        })?;
        if blocks.is_empty() {
            return Err(PkiError::bad_input(path, "no complete PEM block found"));
        }
        let mut out = Vec::with_capacity(blocks.len());
        for block in blocks {
            let kind = match block.tag() {
                "CERTIFICATE" | "TRUSTED CERTIFICATE" => ObjectKind::Certificate,
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => ObjectKind::Csr,
                "X509 CRL" => ObjectKind::Crl,
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => ObjectKind::PrivateKey,
                "ENCRYPTED PRIVATE KEY" => ObjectKind::EncryptedPrivateKey,
                other => {
                    return Err(PkiError::bad_input(
                        path,
                        format!("unsupported PEM block \"{other}\""),
                    ));
                }
            };
            out.push(Object {
                kind,
                der: block.into_contents(),
            });
        }
        return Ok(out);
    }
    let kind = if x509_parser::parse_x509_certificate(bytes).is_ok_and(|(rest, _)| rest.is_empty())
    {
        ObjectKind::Certificate
    } else if x509_parser::certification_request::X509CertificationRequest::from_der(bytes)
        .is_ok_and(|(rest, _)| rest.is_empty())
    {
        ObjectKind::Csr
    } else if x509_parser::parse_x509_crl(bytes).is_ok_and(|(rest, _)| rest.is_empty()) {
        ObjectKind::Crl
    } else {
        return Err(PkiError::bad_input(
            path,
            "neither PEM nor a DER certificate, CSR or CRL",
        ));
    };
    Ok(vec![Object {
        kind,
        der: bytes.to_vec(),
    }])
}

fn objects_of(path: &Path, want: ObjectKind) -> Result<Vec<Vec<u8>>, PkiError> {
    let objects = parse_objects(path, &read_file(path)?)?;
    let (matching, other): (Vec<_>, Vec<_>) = objects.into_iter().partition(|o| o.kind == want);
    if matching.is_empty() {
        let found = other
            .first()
            .map(|o| o.kind.describe())
            .unwrap_or("nothing");
        return Err(PkiError::bad_input(
            path,
            format!("expected {}, found {found}", want.describe()),
        ));
    }
    Ok(matching.into_iter().map(|o| o.der).collect())
}

/// Loads one or more certificates (a chain or a bundle). Each is parsed, so
/// a damaged certificate inside valid PEM is reported here, not later.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let ders = objects_of(path, ObjectKind::Certificate)?;
    for (i, der) in ders.iter().enumerate() {
        match x509_parser::parse_x509_certificate(der) {
            Ok(([], _)) => {}
            _ => {
                return Err(PkiError::bad_input(
                    path,
                    format!("certificate #{} is not valid DER X.509", i + 1),
                ));
            }
        }
    }
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

pub fn load_csr(path: &Path) -> Result<Vec<u8>, PkiError> {
    let mut ders = objects_of(path, ObjectKind::Csr)?;
    if ders.len() > 1 {
        return Err(PkiError::bad_input(
            path,
            "holds more than one CSR; give one per file",
        ));
    }
    Ok(ders.remove(0))
}

pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let ders = objects_of(path, ObjectKind::Crl)?;
    for der in &ders {
        if x509_parser::parse_x509_crl(der).is_err() {
            return Err(PkiError::bad_input(path, "the CRL is not valid DER"));
        }
    }
    Ok(ders
        .into_iter()
        .map(CertificateRevocationListDer::from)
        .collect())
}

/// Loads a private key; an encrypted one needs `passphrase`.
pub fn load_private_key(
    path: &Path,
    passphrase: Option<&[u8]>,
) -> Result<rcgen::KeyPair, PkiError> {
    let objects = parse_objects(path, &read_file(path)?)?;
    let Some(obj) = objects.into_iter().find(|o| {
        matches!(
            o.kind,
            ObjectKind::PrivateKey | ObjectKind::EncryptedPrivateKey
        )
    }) else {
        return Err(PkiError::bad_input(
            path,
            "expected a private key, found none",
        ));
    };
    let der = match obj.kind {
        ObjectKind::EncryptedPrivateKey => {
            let Some(pw) = passphrase else {
                return Err(PkiError::bad_input(
                    path,
                    "the key is encrypted; give its passphrase (--root-passphrase-file or SYMBOLON_ROOT_PASSPHRASE)",
                ));
            };
            crate::keys::decrypt_pkcs8(&obj.der, pw)
                .map_err(|e| PkiError::bad_input(path, e.to_string()))?
        }
        _ => obj.der,
    };
    rcgen::KeyPair::try_from(der.as_slice())
        .map_err(|e| PkiError::bad_input(path, format!("unusable private key: {e}")))
}
