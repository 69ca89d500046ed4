//! The audit trail: one hash-chained record per issuance, renewal,
//! revocation, token creation and use, and admin action, appended in the
//! same transaction as the change it describes.

use sqlx::Row;
use time::OffsetDateTime;

use crate::store::{Backend, placeholders};

/// Who did what, passed along with each change to the store.
#[derive(Clone, Copy, Debug)]
pub struct Audit<'a> {
    /// `cli`, `api:<identity>`, `token:<id>`, …
    pub actor: &'a str,
    /// `issue`, `enroll`, `renew`, `revoke`, `token_create`, …
    pub action: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Where and why the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit record #{seq}: {problem}")]
pub struct AuditBreak {
    pub seq: i64,
    pub problem: String,
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash and every field, length-prefixed so no
/// two different records can serialise to the same bytes.
pub fn chain_hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for field in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        actor,
        action,
        subject,
        detail,
    ] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ctx.finish();
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Appends one record inside the caller's transaction.
pub(crate) async fn append(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    audit: Audit<'_>,
    subject: &str,
    detail: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let mut h = head(conn, backend).await?;
    append_after(conn, backend, &mut h, audit, subject, detail, at).await?;
    save_head(conn, backend, &h).await
}

/// The end of the chain as a transaction sees it. On PostgreSQL this takes
/// the chain's lock for the rest of the transaction, so replicas append one
/// transaction at a time and sequence numbers never collide.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    seq: i64,
    hash: String,
}

pub(crate) async fn head(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<Head, sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(727002)) AS l")
            .fetch_one(&mut *conn)
            .await?;
    }
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Head {
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
        },
        None => Head {
            seq: 0,
            hash: GENESIS.to_string(),
        },
    })
}

/// Inserts the record after `head` and advances `head` (in memory: the
/// caller saves it with [`save_head`] before committing).
pub(crate) async fn append_after(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    head: &mut Head,
    audit: Audit<'_>,
    subject: &str,
    detail: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let seq = head.seq + 1;
    let ts = at.unix_timestamp();
    let hash = chain_hash(
        &head.hash,
        seq,
        ts,
        audit.actor,
        audit.action,
        subject,
        detail,
    );
    let insert = placeholders(
        backend,
        "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    sqlx::query(&insert)
        .bind(seq)
        .bind(ts)
        .bind(audit.actor.to_string())
        .bind(audit.action.to_string())
        .bind(subject.to_string())
        .bind(detail.to_string())
        .bind(head.hash.clone())
        .bind(hash.clone())
        .execute(&mut *conn)
        .await?;
    *head = Head { seq, hash };
    Ok(())
}

/// Records where the chain now ends.
pub(crate) async fn save_head(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    head: &Head,
) -> Result<(), sqlx::Error> {
    let sql = placeholders(
        backend,
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    );
    sqlx::query(&sql)
        .bind(head.seq)
        .bind(head.hash.clone())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Walks the chain: every record's hash recomputed, every link to the
/// previous record checked, sequence numbers gapless, and the head matching
/// the last record.
pub fn verify(records: &[AuditRecord], head: Option<(i64, String)>) -> Result<(), AuditBreak> {
    let mut prev = GENESIS.to_string();
    let mut expected = 1;
    for r in records {
        if r.seq != expected {
            return Err(AuditBreak {
                seq: expected,
                problem: format!(
                    "missing (the next record present is #{}): records were deleted",
                    r.seq
                ),
            });
        }
        if r.prev_hash != prev {
            return Err(AuditBreak {
                seq: r.seq,
                problem: "does not link to the record before it: a record was inserted or replaced"
                    .into(),
            });
        }
        let recomputed = chain_hash(
            &r.prev_hash,
            r.seq,
            r.at.unix_timestamp(),
            &r.actor,
            &r.action,
            &r.subject,
            &r.detail,
        );
        if recomputed != r.hash {
            return Err(AuditBreak {
                seq: r.seq,
                problem: "its content does not match its hash: the record was edited".into(),
            });
        }
        prev = r.hash.clone();
        expected += 1;
    }
    match head {
        None if records.is_empty() => Ok(()),
        None => Err(AuditBreak {
            seq: expected - 1,
            problem: "the chain head is missing".into(),
        }),
        Some((seq, hash)) => {
            if seq != expected - 1 || hash != prev {
                Err(AuditBreak {
                    seq: expected,
                    problem: format!(
                        "the chain head says #{seq} is the latest record, but the chain ends at #{}: the newest records were deleted",
                        expected - 1
                    ),
                })
            } else {
                Ok(())
            }
        }
    }
}
