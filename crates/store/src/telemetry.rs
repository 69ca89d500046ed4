//! Telemetry and dashboard queries: gateway counts per minute, the
//! connection matrix, and inventory pages and summaries.

use std::collections::BTreeMap;

use sqlx::Row;
use time::OffsetDateTime;

use crate::store::from_ts_pub as from_ts;
use crate::{CertificateRecord, Store, StoreError};

/// One counter from a gateway report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryCount {
    /// The client's identity (SPIFFE ID, DNS name, subject) or `unauthenticated`.
    pub client: String,
    /// `allowed`, `denied` or `failed`.
    pub kind: String,
    /// The policy rule (denied) or reason code (failed); empty for allowed.
    pub reason: String,
    pub count: i64,
}

/// A gateway report: who sent it, for which service, what it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryReport {
    pub gateway: String,
    pub service: String,
    /// `sha256 subject` of each client CA the gateway trusts.
    pub trust: Vec<String>,
    /// SHA-256 of the gateway's compiled policy and its rule names; a
    /// change is written to the audit trail.
    pub policy: Option<(String, Vec<String>)>,
    pub counts: Vec<TelemetryCount>,
}

/// One cell of the connection matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatrixCell {
    pub client: String,
    pub service: String,
    pub allowed: i64,
    pub denied: i64,
    pub failed: i64,
    /// (kind, reason) → count, for the drill-down.
    pub reasons: BTreeMap<(String, String), i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayInfo {
    pub gateway: String,
    pub service: String,
    pub last_seen: OffsetDateTime,
    pub trust: Vec<String>,
}

/// Counts for the overview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub active: i64,
    pub expiring_7d: i64,
    pub expired: i64,
    pub revoked: i64,
}

/// Inventory sort keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    NotAfter,
    IssuedAt,
    Serial,
    Profile,
    Identity,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::NotAfter => "not_after",
            SortKey::IssuedAt => "issued_at",
            SortKey::Serial => "serial",
            SortKey::Profile => "profile",
            SortKey::Identity => "identities",
        }
    }
}

/// A page of the inventory.
#[derive(Clone, Debug)]
pub struct PageQuery<'a> {
    /// Substring of serial, identities or subject (case-insensitive).
    pub search: Option<&'a str>,
    /// `valid`, `expired`, `revoked`.
    pub status: Option<&'a str>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
}

impl Store {
    /// Adds a report's counts to the current minute's bucket.
    pub async fn record_telemetry(
        &self,
        report: &TelemetryReport,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let bucket = now.unix_timestamp() - now.unix_timestamp().rem_euclid(60);
        let mut tx = self.begin_write().await?;
        let upsert = self.sql(
            "INSERT INTO telemetry (bucket, gateway, service, client, kind, reason, count) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (bucket, gateway, service, client, kind, reason) DO UPDATE SET count = telemetry.count + excluded.count",
        );
        for c in report.counts.iter().filter(|c| c.count > 0) {
            sqlx::query(&upsert)
                .bind(bucket)
                .bind(report.gateway.clone())
                .bind(report.service.clone())
                .bind(c.client.clone())
                .bind(c.kind.clone())
                .bind(c.reason.clone())
                .bind(c.count)
                .execute(&mut *tx)
                .await
                .map_err(self.db_err())?;
        }
        let previous_policy: Option<String> =
            sqlx::query(&self.sql("SELECT policy FROM gateways WHERE gateway = ?"))
                .bind(report.gateway.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.db_err())?
                .map(|r| r.try_get("policy"))
                .transpose()
                .map_err(self.db_err())?;
        let gw = self.sql(
            "INSERT INTO gateways (gateway, service, last_seen, trust) VALUES (?, ?, ?, ?)
             ON CONFLICT (gateway) DO UPDATE SET service = excluded.service, last_seen = excluded.last_seen, trust = excluded.trust",
        );
        sqlx::query(&gw)
            .bind(report.gateway.clone())
            .bind(report.service.clone())
            .bind(now.unix_timestamp())
            .bind(report.trust.join("\n"))
            .execute(&mut *tx)
            .await
            .map_err(self.db_err())?;
        if let Some((hash, rules)) = &report.policy {
            let previous = previous_policy.clone();
            if previous.as_deref() != Some(hash.as_str()) {
                let names: Vec<String> = rules.iter().map(|r| format!("{r:?}")).collect();
                let detail = format!(
                    "{{\"service\":{:?},\"policy_sha256\":{:?},\"previous\":{:?},\"rules\":[{}]}}",
                    report.service,
                    hash,
                    previous.unwrap_or_default(),
                    names.join(",")
                );
                let actor = format!("gateway:{}", report.gateway);
                crate::audit::append(
                    &mut tx,
                    self.backend(),
                    crate::Audit {
                        actor: &actor,
                        action: "policy_change",
                    },
                    &report.gateway,
                    &detail,
                    now,
                )
                .await
                .map_err(self.db_err())?;
                sqlx::query(&self.sql("UPDATE gateways SET policy = ? WHERE gateway = ?"))
                    .bind(hash.clone())
                    .bind(report.gateway.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db_err())?;
            }
        }
        tx.commit().await.map_err(self.db_err())
    }

