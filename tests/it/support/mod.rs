//! What the test areas share: the real samples, generated PKIs, the CLI runner, anvil, a served
//! instance. One module per concern.

pub mod anvil;
pub mod cli;
pub mod gcp;
pub mod nitro;
pub mod samples;
pub mod service;
pub mod tdx;
