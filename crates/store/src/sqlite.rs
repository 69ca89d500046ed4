use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use crate::{
    CertificateRecord, CrlRecord, ListFilter, Redeemed, RevokeOutcome, RevokedRecord, StoreError,
    TokenRecord,
};

/// The CA's store. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    location: String,
}

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_ts(s: i64, location: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(s).map_err(|_| StoreError::Corrupt {
        location: location.to_string(),
        problem: format!("timestamp {s} out of range"),
    })
}

async fn insert_cert(
    conn: &mut sqlx::SqliteConnection,
    rec: &CertificateRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO certificates (serial, issuer, subject, identities, profile, not_before, not_after, fingerprint, der, issued_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&rec.serial)
    .bind(&rec.issuer)
    .bind(&rec.subject)
    .bind(rec.identities.join("\n"))
    .bind(&rec.profile)
    .bind(ts(rec.not_before))
    .bind(ts(rec.not_after))
    .bind(&rec.fingerprint)
    .bind(&rec.der)
    .bind(ts(rec.issued_at))
    .execute(conn)
    .await?;
    Ok(())
}

// === impl Store ===

impl Store {
    /// Creates a new SQLite store at `path`; refuses if one exists.
    pub async fn create(path: &Path) -> Result<Store, StoreError> {
        if path.exists() {
            return Err(StoreError::Exists {
                path: path.to_path_buf(),
            });
        }
        Self::connect(path, true).await
    }

