//! The governance room's one error type; each variant maps to one [`ErrorKind`].

use thiserror::Error;

use crate::error::ErrorKind;

/// Why a governance value, proposal, calldata or file was refused. Nothing is ever repaired
/// into something acceptable: a refused value is reported, not padded, trimmed or guessed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GovernanceError {
    /// A value that is not hexadecimal.
    #[error("{what} {value:?} is not hexadecimal")]
    InvalidHex {
        /// What the value was given as ("os image hash").
        what: &'static str,
        /// The value as given.
        value: String,
    },
    /// A value of the wrong width: never padded or trimmed into one that fits.
    #[error("{what} {value:?} is {got} bytes; it must be exactly {expected} bytes of hex (never padded or trimmed)")]
    HexWidth {
        /// What the value was given as.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Its width in bytes.
        got: usize,
        /// The width it must have.
        expected: usize,
    },
    /// The all-zero value, which no measurement has.
    #[error("{what} is the zero value, which no measurement has")]
    ZeroValue {
        /// What the value was given as.
        what: &'static str,
    },
    /// sha256 of 144 zero bytes: what a Nitro enclave in debug mode measures as its OS image.
    #[error("{what} is the image hash of a debug-mode enclave (sha256 of 144 zero bytes)")]
    DebugImageHash {
        /// What the value was given as.
        what: &'static str,
    },
    /// A proposal without any call.
    #[error("the proposal contains no call")]
    EmptyProposal,
    /// The same call twice in one proposal.
    #[error("{function} {value} appears twice in the proposal")]
    DuplicateCall {
        /// The function's name.
        function: &'static str,
        /// The value, 0x-hex.
        value: String,
    },
    /// One value both added to and removed from the same list in one proposal.
    #[error("{value} is both added and removed in the proposal")]
    ConflictingCalls {
        /// The value, 0x-hex.
        value: String,
    },
    /// A call whose target is not the contract its function lives on.
    #[error("{function} targets {target}, which is not {expected}")]
    WrongTarget {
        /// The function's name.
        function: &'static str,
        /// The address the call targets.
        target: String,
        /// The contract it had to target.
        expected: &'static str,
    },
    /// Calldata that is not the call it claims to be.
    #[error("undecodable calldata: {0}")]
    Undecodable(String),
    /// A Transaction Builder batch file that does not parse, or whose checksum is wrong.
    #[error("invalid Transaction Builder batch file: {0}")]
    InvalidBatchFile(String),
    /// An app-compose.json that is not a JSON object of the shape dstack reads.
    #[error("invalid app-compose.json: {0}")]
    InvalidAppCompose(String),
    /// The decision explained was not taken on the view given to explain it.
    #[error("the decision ({decision}) does not match the view it is explained with ({view})")]
    InconsistentView {
        /// The decision as given.
        decision: String,
        /// What the view decides.
        view: String,
    },
}

impl GovernanceError {
    /// The class of the failure; its [`as_str`](ErrorKind::as_str) spelling is stable.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GovernanceError::InvalidHex { .. } => ErrorKind::InvalidHex,
            GovernanceError::HexWidth { .. } => ErrorKind::HexWidth,
            GovernanceError::ZeroValue { .. } => ErrorKind::ZeroValue,
            GovernanceError::DebugImageHash { .. } => ErrorKind::DebugImageHash,
            GovernanceError::EmptyProposal => ErrorKind::EmptyProposal,
            GovernanceError::DuplicateCall { .. } => ErrorKind::DuplicateCall,
            GovernanceError::ConflictingCalls { .. } => ErrorKind::ConflictingCalls,
            GovernanceError::WrongTarget { .. } => ErrorKind::WrongTarget,
            GovernanceError::Undecodable(_) => ErrorKind::UndecodableCalldata,
            GovernanceError::InvalidBatchFile(_) => ErrorKind::InvalidBatchFile,
            GovernanceError::InvalidAppCompose(_) => ErrorKind::InvalidAppCompose,
            GovernanceError::InconsistentView { .. } => ErrorKind::InconsistentView,
        }
    }
}
