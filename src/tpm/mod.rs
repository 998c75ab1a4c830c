//! TPM 2.0 quotes: TPMS_ATTEST and TPMT_SIGNATURE parsing, the attestation-key signature, the PCR
//! selection and digest, the qualifying data, and the replay of a TCG event log into the quoted
//! PCRs (TPM 2.0 Part 2 §10.12, §11.3; TCG PC Client Platform Firmware Profile §10). It knows
//! nothing of who made the key or what the PCRs should hold: the caller verifies the attestation
//! key's certificate chain and appraises the verified PCRs.
//!
//! Flow: [`TpmQuote`] (bytes, PCR values, event log) + [`AkPublicKey`] + the expected qualifying
//! data → [`verify_quote`] → [`VerifiedTpmQuote`]. Nothing here reads the clock or the network.

mod attest;
mod error;
mod event_log;
mod quote;
mod reader;
mod signature;

/// Where the real samples are (`../shared/samples`).
#[cfg(test)]
#[path = "../../tests/it/support/samples.rs"]
pub(crate) mod samples;
/// The Google-shaped PKI and quote factory the integration tests and fixtures use.
#[cfg(test)]
#[path = "../../tests/it/support/gcp.rs"]
pub(crate) mod test_support;

pub use crate::crypto::RsaPublicKey;
pub use attest::{
    ClockInfo, PcrSelection, TpmAttest, MAX_ATTEST_LEN, MAX_PCR_SELECTIONS, TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
};
pub use error::TpmError;
pub use event_log::{
    parse_tcg2_event_log, replay_pcr, TpmEvent, EV_NO_ACTION, MAX_EVENTS, MAX_EVENT_LOG_LEN,
};
pub use quote::{verify_quote, PcrValue, TpmQuote, VerifiedTpmQuote};
pub use signature::{AkPublicKey, SignatureScheme, TpmSignature};

/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`: the only PCR bank and signature hash accepted.
pub const TPM_ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_RSASSA`: RSASSA-PKCS1-v1.5.
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