    /// Opens an existing SQLite store at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::connect(path, false).await
    }

    async fn connect(path: &Path, create: bool) -> Result<Store, StoreError> {
        let location = path.display().to_string();
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| StoreError::Database {
                location: location.clone(),
                source,
            })?
            .filename(PathBuf::from(path))
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed issuance survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Database {
                location: location.clone(),
                source,
            })?;
        crate::migrate::run(&pool, &location).await?;
        Ok(Store { pool, location })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |source| StoreError::Database {
            location: self.location.clone(),
            source,
        }
    }

    /// Records an issued certificate durably. Returns only after commit.
    pub async fn record_issued(&self, rec: &CertificateRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(self.db())?;
        insert_cert(&mut conn, rec)
            .await
            .map_err(|e| self.insert_err(e, rec))
    }

    fn insert_err(&self, e: sqlx::Error, rec: &CertificateRecord) -> StoreError {
        match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::DuplicateSerial {
                serial: rec.serial.clone(),
            },
            e => self.db()(e),
        }
    }

    fn row_to_record(&self, row: &SqliteRow) -> Result<CertificateRecord, StoreError> {
        let db = self.db();
        let identities: String = row.try_get("identities").map_err(&db)?;
        let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(&db)?;
        Ok(CertificateRecord {
            serial: row.try_get("serial").map_err(&db)?,
            issuer: row.try_get("issuer").map_err(&db)?,
            subject: row.try_get("subject").map_err(&db)?,
            identities: identities.lines().map(str::to_string).collect(),
            profile: row.try_get("profile").map_err(&db)?,
            not_before: from_ts(row.try_get("not_before").map_err(&db)?, &self.location)?,
            not_after: from_ts(row.try_get("not_after").map_err(&db)?, &self.location)?,
            fingerprint: row.try_get("fingerprint").map_err(&db)?,
            der: row.try_get("der").map_err(&db)?,
            issued_at: from_ts(row.try_get("issued_at").map_err(&db)?, &self.location)?,
            revoked_at: revoked_at.map(|t| from_ts(t, &self.location)).transpose()?,
            revocation_reason: row.try_get("revocation_reason").map_err(&db)?,
        })
    }

    pub async fn get(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        row.map(|r| self.row_to_record(&r)).transpose()
    }

    /// Lists certificates, soonest expiry first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        now: OffsetDateTime,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut sql = String::from("SELECT * FROM certificates WHERE 1=1");
        let mut binds: Vec<i64> = Vec::new();
        if filter.revoked_only {
            sql.push_str(" AND revoked_at IS NOT NULL");
        }
        if let Some(within) = filter.expiring_within {
            let horizon = now + time::Duration::try_from(within).unwrap_or(time::Duration::MAX);
            sql.push_str(" AND revoked_at IS NULL AND not_after > ? AND not_after <= ?");
            binds.push(ts(now));
            binds.push(ts(horizon.min(OffsetDateTime::new_utc(
                time::Date::MAX,
                time::Time::MIDNIGHT,
            ))));
        }
        sql.push_str(" ORDER BY not_after ASC, serial ASC");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(self.db())?;
        rows.iter().map(|r| self.row_to_record(r)).collect()
    }

    /// Marks a certificate revoked. Idempotent: a second revocation keeps the
    /// first time and reason.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let row =
            sqlx::query("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?")
                .bind(serial)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.db())?;
        let Some(row) = row else {
            return Ok(RevokeOutcome::NotFound);
        };
        let existing: Option<i64> = row.try_get("revoked_at").map_err(self.db())?;
        if let Some(t) = existing {
            let reason: String = row.try_get("revocation_reason").map_err(self.db())?;
            return Ok(RevokeOutcome::AlreadyRevoked {
                at: from_ts(t, &self.location)?,
                reason,
            });
        }
        sqlx::query("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND revoked_at IS NULL")
            .bind(ts(at))
            .bind(reason)
            .bind(serial)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        Ok(RevokeOutcome::Revoked)
    }

    /// Revoked certificates that have not yet expired. Expired ones may leave
    /// the CRL (RFC 5280 §3.3), which keeps it from growing forever.
    pub async fn revoked(&self, now: OffsetDateTime) -> Result<Vec<RevokedRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates
             WHERE revoked_at IS NOT NULL AND not_after >= ? ORDER BY revoked_at, serial",
        )
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter()
            .map(|r| {
                Ok(RevokedRecord {
                    serial: r.try_get("serial").map_err(self.db())?,
                    revoked_at: from_ts(
                        r.try_get("revoked_at").map_err(self.db())?,
                        &self.location,
                    )?,
                    reason: r.try_get("revocation_reason").map_err(self.db())?,
                })
            })
            .collect()
    }

    /// Signs and records the next CRL in one transaction: `sign` receives the
    /// next number and the revoked entries and returns the DER. The number
    /// only ever increases, even if an older CRL is later deleted.
    pub async fn issue_crl<E>(
        &self,
        now: OffsetDateTime,
        next_update: OffsetDateTime,
        sign: impl FnOnce(u64, &[RevokedRecord]) -> Result<Vec<u8>, E>,
    ) -> Result<Result<CrlRecord, E>, StoreError> {
        let revoked = self.revoked(now).await?;
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) FROM crls")
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db())?;
        let number = last as u64 + 1;
        let der = match sign(number, &revoked) {
            Ok(der) => der,
            Err(e) => return Ok(Err(e)),
        };
        sqlx::query("INSERT INTO crls (number, this_update, next_update, der) VALUES (?, ?, ?, ?)")
            .bind(number as i64)
            .bind(ts(now))
            .bind(ts(next_update))
            .bind(&der)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        Ok(Ok(CrlRecord {
            number,
            this_update: now,
            next_update,
            der,
        }))
    }

    /// Records a newly created enrollment token.
    pub async fn record_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, identities, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(t.identities.join("\n"))
        .bind(ts(t.created_at))
        .bind(ts(t.expires_at))
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Consumes token `id` and records `cert` in one transaction: either
    /// both happen or neither. A token is good once, before it expires.
    pub async fn redeem_token(
        &self,
        id: &str,
        now: OffsetDateTime,
        cert: &CertificateRecord,
    ) -> Result<Redeemed, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let row = sqlx::query("SELECT expires_at, used_at FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db())?;
        let Some(row) = row else {
            return Ok(Redeemed::UnknownToken);
        };
        let used: Option<i64> = row.try_get("used_at").map_err(self.db())?;
        if let Some(at) = used {
            return Ok(Redeemed::AlreadyUsed {
                at: from_ts(at, &self.location)?,
            });
        }
        let expires: i64 = row.try_get("expires_at").map_err(self.db())?;
        if ts(now) >= expires {
            return Ok(Redeemed::Expired {
                at: from_ts(expires, &self.location)?,
            });
        }
        // The `used_at IS NULL` guard makes a concurrent redeemer lose even
        // if both read the row before either wrote.
        let updated = sqlx::query(
            "UPDATE tokens SET used_at = ?, used_by_serial = ? WHERE id = ? AND used_at IS NULL",
        )
        .bind(ts(now))
        .bind(&cert.serial)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        if updated.rows_affected() != 1 {
            return Ok(Redeemed::AlreadyUsed { at: now });
        }
        insert_cert(&mut tx, cert)
            .await
            .map_err(|e| self.insert_err(e, cert))?;
        tx.commit().await.map_err(self.db())?;
        Ok(Redeemed::Recorded)
    }

    pub async fn latest_crl(&self) -> Result<Option<CrlRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT number, this_update, next_update, der FROM crls ORDER BY number DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        row.map(|r| {
            let n: i64 = r.try_get("number").map_err(self.db())?;
            Ok(CrlRecord {
                number: n as u64,
                this_update: from_ts(r.try_get("this_update").map_err(self.db())?, &self.location)?,
                next_update: from_ts(r.try_get("next_update").map_err(self.db())?, &self.location)?,
                der: r.try_get("der").map_err(self.db())?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertStatus, RevokeOutcome};

    fn record(serial: &str, not_after: OffsetDateTime) -> CertificateRecord {
        CertificateRecord {
            serial: serial.into(),
            issuer: "CN=Test Intermediate CA".into(),
            subject: "CN=api".into(),
            identities: vec!["DNS:api.example.org".into(), "IP:127.0.0.1".into()],
            profile: "server".into(),
            not_before: not_after - time::Duration::days(1),
            not_after,
            fingerprint: format!("fp-{serial}"),
            der: vec![0x30, 0x00],
            issued_at: not_after - time::Duration::days(1),
            revoked_at: None,
            revocation_reason: None,
        }
    }

    #[tokio::test]
    async fn records_lists_revokes_and_numbers_crls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::create(&path).await.unwrap();
        assert!(matches!(
            Store::create(&path).await,
            Err(StoreError::Exists { .. })
        ));
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        store
            .record_issued(&record("aa", now + time::Duration::hours(2)))
            .await
            .unwrap();
        store
            .record_issued(&record("bb", now + time::Duration::days(30)))
            .await
            .unwrap();
        store
            .record_issued(&record("cc", now - time::Duration::hours(1)))
            .await
            .unwrap();
        assert!(matches!(
            store.record_issued(&record("aa", now)).await,
            Err(StoreError::DuplicateSerial { .. })
        ));

        let got = store.get("aa").await.unwrap().unwrap();
        assert_eq!(got, record("aa", now + time::Duration::hours(2)));
        assert_eq!(
            store.list(&ListFilter::default(), now).await.unwrap().len(),
            3
        );
        let soon = ListFilter {
            expiring_within: Some(Duration::from_secs(7 * 86_400)),
            ..Default::default()
        };
        let serials: Vec<String> = store
            .list(&soon, now)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(serials, ["aa"]);

        assert_eq!(
            store.revoke("bb", "keyCompromise", now).await.unwrap(),
            RevokeOutcome::Revoked
        );
        assert_eq!(
            store
                .revoke("bb", "superseded", now + time::Duration::hours(1))
                .await
                .unwrap(),
            RevokeOutcome::AlreadyRevoked {
                at: now,
                reason: "keyCompromise".into()
            }
        );
        assert_eq!(
            store.revoke("zz", "superseded", now).await.unwrap(),
            RevokeOutcome::NotFound
        );
        assert_eq!(
            store.get("bb").await.unwrap().unwrap().status(now),
            CertStatus::Revoked
        );
        let revoked_only = ListFilter {
            revoked_only: true,
            ..Default::default()
        };
        assert_eq!(store.list(&revoked_only, now).await.unwrap().len(), 1);

        let next = now + time::Duration::days(1);
        let crl1 = store
            .issue_crl(now, next, |n, e| Ok::<_, ()>(vec![n as u8, e.len() as u8]))
            .await
            .unwrap()
            .unwrap();
        let crl2 = store
            .issue_crl(now, next, |n, e| Ok::<_, ()>(vec![n as u8, e.len() as u8]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((crl1.number, crl2.number), (1, 2));
        assert_eq!(crl2.der, vec![2, 1]);
        // A failed signing records nothing and burns no number.
        assert!(
            store
                .issue_crl(now, next, |_, _| Err::<Vec<u8>, _>("no key"))
                .await
                .unwrap()
                .is_err()
        );
        assert_eq!(store.latest_crl().await.unwrap().unwrap().number, 2);
        store.close().await;

        let reopened = Store::open(&path).await.unwrap();
        assert_eq!(
            reopened
                .list(&ListFilter::default(), now)
                .await
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(
            Store::open(&dir.path().join("none.db")).await,
            Err(StoreError::Missing { .. })
        ));
    }

    #[tokio::test]
    async fn a_token_buys_exactly_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s.db")).await.unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let token = |id: &str, expires| TokenRecord {
            id: id.into(),
            identities: vec!["spiffe://example.org/dev".into()],
            created_at: now,
            expires_at: expires,
            used_at: None,
            used_by_serial: None,
        };
        store
            .record_token(&token("t1", now + time::Duration::minutes(15)))
            .await
            .unwrap();
        store
            .record_token(&token("t2", now - time::Duration::minutes(1)))
            .await
            .unwrap();

        assert_eq!(
            store
                .redeem_token("t1", now, &record("a1", now + time::Duration::days(1)))
                .await
                .unwrap(),
            Redeemed::Recorded
        );
        assert!(store.get("a1").await.unwrap().is_some());
        // Replay: refused, and the second certificate is not recorded.
        assert_eq!(
            store
                .redeem_token("t1", now, &record("a2", now + time::Duration::days(1)))
                .await
                .unwrap(),
            Redeemed::AlreadyUsed { at: now }
        );
        assert!(store.get("a2").await.unwrap().is_none());
        assert!(matches!(
            store
                .redeem_token("t2", now, &record("a3", now))
                .await
                .unwrap(),
            Redeemed::Expired { .. }
        ));
        assert_eq!(
            store
                .redeem_token("nope", now, &record("a4", now))
                .await
                .unwrap(),
            Redeemed::UnknownToken
        );
        assert!(
            store.get("a3").await.unwrap().is_none() && store.get("a4").await.unwrap().is_none()
        );
        // A serial collision rolls the redemption back: the token stays usable.
        store
            .record_token(&token("t3", now + time::Duration::minutes(15)))
            .await
            .unwrap();
        assert!(matches!(
            store.redeem_token("t3", now, &record("a1", now)).await,
            Err(StoreError::DuplicateSerial { .. })
        ));
        assert_eq!(
            store
                .redeem_token("t3", now, &record("a5", now))
                .await
                .unwrap(),
            Redeemed::Recorded
        );
    }
}
