//! Schema migrations, embedded in the binary and applied in order, each in
//! its own transaction, recorded in `symbolon_migrations`.

use sqlx::SqlitePool;

use crate::StoreError;

const SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_certificates.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_tokens.sql")),
];

pub(crate) async fn run(pool: &SqlitePool, location: &str) -> Result<(), StoreError> {
    let db = |source| StoreError::Database {
        location: location.to_string(),
        source,
    };
    sqlx::query("CREATE TABLE IF NOT EXISTS symbolon_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(pool)
        .await
        .map_err(db)?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM symbolon_migrations")
            .fetch_one(pool)
            .await
            .map_err(db)?;
    let newest = SQLITE.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            problem: format!(
                "schema version {current} is newer than this binary knows ({newest}); upgrade symbolon"
            ),
        });
    }
    for (version, sql) in SQLITE.iter().filter(|m| m.0 > current) {
        let mut tx = pool.begin().await.map_err(db)?;
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("INSERT INTO symbolon_migrations (version, applied_at) VALUES (?, strftime('%s','now'))")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
    }
    Ok(())
}
