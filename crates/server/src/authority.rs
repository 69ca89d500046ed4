//! The CA's issuing logic, shared by the CLI and the HTTP API: what may be
//! certified (namespace, lifetimes), signing, and recording before anything
//! is handed out.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use symbolon_core::{Identity, Namespace, format_duration};
use symbolon_pki::{IssuedCert, Issuer, LeafSpec, PkiError};
use symbolon_store::{Audit, CertificateRecord, Redeemed, Store, StoreError};
use time::OffsetDateTime;

/// Everything issuing needs. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Authority {
    pub issuer: Issuer,
    pub store: Store,
    pub namespace: Namespace,
    pub default_leaf: Duration,
    pub max_leaf: Duration,
    pub crl_next_update: Duration,
    /// How long telemetry buckets are kept.
    pub telemetry_retention: Duration,
    pub root: CertificateDer<'static>,
    pub token_key: Vec<u8>,
    /// SPIFFE IDs or DNS names whose client certificates may use the admin
    /// API (list, revoke others, create tokens).
    pub admins: Vec<String>,
    /// Where `max_leaf` is configured, for refusal messages.
    pub config_hint: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request asks for something this CA does not grant.
    #[error("refused: {0}")]
    NotPermitted(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Authority {
    /// Namespace and lifetime rules for a leaf request.
    pub fn check(&self, spec: &LeafSpec) -> Result<(), IssueError> {
        for id in &spec.identities {
            self.namespace
                .check(id)
                .map_err(|e| IssueError::NotPermitted(e.to_string()))?;
        }
        if spec.lifetime > self.max_leaf {
            return Err(IssueError::NotPermitted(format!(
                "lifetime {} is longer than this CA grants ({}, {})",
                format_duration(spec.lifetime),
                format_duration(self.max_leaf),
                self.config_hint
            )));
        }
        Ok(())
    }

    /// Checks and signs in memory. Nothing may be handed out before it is
    /// recorded ([`Authority::record`] or [`Authority::redeem`]).
    pub fn sign(&self, spki: &[u8], spec: &LeafSpec) -> Result<IssuedCert, IssueError> {
        self.check(spec)?;
        Ok(self.issuer.issue(spki, spec, OffsetDateTime::now_utc())?)
    }

    pub fn record_of(&self, cert: &IssuedCert) -> CertificateRecord {
        CertificateRecord {
            serial: cert.serial.to_hex(),
            issuer: self.issuer.subject().to_string(),
            subject: cert.subject.clone(),
            identities: cert.identities.iter().map(|i| i.to_string()).collect(),
            profile: cert.profile.to_string(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            fingerprint: cert.fingerprint(),
            der: cert.der.to_vec(),
            issued_at: OffsetDateTime::now_utc(),
            revoked_at: None,
            revocation_reason: None,
        }
    }

    /// Records a signed certificate durably (returns after the commit).
    pub async fn record(&self, cert: &IssuedCert, audit: Audit<'_>) -> Result<(), IssueError> {
        Ok(self
            .store
            .record_issued(&self.record_of(cert), audit)
            .await?)
    }

    /// Consumes a token and records the certificate it pays for, atomically.
    pub async fn redeem(&self, token_id: &str, cert: &IssuedCert) -> Result<Redeemed, IssueError> {
        Ok(self
            .store
            .redeem_token(
                token_id,
                OffsetDateTime::now_utc(),
                &self.record_of(cert),
                Audit {
                    actor: &format!("token:{token_id}"),
                    action: "enroll",
                },
            )
            .await?)
    }

    pub fn is_admin(&self, peer: &symbolon_core::PeerCert) -> bool {
        self.admins.iter().any(|a| {
            peer.spiffe_id.as_deref() == Some(a.as_str()) || peer.dns.iter().any(|d| d == a)
        })
    }

    /// Creates a one-time token for `identities`, valid for `ttl`, recorded
    /// in the store (so its use can be tracked across replicas).
    pub async fn create_token(
        &self,
        actor: &str,
        identities: &[Identity],
        ttl: Duration,
    ) -> Result<(String, OffsetDateTime), IssueError> {
        if identities.is_empty() {
            return Err(IssueError::NotPermitted(
                "a token needs at least one identity".into(),
            ));
        }
        for id in identities {
            self.namespace
                .check(id)
                .map_err(|e| IssueError::NotPermitted(e.to_string()))?;
        }
        if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(30 * 86_400) {
            return Err(IssueError::NotPermitted(
                "a token's lifetime must be between 10s and 30d".into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        let expires = now + time::Duration::try_from(ttl).unwrap_or(time::Duration::MINUTE);
        let claims = symbolon_pki::TokenClaims {
            id: symbolon_pki::Serial::random().to_hex(),
            identities: identities.iter().map(|i| i.to_string()).collect(),
            issued_at: now.unix_timestamp(),
            expires_at: expires.unix_timestamp(),
        };
        self.store
            .record_token(
                &symbolon_store::TokenRecord {
                    id: claims.id.clone(),
                    identities: claims.identities.clone(),
                    created_at: now,
                    expires_at: expires,
                    used_at: None,
                    used_by_serial: None,
                },
                Audit {
                    actor,
                    action: "token_create",
                },
            )
            .await?;
        Ok((symbolon_pki::sign_token(&self.token_key, &claims), expires))
    }

    /// Signs and records the next CRL (strictly increasing number), valid
    /// for `ahead` (default: the configured `crl_next_update`).
    pub async fn publish_crl(
        &self,
        ahead: Option<Duration>,
    ) -> Result<symbolon_store::CrlRecord, IssueError> {
        let now = OffsetDateTime::now_utc();
        let ahead = time::Duration::try_from(ahead.unwrap_or(self.crl_next_update))
            .map_err(|_| IssueError::NotPermitted("nextUpdate out of range".into()))?;
        let next = now + ahead;
        let issued = self
            .store
            .issue_crl(now, next, |number, revoked| {
                let entries = revoked
                    .iter()
                    .map(|r| {
                        Ok(symbolon_pki::RevokedEntry {
                            serial: symbolon_pki::Serial::parse_hex(&r.serial)
                                .map_err(PkiError::Refused)?,
                            revoked_at: r.revoked_at,
                            reason: r
                                .reason
                                .parse()
                                .unwrap_or(symbolon_pki::RevocationReason::Unspecified),
                        })
                    })
                    .collect::<Result<Vec<_>, PkiError>>()?;
                Ok::<_, PkiError>(self.issuer.sign_crl(number, now, next, &entries)?.to_vec())
            })
            .await?;
        Ok(issued?)
    }
}
