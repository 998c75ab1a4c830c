//! Governance of the allowlists, with no network: the transactions that register or revoke a
//! measurement, in every form a Safe + TimelockController workflow needs, and the explanation of
//! a refusal.
//!
//! - [`value`]: strict parsing of proposed values (exactly 32 bytes; zero and the debug-enclave
//!   image hash refused) and addresses.
//! - [`call`]: the add/remove calls of DstackKms / DstackApp ([`AllowlistCall`]), their calldata
//!   and decoding.
//! - [`timelock`]: a TimelockController operation: `scheduleBatch` / `executeBatch` calldata and
//!   the operation id (`hashOperationBatch`), computed locally.
//! - [`multisend`], [`safe`], [`tx_builder`]: MultiSendCallOnly 1.4.1 calldata, the Safe
//!   transaction and its EIP-712 hash, the Transaction Builder batch file and its checksum.
//! - [`proposal`]: a checked set of calls, optionally through a timelock, printed as calls
//!   JSON, Transaction Builder file, MultiSend calldata or `cast` lines.
//! - [`review`]: what `propose` warns about given the registry (already registered, already
//!   pending, nothing to remove, unregistered app, no contract code).
//! - [`decode`]: governance calldata read back into calls.
//! - [`pending`]: allowlist changes waiting in a timelock, as the registry reports them.
//! - [`compose`]: the compose hash of an app-compose.json and its images pulled by tag.
//! - [`explain`]: the contract's checks, in order, and hints, around a registry decision.

pub mod abi;
pub mod call;
pub mod compose;
pub mod decode;
mod error;
pub mod explain;
pub mod multisend;
pub mod pending;
pub mod proposal;
pub mod review;
pub mod safe;
pub mod timelock;
pub mod tx_builder;
pub mod value;

use alloy::primitives::U256;

pub use call::{AllowlistCall, Function};
pub use error::GovernanceError;
pub use pending::{PendingChange, PendingState};
pub use proposal::{Proposal, TimelockPlan};

use crate::registry::view::Address;

/// A raw call: target, wei and calldata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    /// The contract called.
    pub to: Address,
    /// Wei sent with the call.
    pub value: U256,
    /// The calldata: selector and ABI-encoded arguments.
    pub data: Vec<u8>,
}

impl Call {
    /// A call sending no value.
    pub fn new(to: Address, data: Vec<u8>) -> Call {
        Call {
            to,
            value: U256::ZERO,
            data,
        }
    }
}
