//! What the test areas share: the real samples, generated PKIs, the CLI runner, anvil, a served
//! instance. One module per concern.

pub(crate) mod anvil;
pub(crate) mod cli;
pub(crate) mod fault_proxy;
pub(crate) mod gcp;
pub(crate) mod gcp_attestation;
pub(crate) mod nitro;
pub(crate) mod pcs;
pub(crate) mod safe;
pub(crate) mod samples;
pub(crate) mod service;
pub(crate) mod tdx;
