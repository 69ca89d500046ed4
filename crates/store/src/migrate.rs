//! Schema migrations, one set per backend, embedded in the binary and
//! applied in order, each in its own transaction, recorded in
//! `symbolon_migrations`. On PostgreSQL an advisory lock makes replicas
//! that start together apply them once.

use sqlx::AnyPool;

use crate::StoreError;
use crate::store::{Backend, placeholders};

const SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_certificates.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_tokens.sql")),
    (3, include_str!("../migrations/sqlite/0003_audit.sql")),
    (4, include_str!("../migrations/sqlite/0004_telemetry.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_gateway_policy.sql"),
    ),
];

const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_certificates.sql"),
    ),
    (2, include_str!("../migrations/postgres/0002_tokens.sql")),
    (3, include_str!("../migrations/postgres/0003_audit.sql")),
    (4, include_str!("../migrations/postgres/0004_telemetry.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_gateway_policy.sql"),
    ),
];

pub(crate) async fn run(
    pool: &AnyPool,
    backend: Backend,
    location: &str,
) -> Result<(), StoreError> {
    let db = |source| crate::store::database_error(location, source);
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    // IMMEDIATE on SQLite: two processes opening a new store at once queue
    // for the write lock instead of one failing at its first write.
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
    .map_err(db)?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(727000)) AS l")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    }
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS symbolon_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM symbolon_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    let newest = migrations.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            problem: format!(
                "schema version {current} is newer than this binary knows ({newest}); upgrade symbolon"
            ),
        });
    }
    // All pending migrations in one transaction: a failure leaves the
    // schema as it was.
    let insert = placeholders(
        backend,
        "INSERT INTO symbolon_migrations (version, applied_at) VALUES (?, ?)",
    );
    for (version, sql) in migrations.iter().filter(|m| m.0 > current) {
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db)?;
        sqlx::query(&insert)
            .bind(*version)
            .bind(time::OffsetDateTime::now_utc().unix_timestamp())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}
