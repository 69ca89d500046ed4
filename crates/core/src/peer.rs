use time::OffsetDateTime;

/// What a verified client certificate says about its holder: the facts
/// policy rules match on and the gateway forwards upstream.
///
/// Built by `pki` from a certificate that passed verification; here it is
/// plain data so policy evaluation stays free of X.509 and TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The SPIFFE ID, when the certificate carries one (at most one).
    pub spiffe_id: Option<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub ips: Vec<String>,
    /// Subject attributes (informational: identity comes from SANs; rules
    /// may still match on them, e.g. an OU).
    pub cn: Vec<String>,
    pub o: Vec<String>,
    pub ou: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// SHA-256 of the whole certificate (hex), as in XFCC `Hash=`.
    pub sha256: String,
    /// SHA-256 of the issuing CA certificate (hex).
    pub issuer_sha256: String,
    /// base64 SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}
