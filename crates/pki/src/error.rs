use std::path::PathBuf;

use symbolon_core::NamespaceError;

/// Everything that can go wrong in `pki`, with the input it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("{}: file not found", path.display())]
    NotFound { path: PathBuf },
    // The I/O error is part of the message and deliberately not a
    // `#[source]`, so `{:#}` chains do not print it twice.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file exists but does not hold what it should.
    #[error("{}: {problem}", path.display())]
    BadInput { path: PathBuf, problem: String },
    #[error("wrong passphrase for the encrypted private key")]
    WrongPassphrase,
    /// A CSR or issuance request that the CA refuses to sign.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    NotPermitted(#[from] NamespaceError),
    #[error("{0}")]
    Crypto(String),
}

impl PkiError {
    pub(crate) fn bad_input(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        PkiError::BadInput {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Crypto(format!("building the certificate failed: {e}"))
    }
}
