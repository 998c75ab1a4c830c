//! The registry room's one error type.

use crate::error::ErrorKind;
use thiserror::Error;

/// Why the registry gave no answer.
#[non_exhaustive]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The view cannot answer now: stale (the source could not advance for longer than
    /// `max_staleness`), rebuilding after a reorg, not built yet, or its file became unreadable.
    /// Callers must treat it as a denial.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// An RPC request failed or returned something unusable.
    #[error("rpc {call} failed: {message}")]
    Rpc {
        /// The JSON-RPC method (or contract call) that failed.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The app's own `isAppAllowed` reverted (or returned undecodable data): the chain gives no
    /// reason string, and the KMS treats this as a denial.
    #[error("isAppAllowed reverted: {0}")]
    ContractReverted(String),
    /// A compose-hash lookup for an app whose code is not a known DstackApp: its events cannot be
    /// trusted, so only a full decision (which asks the chain) can answer.
    #[error("app {0} does not run known DstackApp code; ask for a decision instead")]
    UnknownAppCode(String),
    /// The node no longer serves the chain the view was built from: its head is below the
    /// view's block (another chain, or a node far behind), or its genesis block changed. Told
    /// apart from a reorg, which the view follows.
    #[error("the chain changed under the view: {0}")]
    ChainChanged(String),
    /// The KMS runs code that is not trusted to be DstackKms (named by its code identity): only a
    /// decision, which asks the contract, can answer.
    #[error("the KMS runs unknown code ({0}); ask for a decision instead")]
    UnknownKmsCode(String),
    /// The registry configuration is unusable (zero `log_range` or intervals, a bad RPC URL, the
    /// node on another chain than `chain_id`); reported at start-up.
    #[error("invalid registry configuration: {0}")]
    InvalidConfig(String),
    /// The registry file is over [`super::file::MAX_FILE_BYTES`], changed while read, or is not
    /// valid registry TOML.
    #[error("registry file {path}: {message}")]
    InvalidFile {
        /// The file's path.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The registry file could not be read (or its metadata could not).
    #[error("registry file {path}: {message}")]
    Io {
        /// The file's path.
        path: String,
        /// The I/O error.
        message: String,
    },
}

impl RegistryError {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Unavailable(_) => ErrorKind::Unavailable,
            RegistryError::Rpc { .. } => ErrorKind::Rpc,
            RegistryError::ContractReverted(_) => ErrorKind::ContractReverted,
            RegistryError::UnknownAppCode(_) => ErrorKind::UnknownAppCode,
            RegistryError::UnknownKmsCode(_) => ErrorKind::UnknownKmsCode,
            RegistryError::ChainChanged(_) => ErrorKind::ChainChanged,
            RegistryError::InvalidConfig(_) => ErrorKind::InvalidConfig,
            RegistryError::InvalidFile { .. } => ErrorKind::InvalidRegistryFile,
            RegistryError::Io { .. } => ErrorKind::Io,
        }
    }
}
