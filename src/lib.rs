//! tee-verifier decides whether a confidential workload may receive its keys.
//!
//! It verifies AWS Nitro Enclaves attestation documents and Intel TDX quotes (with their Intel
//! collateral and dstack's event log), rebuilds the identity dstack registers on chain (the
//! OS image hash, the app id and compose hash, the device id, mr_system and mr_aggregated), and
//! answers exactly what `DstackKms.isAppAllowed` would answer, from a view of the contracts.
//!
//! Data flows one way, and every arrow is a pure function of its inputs and an explicit `now`:
//!
//! ```text
//! bytes ──detect──▶ evidence ──verify(now, expectations)──▶ Verified ──boot info──▶ registry ──▶ Decision
//! ```
//!
//! - **Verification** ([`EvidenceVerifier::verify`]) checks every signature, certificate chain
//!   (to a pinned root), validity window, CRL, TCB level, binding and policy, and returns a typed
//!   [`Verified`]: measurements as byte arrays, the TCB status as [`TcbStatus`]. Only a
//!   `Verified` yields boot info to authorize; a [`Preview`] (what unverified evidence claims)
//!   cannot be authorized.
//! - **Decisions** ([`registry::Registry`]) apply the contracts' checks in the contracts' order,
//!   with their reason strings, from a file ([`registry::file::FileRegistry`]) or from a chain
//!   view that follows the contracts' events (`registry::chain`, feature `chain`).
//! - **Repeated evidence** (a KMS sees the same RA-TLS certificate on every key request of a
//!   CVM): [`EvidenceVerifier::with_result_cache`] opts in to answering byte-identical evidence,
//!   companions and expectations from a bounded cache of successful results, used only while
//!   `now` lies inside the window of everything the result relied on (outside it the evidence is
//!   verified in full, with the precise error). Off by default; the service turns it on.
//! - Failures are typed: every error has a stable [`ErrorKind`] (`"signature"`, `"expired"`,
//!   `"event_log_mismatch"`, …), and converts into one [`Error`].
//!
//! The library never reads the clock and never touches the network: callers pass `now` (unix
//! seconds) and the collateral. Only the edges do: the collateral fetcher, the CLI and the
//! service (features `collateral`, `cli`, `service`).
//!
//! # Features
//!
//! | feature | what it adds | needs |
//! |---|---|---|
//! | `nitro` | Nitro COSE_Sign1 documents: chain to the AWS root, PCRs, OS_IMAGE_HASH | — |
//! | `tdx` | TDX quotes v4/v5: DCAP with collateral, TCB appraisal, TD policy | — |
//! | `tpm` | TPM 2.0 quotes: TPMS_ATTEST, the AK signature, PCR digest, TCG2 event log replay | — |
//! | `dstack` | dstack's event log, identity and wire formats; the [`evidence`] pipeline | `nitro`, `tdx`, `tpm` |
//! | `registry` | the contracts' decision logic and the file view | tokio (sync) |
//! | `chain` | the view that follows DstackKms/DstackApp (and their timelock) on a chain; the [`governance`] transactions | alloy, `registry`, `nitro` |
//! | `collateral` | Intel PCS/PCCS collateral and CA certificates/CRLs, fetched, verified, cached | `tdx`, tokio, reqwest |
//! | `service` | the gRPC service, the KMS webhook drop-in, metrics | tonic, axum |
//! | `cli` (default) | the `tee-verifier` binary | clap |
//! | `rustcrypto` | pure-Rust ECDSA and RSA (p256/p384/rsa) instead of aws-lc-rs | — |
//!
//! `nitro`, `tdx`, `tpm` and `dstack` are the verification core: no tokio, no network.
//!
//! # Example
//!
//! Verify a real dstack Nitro attestation at the time it was made, then ask a registry file
//! whether the KMS would let it boot:
//!
//! ```
//! # #[cfg(all(feature = "dstack", feature = "registry"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tee_verifier::registry::{file::FileRegistry, Registry};
//! use tee_verifier::{EvidenceInput, EvidenceVerifier, Expectations, Platform};
//!
//! let evidence = std::fs::read(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/../shared/samples/dstack/dstack-nitro-attestation-v0.scale.bin"
//! ))?;
//! let now = 1_766_678_659; // unix seconds; a service passes the clock's time
//! let verified = EvidenceVerifier::default().verify(
//!     &EvidenceInput { evidence: &evidence, ..Default::default() },
//!     now,
//!     &Expectations::default(),
//! )?;
//! assert_eq!(verified.platform(), Platform::Nitro);
//!
//! // Nitro's OS image is measured by the PCRs, so the boot info is authorizable as it is.
//! let boot = verified.authorizable_boot_info(false)?;
//!
//! // An allowlist that registers nothing: the KMS would refuse, with the contract's reason.
//! let path = std::env::temp_dir().join(format!("tee-verifier-doc-{}.toml", std::process::id()));
//! std::fs::write(&path, "block = 7\ngateway_app_id = \"\"\nos_images = []\n\
//!     kms_aggregated_mrs = []\nkms_device_ids = []\napps = []\n")?;
//! let registry = FileRegistry::open(&path)?;
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let decision = runtime.block_on(registry.decide_app(boot))?;
//! std::fs::remove_file(&path)?;
//! assert!(!decision.allowed);
//! assert_eq!(decision.reason, "App not registered");
//! assert_eq!(decision.block, 7);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "dstack", feature = "registry")))]
//! # fn main() {}
//! ```

#![forbid(unsafe_code)]
// A build with only some rooms (e.g. `registry` alone) leaves helpers that serve the others
// unused; the full build, which CI lints with `-D warnings`, has no dead code.
#![cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]

pub mod boot_info;
#[cfg(any(feature = "nitro", feature = "tdx"))]
pub(crate) mod cache;
#[cfg(feature = "nitro")]
pub(crate) mod cbor;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "collateral")]
pub mod collateral;
#[cfg(any(feature = "nitro", feature = "tdx", feature = "tpm"))]
pub(crate) mod crypto;
#[cfg(feature = "dstack")]
pub mod dstack;
pub(crate) mod encoding;
pub mod error;
#[cfg(feature = "dstack")]
pub mod evidence;
#[cfg(all(fuzzing, feature = "dstack"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "chain")]
pub mod governance;
#[cfg(feature = "nitro")]
pub mod nitro;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "tdx")]
pub mod tdx;
#[cfg(feature = "tpm")]
pub mod tpm;
#[cfg(any(feature = "nitro", feature = "tdx"))]
pub(crate) mod x509;

pub use boot_info::BootInfo;
#[cfg(any(feature = "nitro", feature = "tdx"))]
pub use cache::CacheCounts;
#[cfg(any(feature = "nitro", feature = "tdx", feature = "tpm"))]
pub use crypto::CryptoError;
pub use encoding::{decode_input, DecodeError, InputEncoding};
pub use error::{Error, ErrorKind};
#[cfg(feature = "dstack")]
pub use evidence::{
    preview, EvidenceError, EvidenceInput, EvidenceVerifier, Expectations, Platform, Preview,
    Verified,
};
#[cfg(feature = "tdx")]
pub use tdx::TcbStatus;
#[cfg(any(feature = "nitro", feature = "tdx"))]
pub use x509::X509Error;
