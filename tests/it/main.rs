//! Every integration test, in one binary: one module per area. One binary links alloy and tonic
//! once instead of once per test file.

mod support;

mod chain_faults;
mod cli_nitro;
mod cli_registry;
mod cli_tdx;
mod collateral_fetch;
mod collateral_service;
mod dstack_conformance;
mod dstack_lite;
mod gcp_fixtures;
mod gcp_service;
mod gcp_verify;
mod governance;
mod governance_cli;
mod mutation;
mod nitro_conformance;
mod nitro_verify;
mod registry_contracts;
mod registry_differential;
mod registry_file;
mod registry_follow;
mod registry_upgrades;
mod service_chain;
mod service_connections;
mod service_governance;
mod service_grpc;
mod service_readme;
mod service_result_cache;
mod service_trust_roots;
mod tdx_conformance;
mod tdx_differential;
mod tdx_fixtures;
mod tdx_pck;
mod tdx_quote;
mod tdx_verify;
