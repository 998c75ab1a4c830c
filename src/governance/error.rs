//! The governance room's one error type.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GovernanceError {
    #[error("{what} {value:?} is not hexadecimal")]
    InvalidHex { what: &'static str, value: String },
    /// A value of the wrong width: never padded or trimmed into one that fits.
    #[error("{what} {value:?} is {got} bytes; it must be exactly {expected} bytes of hex (never padded or trimmed)")]
    HexWidth {
        what: &'static str,
        value: String,
        got: usize,
        expected: usize,
    },
    #[error("{what} is the zero value, which no measurement has")]
    ZeroValue { what: &'static str },
    /// sha256 of 144 zero bytes: what a Nitro enclave in debug mode measures as its OS image.
    #[error("{what} is the image hash of a debug-mode enclave (sha256 of 144 zero bytes)")]
    DebugImageHash { what: &'static str },
    #[error("the proposal contains no call")]
    EmptyProposal,
    #[error("{function} {value} appears twice in the proposal")]
    DuplicateCall {
        function: &'static str,
        value: String,
    },
    #[error("{value} is both added and removed in the proposal")]
    ConflictingCalls { value: String },
    #[error("{function} targets {target}, which is not {expected}")]
    WrongTarget {
        function: &'static str,
        target: String,
        expected: &'static str,
    },
    /// Calldata that is not the call it claims to be.
    #[error("undecodable calldata: {0}")]
    Undecodable(String),
    #[error("invalid Transaction Builder batch file: {0}")]
    InvalidBatchFile(String),
    #[error("invalid app-compose.json: {0}")]
    InvalidAppCompose(String),
    /// The decision explained was not taken on the view given to explain it.
    #[error("the decision ({decision}) does not match the view it is explained with ({view})")]
    InconsistentView { decision: String, view: String },
}

impl GovernanceError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            GovernanceError::InvalidHex { .. } => "invalid_hex",
            GovernanceError::HexWidth { .. } => "hex_width",
            GovernanceError::ZeroValue { .. } => "zero_value",
            GovernanceError::DebugImageHash { .. } => "debug_image_hash",
            GovernanceError::EmptyProposal => "empty_proposal",
            GovernanceError::DuplicateCall { .. } => "duplicate_call",
            GovernanceError::ConflictingCalls { .. } => "conflicting_calls",
            GovernanceError::WrongTarget { .. } => "wrong_target",
            GovernanceError::Undecodable(_) => "undecodable_calldata",
            GovernanceError::InvalidBatchFile(_) => "invalid_batch_file",
            GovernanceError::InvalidAppCompose(_) => "invalid_app_compose",
            GovernanceError::InconsistentView { .. } => "inconsistent_view",
        }
    }
}
