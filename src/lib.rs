//! tee-verifier: verifies confidential-computing attestations (AWS Nitro Enclaves, Intel TDX with
//! dstack's event log) and answers the dstack KMS's on-chain allowlist question from a cached view.
//!
//! Data flows one way: bytes → parse → verify(now, expectations) → boot info → decision. Every step
//! takes the time as an argument; only the CLI and the service read the clock.

pub mod boot_info;
pub mod cache_stats;
pub mod cli;
pub mod crypto;
pub mod dstack;
pub mod encoding;
pub mod evidence;
pub mod nitro;
pub mod registry;
pub mod service;
pub mod tdx;
pub mod tpm;
pub mod x509;