    /// Drops telemetry older than `before` (retention).
    pub async fn prune_telemetry(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let r = sqlx::query(&self.sql("DELETE FROM telemetry WHERE bucket < ?"))
            .bind(before.unix_timestamp())
            .execute(self.pool())
            .await
            .map_err(self.db_err())?;
        Ok(r.rows_affected())
    }

    /// The connection matrix since `since`: one cell per (client, service).
    pub async fn connection_matrix(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<MatrixCell>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT client, service, kind, reason, SUM(count) AS n FROM telemetry WHERE bucket >= ?
             GROUP BY client, service, kind, reason ORDER BY client, service",
        ))
        .bind(since.unix_timestamp())
        .fetch_all(self.pool())
        .await
        .map_err(self.db_err())?;
        let mut cells: BTreeMap<(String, String), MatrixCell> = BTreeMap::new();
        for r in rows {
            let client: String = r.try_get("client").map_err(self.db_err())?;
            let service: String = r.try_get("service").map_err(self.db_err())?;
            let kind: String = r.try_get("kind").map_err(self.db_err())?;
            let reason: String = r.try_get("reason").map_err(self.db_err())?;
            let n: i64 = r.try_get("n").map_err(self.db_err())?;
            let cell = cells
                .entry((client.clone(), service.clone()))
                .or_insert_with(|| MatrixCell {
                    client,
                    service,
                    ..Default::default()
                });
            match kind.as_str() {
                "allowed" => cell.allowed += n,
                "denied" => cell.denied += n,
                _ => cell.failed += n,
            }
            *cell.reasons.entry((kind, reason)).or_insert(0) += n;
        }
        Ok(cells.into_values().collect())
    }

    pub async fn gateways(&self) -> Result<Vec<GatewayInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT gateway, service, last_seen, trust FROM gateways ORDER BY gateway")
                .fetch_all(self.pool())
                .await
                .map_err(self.db_err())?;
        rows.iter()
            .map(|r| {
                let trust: String = r.try_get("trust").map_err(self.db_err())?;
                Ok(GatewayInfo {
                    gateway: r.try_get("gateway").map_err(self.db_err())?,
                    service: r.try_get("service").map_err(self.db_err())?,
                    last_seen: from_ts(
                        r.try_get("last_seen").map_err(self.db_err())?,
                        self.location(),
                    )?,
                    trust: trust.lines().map(str::to_string).collect(),
                })
            })
            .collect()
    }

    /// Active / expiring within 7 days / expired / revoked counts.
    pub async fn status_counts(&self, now: OffsetDateTime) -> Result<StatusCounts, StoreError> {
        let t = now.unix_timestamp();
        let week = t + 7 * 86_400;
        let row = sqlx::query(&self.sql(
            "SELECT
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after > ? THEN 1 ELSE 0 END), 0) AS active,
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after > ? AND not_after <= ? THEN 1 ELSE 0 END), 0) AS expiring,
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after <= ? THEN 1 ELSE 0 END), 0) AS expired,
               COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS revoked
             FROM certificates",
        ))
        .bind(t)
        .bind(t)
        .bind(week)
        .bind(t)
        .fetch_one(self.pool())
        .await
        .map_err(self.db_err())?;
        let get = |c: &str| -> Result<i64, StoreError> {
            row.try_get::<i64, _>(c).map_err(self.db_err())
        };
        Ok(StatusCounts {
            active: get("active")?,
            expiring_7d: get("expiring")?,
            expired: get("expired")?,
            revoked: get("revoked")?,
        })
    }

    /// Unrevoked certificates expiring per day (UTC) for `days` from `now`.
    pub async fn expiry_per_day(
        &self,
        now: OffsetDateTime,
        days: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let start = now.unix_timestamp() - now.unix_timestamp().rem_euclid(86_400);
        let rows = sqlx::query(&self.sql(
            "SELECT (not_after - ?) / 86400 AS day, COUNT(*) AS n FROM certificates
             WHERE revoked_at IS NULL AND not_after > ? AND not_after <= ? GROUP BY (not_after - ?) / 86400 ORDER BY day",
        ))
        .bind(start)
        .bind(now.unix_timestamp())
        .bind(start + days * 86_400)
        .bind(start)
        .fetch_all(self.pool())
        .await
        .map_err(self.db_err())?;
        let mut out = vec![0i64; days.max(0) as usize];
        for r in rows {
            let day: i64 = r.try_get("day").map_err(self.db_err())?;
            let n: i64 = r.try_get("n").map_err(self.db_err())?;
            if let Some(slot) = usize::try_from(day).ok().and_then(|d| out.get_mut(d)) {
                *slot += n;
            }
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(d, n)| (start + d as i64 * 86_400, n))
            .collect())
    }

    /// One page of the inventory, and the total matching.
    pub async fn certificate_page(
        &self,
        q: &PageQuery<'_>,
        now: OffsetDateTime,
    ) -> Result<(Vec<CertificateRecord>, i64), StoreError> {
        let mut filter = String::from(" WHERE 1=1");
        let mut binds: Vec<String> = Vec::new();
        let mut int_binds: Vec<i64> = Vec::new();
        if let Some(s) = q.search.filter(|s| !s.is_empty()) {
            filter.push_str(
                " AND (LOWER(serial) LIKE ? OR LOWER(identities) LIKE ? OR LOWER(subject) LIKE ?)",
            );
            let pat = format!("%{}%", s.to_lowercase().replace(['%', '_'], ""));
            binds.extend([pat.clone(), pat.clone(), pat]);
        }
        match q.status {
            Some("revoked") => filter.push_str(" AND revoked_at IS NOT NULL"),
            Some("expired") => {
                filter.push_str(" AND revoked_at IS NULL AND not_after <= ?");
                int_binds.push(now.unix_timestamp());
            }
            Some("valid") => {
                filter.push_str(" AND revoked_at IS NULL AND not_after > ?");
                int_binds.push(now.unix_timestamp());
            }
            _ => {}
        }
        let count_sql = self
            .sql(&format!("SELECT COUNT(*) AS n FROM certificates{filter}"))
            .into_owned();
        let mut cq = sqlx::query(&count_sql);
        for b in &binds {
            cq = cq.bind(b.clone());
        }
        for b in &int_binds {
            cq = cq.bind(*b);
        }
        let total: i64 = cq
            .fetch_one(self.pool())
            .await
            .map_err(self.db_err())?
            .try_get("n")
            .map_err(self.db_err())?;
        let order = if q.descending { "DESC" } else { "ASC" };
        let page_sql = self
            .sql(&format!("SELECT * FROM certificates{filter} ORDER BY {} {order}, serial {order} LIMIT ? OFFSET ?", q.sort.column()))
            .into_owned();
        let mut pq = sqlx::query(&page_sql);
        for b in &binds {
            pq = pq.bind(b.clone());
        }
        for b in &int_binds {
            pq = pq.bind(*b);
        }
        let rows = pq
            .bind(q.limit.clamp(1, 500))
            .bind(q.offset.max(0))
            .fetch_all(self.pool())
            .await
            .map_err(self.db_err())?;
        let records = rows
            .iter()
            .map(|r| self.record_from_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, total))
    }

    /// Audit records about one subject (a serial or token id).
    pub async fn audit_for(&self, subject: &str) -> Result<Vec<crate::AuditRecord>, StoreError> {
        Ok(self
            .audit_records(None)
            .await?
            .into_iter()
            .filter(|r| r.subject == subject)
            .collect())
    }
}
