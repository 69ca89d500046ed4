use time::OffsetDateTime;

/// One issued certificate as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    pub serial: String,
    pub issuer: String,
    pub subject: String,
    pub identities: Vec<String>,
    pub profile: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub fingerprint: String,
    pub der: Vec<u8>,
    pub issued_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revocation_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Expired,
    Revoked,
}

impl CertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Expired => "expired",
            CertStatus::Revoked => "revoked",
        }
    }
}

impl CertificateRecord {
    pub fn status(&self, now: OffsetDateTime) -> CertStatus {
        if self.revoked_at.is_some() {
            CertStatus::Revoked
        } else if now > self.not_after {
            CertStatus::Expired
        } else {
            CertStatus::Valid
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only unrevoked certificates still valid now that expire before `now + d`.
    pub expiring_within: Option<std::time::Duration>,
    /// Only revoked certificates.
    pub revoked_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedRecord {
    pub serial: String,
    pub revoked_at: OffsetDateTime,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    /// Revoking twice keeps the first time and reason (what CRLs already said).
    AlreadyRevoked {
        at: OffsetDateTime,
        reason: String,
    },
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRecord {
    pub number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub der: Vec<u8>,
}

/// The outcome of redeeming a one-time token together with recording the
/// certificate it pays for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// Token consumed and certificate recorded, in one transaction.
    Recorded,
    UnknownToken,
    AlreadyUsed {
        at: OffsetDateTime,
    },
    Expired {
        at: OffsetDateTime,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub identities: Vec<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub used_by_serial: Option<String>,
}
