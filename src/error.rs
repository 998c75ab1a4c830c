//! One vocabulary for every failure: [`ErrorKind`], whose [`as_str`](ErrorKind::as_str) spellings
//! are the stable kinds the CLI prints, the service answers with and the README lists, and
//! [`Error`](enum@Error), which any room's error converts into.

use crate::boot_info::BootInfoError;
#[cfg(feature = "collateral")]
use crate::collateral::CollateralError;
#[cfg(any(feature = "nitro", feature = "tdx"))]
use crate::crypto::CryptoError;
#[cfg(feature = "dstack")]
use crate::dstack::DstackError;
#[cfg(feature = "dstack")]
use crate::evidence::EvidenceError;
#[cfg(feature = "chain")]
use crate::governance::GovernanceError;
#[cfg(feature = "nitro")]
use crate::nitro::NitroError;
#[cfg(feature = "registry")]
use crate::registry::RegistryError;
#[cfg(feature = "tdx")]
use crate::tdx::TdxError;
#[cfg(feature = "tpm")]
use crate::tpm::TpmError;
#[cfg(any(feature = "nitro", feature = "tdx"))]
use crate::x509::X509Error;
use std::fmt;
use thiserror::Error;

/// The class of a failure. Its string ([`as_str`](Self::as_str)) is stable: scripts and clients
/// compare it, so a spelling never changes once released.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // --- the input itself ---
    /// Bytes that do not parse as what they claim to be.
    Malformed,
    /// A request that asks for something the input cannot give (a usage error).
    InvalidArgument,
    /// A well-formed format variant this crate does not implement.
    Unsupported,

    // --- authenticity ---
    /// A signature or key algorithm other than the one the platform uses.
    Algorithm,
    /// A signature that does not verify.
    Signature,
    /// A certificate chain that does not end in the pinned root.
    UntrustedRoot,
    /// A certificate that breaks a constraint of its chain.
    CertificateInvalid,
    /// A certificate past its notAfter.
    Expired,
    /// A certificate before its notBefore.
    NotYetValid,
    /// A revoked certificate or TCB.
    Revoked,

    // --- policy and bindings ---
    /// A debug-mode enclave or TD, refused unless allowed.
    DebugEnclave,
    /// A bound value (nonce, user data, report data, compose hash, ...) that is not the expected one.
    BindingMismatch,
    /// A Nitro document older than allowed, or from the future.
    StaleDocument,

    // --- TDX collateral and appraisal ---
    /// No collateral given for a TDX quote.
    CollateralMissing,
    /// Collateral that does not parse, verify or match the platform.
    CollateralInvalid,
    /// Collateral past its validity window.
    CollateralExpired,
    /// Collateral before its validity window.
    CollateralNotYetValid,
    /// No TCB level of the collateral matches the platform.
    TcbLevelNotFound,
    /// The Quoting Enclave is not the one Intel's QE identity describes.
    QeIdentityMismatch,
    /// The TDX module is not one the collateral describes.
    TdxModuleMismatch,
    /// TD attributes the policy refuses.
    TdAttributes,

    // --- dstack ---
    /// An event log that does not replay to the quoted registers.
    EventLogMismatch,
    /// An OS image whose measurement (checksum file, measurement document, ACPI tables, TD HOB)
    /// does not compute to the registers the hardware quoted.
    OsImageMismatch,

    // --- collateral fetching ---
    /// Collateral could not be fetched and nothing valid at `now` is cached (retry later; never
    /// a verification failure).
    CollateralUnavailable,
    /// A URL named by a certificate that is not on the fetch allowlist; it was never requested.
    UrlNotAllowed,

    // --- the registry ---
    /// The registry view cannot answer now (fail closed: treat as a denial).
    Unavailable,
    /// An RPC request to the chain failed.
    Rpc,
    /// An app contract's `isAppAllowed` reverted.
    ContractReverted,
    /// A lookup the view cannot answer for an app of unknown code.
    UnknownAppCode,
    /// A lookup the view cannot answer while the KMS runs unknown code.
    UnknownKmsCode,
    /// The node serves another chain than the view was built from.
    ChainChanged,
    /// A registry configuration that cannot work.
    InvalidConfig,
    /// A registry file that does not parse.
    InvalidRegistryFile,
    /// A registry file that cannot be read.
    Io,

    // --- governance ---
    /// A value that is not hexadecimal.
    InvalidHex,
    /// A hex value of the wrong width (never padded or trimmed).
    HexWidth,
    /// The all-zero value proposed as a measurement.
    ZeroValue,
    /// The image hash of a debug-mode enclave proposed for an allowlist.
    DebugImageHash,
    /// A governance proposal without any call.
    EmptyProposal,
    /// The same call twice in one proposal.
    DuplicateCall,
    /// One value both added and removed in one proposal.
    ConflictingCalls,
    /// A call whose target is not the contract its function lives on.
    WrongTarget,
    /// Calldata that is not the call it claims to be.
    UndecodableCalldata,
    /// A Transaction Builder batch file that does not parse or whose checksum is wrong.
    InvalidBatchFile,
    /// An app-compose.json that is not of the shape dstack reads.
    InvalidAppCompose,
    /// A decision explained with a view that decides otherwise.
    InconsistentView,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 46] = [
        ErrorKind::Malformed,
        ErrorKind::InvalidArgument,
        ErrorKind::Unsupported,
        ErrorKind::Algorithm,
        ErrorKind::Signature,
        ErrorKind::UntrustedRoot,
        ErrorKind::CertificateInvalid,
        ErrorKind::Expired,
        ErrorKind::NotYetValid,
        ErrorKind::Revoked,
        ErrorKind::DebugEnclave,
        ErrorKind::BindingMismatch,
        ErrorKind::StaleDocument,
        ErrorKind::CollateralMissing,
        ErrorKind::CollateralInvalid,
        ErrorKind::CollateralExpired,
        ErrorKind::CollateralNotYetValid,
        ErrorKind::TcbLevelNotFound,
        ErrorKind::QeIdentityMismatch,
        ErrorKind::TdxModuleMismatch,
        ErrorKind::TdAttributes,
        ErrorKind::EventLogMismatch,
        ErrorKind::OsImageMismatch,
        ErrorKind::CollateralUnavailable,
        ErrorKind::UrlNotAllowed,
        ErrorKind::Unavailable,
        ErrorKind::Rpc,
        ErrorKind::ContractReverted,
        ErrorKind::UnknownAppCode,
        ErrorKind::UnknownKmsCode,
        ErrorKind::ChainChanged,
        ErrorKind::InvalidConfig,
        ErrorKind::InvalidRegistryFile,
        ErrorKind::Io,
        ErrorKind::InvalidHex,
        ErrorKind::HexWidth,
        ErrorKind::ZeroValue,
        ErrorKind::DebugImageHash,
        ErrorKind::EmptyProposal,
        ErrorKind::DuplicateCall,
        ErrorKind::ConflictingCalls,
        ErrorKind::WrongTarget,
        ErrorKind::UndecodableCalldata,
        ErrorKind::InvalidBatchFile,
        ErrorKind::InvalidAppCompose,
        ErrorKind::InconsistentView,
    ];

    /// The stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Algorithm => "algorithm",
            ErrorKind::Signature => "signature",
            ErrorKind::UntrustedRoot => "untrusted_root",
            ErrorKind::CertificateInvalid => "certificate_invalid",
            ErrorKind::Expired => "expired",
            ErrorKind::NotYetValid => "not_yet_valid",
            ErrorKind::Revoked => "revoked",
            ErrorKind::DebugEnclave => "debug_enclave",
            ErrorKind::BindingMismatch => "binding_mismatch",
            ErrorKind::StaleDocument => "stale_document",
            ErrorKind::CollateralMissing => "collateral_missing",
            ErrorKind::CollateralInvalid => "collateral_invalid",
            ErrorKind::CollateralExpired => "collateral_expired",
            ErrorKind::CollateralNotYetValid => "collateral_not_yet_valid",
            ErrorKind::TcbLevelNotFound => "tcb_level_not_found",
            ErrorKind::QeIdentityMismatch => "qe_identity_mismatch",
            ErrorKind::TdxModuleMismatch => "tdx_module_mismatch",
            ErrorKind::TdAttributes => "td_attributes",
            ErrorKind::EventLogMismatch => "event_log_mismatch",
            ErrorKind::OsImageMismatch => "os_image_mismatch",
            ErrorKind::CollateralUnavailable => "collateral_unavailable",
            ErrorKind::UrlNotAllowed => "url_not_allowed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Rpc => "rpc",
            ErrorKind::ContractReverted => "contract_reverted",
            ErrorKind::UnknownAppCode => "unknown_app_code",
            ErrorKind::UnknownKmsCode => "unknown_kms_code",
            ErrorKind::ChainChanged => "chain_changed",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::InvalidRegistryFile => "invalid_registry_file",
            ErrorKind::Io => "io",
            ErrorKind::InvalidHex => "invalid_hex",
            ErrorKind::HexWidth => "hex_width",
            ErrorKind::ZeroValue => "zero_value",
            ErrorKind::DebugImageHash => "debug_image_hash",
            ErrorKind::EmptyProposal => "empty_proposal",
            ErrorKind::DuplicateCall => "duplicate_call",
            ErrorKind::ConflictingCalls => "conflicting_calls",
            ErrorKind::WrongTarget => "wrong_target",
            ErrorKind::UndecodableCalldata => "undecodable_calldata",
            ErrorKind::InvalidBatchFile => "invalid_batch_file",
            ErrorKind::InvalidAppCompose => "invalid_app_compose",
            ErrorKind::InconsistentView => "inconsistent_view",
        }
    }

    /// The kind a stable name stands for (e.g. the `kind` of a gRPC answer), if any.
    pub fn from_stable_str(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes as its stable name.
impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Any failure of this crate, for callers that handle them all alike; [`kind`](Error::kind)
/// classifies it.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum Error {
    /// Evidence detection or verification ([`crate::evidence`]).
    #[error(transparent)]
    #[cfg(feature = "dstack")]
    Evidence(#[from] EvidenceError),
    /// A Nitro attestation document.
    #[error(transparent)]
    #[cfg(feature = "nitro")]
    Nitro(#[from] NitroError),
    /// A TDX quote or its collateral.
    #[error(transparent)]
    #[cfg(feature = "tdx")]
    Tdx(#[from] TdxError),
    /// A TPM quote or its event log.
    #[error(transparent)]
    #[cfg(feature = "tpm")]
    Tpm(#[from] TpmError),
    /// dstack's evidence layer.
    #[error(transparent)]
    #[cfg(feature = "dstack")]
    Dstack(#[from] DstackError),
    /// A boot-info JSON body.
    #[error(transparent)]
    BootInfo(#[from] BootInfoError),
    /// The registry could not answer.
    #[error(transparent)]
    #[cfg(feature = "registry")]
    Registry(#[from] RegistryError),
    /// A governance proposal, its calldata or a timelock operation.
    #[error(transparent)]
    #[cfg(feature = "chain")]
    Governance(#[from] GovernanceError),
    /// Collateral that could not be fetched, or that was fetched and does not verify.
    #[error(transparent)]
    #[cfg(feature = "collateral")]
    Collateral(#[from] CollateralError),
    /// A certificate chain or CRL.
    #[error(transparent)]
    #[cfg(any(feature = "nitro", feature = "tdx"))]
    X509(#[from] X509Error),
    /// A signature.
    #[error(transparent)]
    #[cfg(any(feature = "nitro", feature = "tdx"))]
    Crypto(#[from] CryptoError),
}

impl Error {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            #[cfg(feature = "dstack")]
            Error::Evidence(error) => error.kind(),
            #[cfg(feature = "nitro")]
            Error::Nitro(error) => error.kind(),
            #[cfg(feature = "tdx")]
            Error::Tdx(error) => error.kind(),
            #[cfg(feature = "tpm")]
            Error::Tpm(error) => error.kind(),
            #[cfg(feature = "dstack")]
            Error::Dstack(error) => error.kind(),
            Error::BootInfo(error) => error.kind(),
            #[cfg(feature = "registry")]
            Error::Registry(error) => error.kind(),
            #[cfg(feature = "chain")]
            Error::Governance(error) => error.kind(),
            #[cfg(feature = "collateral")]
            Error::Collateral(error) => error.kind(),
            #[cfg(any(feature = "nitro", feature = "tdx"))]
            Error::X509(error) => error.kind(),
            #[cfg(any(feature = "nitro", feature = "tdx"))]
            Error::Crypto(error) => error.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_released_spelling_and_parses_back() {
        let spellings: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            spellings,
            [
                "malformed",
                "invalid_argument",
                "unsupported",
                "algorithm",
                "signature",
                "untrusted_root",
                "certificate_invalid",
                "expired",
                "not_yet_valid",
                "revoked",
                "debug_enclave",
                "binding_mismatch",
                "stale_document",
                "collateral_missing",
                "collateral_invalid",
                "collateral_expired",
                "collateral_not_yet_valid",
                "tcb_level_not_found",
                "qe_identity_mismatch",
                "tdx_module_mismatch",
                "td_attributes",
                "event_log_mismatch",
                "os_image_mismatch",
                "collateral_unavailable",
                "url_not_allowed",
                "unavailable",
                "rpc",
                "contract_reverted",
                "unknown_app_code",
                "unknown_kms_code",
                "chain_changed",
                "invalid_config",
                "invalid_registry_file",
                "io",
                "invalid_hex",
                "hex_width",
                "zero_value",
                "debug_image_hash",
                "empty_proposal",
                "duplicate_call",
                "conflicting_calls",
                "wrong_target",
                "undecodable_calldata",
                "invalid_batch_file",
                "invalid_app_compose",
                "inconsistent_view",
            ]
        );
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_stable_str(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(ErrorKind::from_stable_str("Malformed"), None);
    }

    /// The rooms that name their kinds by string produce only names of ours.
    #[test]
    fn every_room_converts_into_one_error_with_its_kind() {
        let errors: [(Error, ErrorKind); 11] = [
            (
                EvidenceError::UnknownFormat("empty input").into(),
                ErrorKind::Malformed,
            ),
            (NitroError::DebugEnclave.into(), ErrorKind::DebugEnclave),
            (TdxError::Revoked.into(), ErrorKind::Revoked),
            (TpmError::PcrBank(0x0004).into(), ErrorKind::BindingMismatch),
            (DstackError::Unsupported("x").into(), ErrorKind::Unsupported),
            (
                BootInfoError::TooLong("tcbStatus").into(),
                ErrorKind::InvalidArgument,
            ),
            (
                RegistryError::Unavailable("stale".into()).into(),
                ErrorKind::Unavailable,
            ),
            (
                GovernanceError::ZeroValue {
                    what: "os image hash",
                }
                .into(),
                ErrorKind::ZeroValue,
            ),
            (
                X509Error::UntrustedRoot {
                    found: String::new(),
                }
                .into(),
                ErrorKind::UntrustedRoot,
            ),
            (CryptoError::BadSignature.into(), ErrorKind::Signature),
            (
                CollateralError::NotAllowed { url: "u".into() }.into(),
                ErrorKind::UrlNotAllowed,
            ),
        ];
        for (error, kind) in errors {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }
}
