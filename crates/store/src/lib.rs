//! Persistence: certificates, revocations and CRLs.
//!
//! SQLite (WAL, `synchronous=FULL`) under the CA directory by default: a
//! commit is on disk before the caller hands anything out. Records are plain
//! data (no `pki` types), so every crate can read them.
#![forbid(unsafe_code)]

mod audit;
mod batch;
mod migrate;
mod records;
mod store;
mod telemetry;

// === the public interface ===
pub use audit::{Audit, AuditBreak, AuditRecord, chain_hash};
pub use records::{
    CertStatus, CertificateRecord, CrlRecord, ListFilter, Redeemed, RevokeOutcome, RevokedRecord,
    TokenRecord,
};
pub use store::{Backend, Store};
pub use telemetry::{
    GatewayInfo, MatrixCell, PageQuery, SortKey, StatusCounts, TelemetryCount, TelemetryReport,
};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{}: no store there; create the CA first with `symbolon ca init`", path.display())]
    Missing { path: PathBuf },
    #[error("{}: a store already exists there; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("certificate serial {serial} is already recorded")]
    DuplicateSerial { serial: String },
    #[error("store {location}: {source}")]
    Database {
        location: String,
        source: sqlx::Error,
    },
    #[error("store {location}: {problem}")]
    Corrupt { location: String, problem: String },
    /// A write failed as a whole (e.g. its commit): nothing was recorded.
    #[error("store {location}: {problem}")]
    Failed { location: String, problem: String },
}
