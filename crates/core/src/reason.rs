use std::fmt;

/// Why a certificate, handshake or request was refused.
///
/// One stable set used alike in CLI output, logs, metric labels and audit
/// events: the string form (`as_str`) is an interface and never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    NoClientCert,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    BadEku,
    BadKeyUsage,
    BadSignature,
    WeakKey,
    WeakSignature,
    NameMismatch,
    NameConstraintViolation,
    PathLenExceeded,
    PathTooLong,
    CaUsedAsLeaf,
    UnknownCriticalExtension,
    CrlWrongIssuer,
    CrlBadSignature,
    CrlNotSigner,
    CrlExpired,
    RevocationUnavailable,
    PolicyDenied,
    Malformed,
    HandshakeTimeout,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::NoClientCert,
        Reason::UnknownCa,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Revoked,
        Reason::BadEku,
        Reason::BadKeyUsage,
        Reason::BadSignature,
        Reason::WeakKey,
        Reason::WeakSignature,
        Reason::NameMismatch,
        Reason::NameConstraintViolation,
        Reason::PathLenExceeded,
        Reason::PathTooLong,
        Reason::CaUsedAsLeaf,
        Reason::UnknownCriticalExtension,
        Reason::CrlWrongIssuer,
        Reason::CrlBadSignature,
        Reason::CrlNotSigner,
        Reason::CrlExpired,
        Reason::RevocationUnavailable,
        Reason::PolicyDenied,
        Reason::Malformed,
        Reason::HandshakeTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoClientCert => "no_client_cert",
            Reason::UnknownCa => "unknown_ca",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Revoked => "revoked",
            Reason::BadEku => "bad_eku",
            Reason::BadKeyUsage => "bad_key_usage",
            Reason::BadSignature => "bad_signature",
            Reason::WeakKey => "weak_key",
            Reason::WeakSignature => "weak_signature",
            Reason::NameMismatch => "name_mismatch",
            Reason::NameConstraintViolation => "name_constraint_violation",
            Reason::PathLenExceeded => "path_len_exceeded",
            Reason::PathTooLong => "path_too_long",
            Reason::CaUsedAsLeaf => "ca_used_as_leaf",
            Reason::UnknownCriticalExtension => "unknown_critical_extension",
            Reason::CrlWrongIssuer => "crl_wrong_issuer",
            Reason::CrlBadSignature => "crl_bad_signature",
            Reason::CrlNotSigner => "crl_not_signer",
            Reason::CrlExpired => "crl_expired",
            Reason::RevocationUnavailable => "revocation_unavailable",
            Reason::PolicyDenied => "policy_denied",
            Reason::Malformed => "malformed",
            Reason::HandshakeTimeout => "handshake_timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate code {r}");
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
        assert_eq!(Reason::parse("nope"), None);
    }
}
