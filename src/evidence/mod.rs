//! The end-to-end pipeline shared by the CLI and the service: detect what kind of evidence some
//! bytes are (`detect`), verify it at `now` with the platform's rules and rebuild dstack's
//! identity from it (`verify`, giving a typed [`Verified`]), and present it in one shape
//! (`report`, a [`Report`]: the field names of the CLI's `--json` and of the gRPC response).
//!
//! Formats, detected from the bytes: a Nitro COSE_Sign1 document (tagged or not), a raw TDX quote
//! (with an optional dstack event log beside it), a dstack quote report JSON, a dstack
//! VersionedAttestation (V0 SCALE or V1 msgpack, or hex inside `{"attestation": …}`), and a dstack
//! RA-TLS certificate (PEM or DER) whose attestation must bind its key.
//!
//! [`preview`] reads the same formats without verifying anything; its [`Preview`] can be shown
//! but never authorized.

mod detect;
mod memo;
mod report;
#[cfg(test)]
mod result_cache_tests;
mod verified;
mod verify;

pub use detect::EvidenceInput;
pub use report::{DstackClaims, GcpClaims, NitroClaims, Report, TdxClaims, TpmClaims};
pub use verified::{
    AttestedDstack, AttestedNitro, AttestedTdx, AttestedTpm, Platform, Preview, Unauthorizable,
    Verified,
};
pub use verify::{gcp_ak_certificate, preview, tdx_quote, EvidenceVerifier, Expectations};

use crate::dstack::gcp::GcpError;
use crate::dstack::DstackError;
use crate::error::ErrorKind;
use crate::nitro::NitroError;
use crate::tdx::TdxError;
use thiserror::Error;

/// Why evidence was rejected. `kind()` is the stable name printed by the CLI and the service.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum EvidenceError {
    /// The input is empty or matches none of the accepted formats (Nitro COSE_Sign1, TDX quote,
    /// dstack attestation or JSON); the text says what was seen.
    #[error("unrecognized evidence format: {0}")]
    UnknownFormat(&'static str),
    /// A JSON input (event log, vm_config, dstack JSON) is not UTF-8.
    #[error("{0} is not valid UTF-8 JSON")]
    NotUtf8(&'static str),
    /// The caller asked for a check this kind of evidence cannot make: refusing is the only
    /// answer that does not silently skip it.
    #[error("{what} does not apply to {evidence}")]
    Inapplicable {
        /// The check asked for (e.g. an expected nonce).
        what: &'static str,
        /// The kind of evidence given.
        evidence: &'static str,
    },
    /// The Nitro attestation document was rejected.
    #[error(transparent)]
    Nitro(#[from] NitroError),
    /// The TDX quote or its collateral was rejected.
    #[error(transparent)]
    Tdx(#[from] TdxError),
    /// dstack's layer (wire format, event log, app info, measurements, bindings) was rejected.
    #[error(transparent)]
    Dstack(#[from] DstackError),
    /// The GCP layer (AK chain, vTPM quote, PCR14, OS image) was rejected.
    #[error(transparent)]
    Gcp(#[from] GcpError),
}

impl EvidenceError {
    /// The class of the rejection; [`ErrorKind::InvalidArgument`] is a usage error (a check the
    /// evidence cannot make), every other kind a verdict on the evidence.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EvidenceError::UnknownFormat(_) | EvidenceError::NotUtf8(_) => ErrorKind::Malformed,
            EvidenceError::Inapplicable { .. } => ErrorKind::InvalidArgument,
            EvidenceError::Nitro(e) => e.kind(),
            EvidenceError::Tdx(e) => e.kind(),
            EvidenceError::Dstack(e) => e.kind(),
            EvidenceError::Gcp(e) => e.kind(),
        }
    }
}
