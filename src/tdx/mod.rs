//! Intel TDX: quote v4/v5 parsing and full DCAP quote verification at an explicit `now`, in the
//! spirit of Intel's QVL and dcap-qvl, with caches for collateral shared by many
//! quotes.
//!
//! Entry points: [`Quote::parse`] for the fields, [`TdxVerifier::verify`] for a verdict.

mod collateral;
mod error;
pub(crate) mod json;
mod pck;
pub(crate) mod pem;
mod policy;
mod qe_identity;
pub mod quote;
mod status;
mod tcb_info;
mod verify;

pub use collateral::{Collateral, MAX_COLLATERAL_LEN};
pub use error::TdxError;
pub use pck::PckInfo;
pub use policy::TdxPolicy;
pub use quote::{Quote, QuoteHeader, TdReport, TdReportKind};
pub use status::{TcbStatus, TcbVerdict};
pub use verify::{
    TdxCacheCounts, TdxVerifier, VerifiedQuote, INTEL_SGX_ROOT_CA_DER, INTEL_SGX_ROOT_CA_SHA256,
};
