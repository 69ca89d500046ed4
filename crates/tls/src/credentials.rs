use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use symbolon_pki::input;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error(transparent)]
    Input(#[from] symbolon_pki::PkiError),
    #[error("{}: {problem}", path.display())]
    Unusable { path: PathBuf, problem: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Loads a certificate chain (leaf first) and its private key, and checks
/// that they belong together, so a mismatched pair is refused at load time
/// rather than at the first handshake.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = input::load_certificates(cert)?;
    let kp = input::load_private_key(key, None)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
    let provider = crate::provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Unusable {
            path: key.to_path_buf(),
            problem: format!("unusable private key: {e}"),
        })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::Unusable {
                path: key.to_path_buf(),
                problem: format!(
                    "this key does not belong to the certificate in {}",
                    cert.display()
                ),
            }
        }
        // The certificate itself could not be read for its public key (an
        // unknown critical extension, a bad encoding): not the key's fault.
        e => TlsError::Unusable {
            path: cert.to_path_buf(),
            problem: format!("TLS cannot use this certificate: {e}"),
        },
    })?;
    Ok(Arc::new(ck))
}

/// A certified key from DER: the chain (leaf first) and a PKCS#8 key.
pub fn certified_key_from_der(
    chain: Vec<CertificateDer<'static>>,
    pkcs8: Vec<u8>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let provider = crate::provider();
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()?;
    Ok(Arc::new(ck))
}

/// Trusted CA certificates, plus their subjects as sent in the
/// CertificateRequest (so clients such as `openssl s_client` and
/// `sslscan --show-client-cas` see exactly the configured CAs).
#[derive(Clone, Debug)]
pub struct TrustBundle {
    pub certs: Vec<CertificateDer<'static>>,
    pub subjects: Vec<DistinguishedName>,
    pub source: PathBuf,
}

impl TrustBundle {
    /// A bundle from certificates already in memory.
    pub fn from_certs(certs: Vec<CertificateDer<'static>>) -> TrustBundle {
        let subjects = certs
            .iter()
            .map(|c| DistinguishedName::from(symbolon_pki::subject_der(c).unwrap_or_default()))
            .collect();
        TrustBundle {
            certs,
            subjects,
            source: PathBuf::new(),
        }
    }

    pub fn load(path: &Path) -> Result<TrustBundle, TlsError> {
        let certs = input::load_certificates(path)?;
        let mut subjects = Vec::with_capacity(certs.len());
        for (i, c) in certs.iter().enumerate() {
            let summary = symbolon_pki::describe_certificate(c, time::OffsetDateTime::now_utc())
                .ok_or_else(|| TlsError::Unusable {
                    path: path.to_path_buf(),
                    problem: format!("certificate #{} does not parse", i + 1),
                })?;
            if !summary.is_ca {
                return Err(TlsError::Unusable {
                    path: path.to_path_buf(),
                    problem: format!(
                        "certificate #{} ({}) is not a CA certificate; give CA certificates only",
                        i + 1,
                        summary.subject
                    ),
                });
            }
            subjects.push(DistinguishedName::from(
                symbolon_pki::subject_der(c).unwrap_or_default(),
            ));
        }
        Ok(TrustBundle {
            certs,
            subjects,
            source: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use symbolon_testkit::rcgen::CustomExtension;
    use symbolon_testkit::{TestCa, ca_params, leaf_params, write};

    use super::*;

    fn problem(e: TlsError) -> (PathBuf, String) {
        match e {
            TlsError::Unusable { path, problem } => (path, problem),
            e => panic!("unexpected error: {e}"),
        }
    }

    /// Regression: a certificate TLS cannot read (here an unknown critical
    /// extension) was reported as "this key does not belong to the
    /// certificate", sending the operator after the wrong file.
    #[test]
    fn a_certificate_tls_cannot_read_is_blamed_not_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = TestCa::root(ca_params("Cred Root", None));
        let mut p = leaf_params("a.example");
        let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
        let odd = root.leaf(p);
        let cert = write(
            dir.path(),
            "odd.crt",
            symbolon_pki::to_pem("CERTIFICATE", &odd.der),
        );
        let key = write(dir.path(), "odd.key", odd.key.serialize_pem());
        let (path, msg) = problem(load_certified_key(&cert, &key).unwrap_err());
        assert_eq!(path, cert, "{msg}");
        assert!(!msg.contains("does not belong"), "{msg}");

        // A real mismatch still names the key.
        let other = root.leaf(leaf_params("b.example"));
        let good = write(
            dir.path(),
            "b.crt",
            symbolon_pki::to_pem("CERTIFICATE", &other.der),
        );
        let (path, msg) = problem(load_certified_key(&good, &key).unwrap_err());
        assert_eq!(path, key, "{msg}");
        assert!(msg.contains("does not belong"), "{msg}");
    }
}
