//! Binding dstack's claimed `os_image_hash` to the TDX hardware (as dstack-verifier's
//! `verify_os_image_hash` does): without this, a TDX os_image_hash is the host's unsigned
//! vm_config claim.
//!
//! The path is chosen only by `vm_config.tdx_attestation_variant`:
//! - `lite`: the image's `sha256sum.txt` and `measurement.tdx.cbor` travel in vm_config; they are
//!   chained to os_image_hash ([`verified_document`]), and MRTD and RTMR0-2 are recomputed from
//!   the document, the TD HOB witness, `memory_size` and the three ACPI digests of the event log,
//!   then compared with the quote. Pure hashing: no download, no QEMU. The ACPI tables themselves are not
//!   checked (only bound through RTMR0), so `acpi_tables_verified` is false.
//! - `legacy` (the default): dstack downloads the image and measures it with dstack-mr; this crate
//!   does not, so the hash stays unbound.

mod lite;
mod registers;
mod td_hob;

pub use lite::{
    verified_document, MeasurementDocument, MAX_MEASUREMENT_LEN, MEASUREMENT_FILE_NAME,
    MEASUREMENT_VERSION,
};
pub use registers::ACPI_EVENT_NAMES;
// The checksum-file chain and CBOR map reader GCP's measurement document shares.
pub(crate) use lite::chain_material;
#[cfg(fuzzing)]
pub(crate) use lite::decode as decode_measurement_document;

use super::event_log::{EventLog, Rtmr};
use super::measurements::TdRegisters;
use super::vm_config::{TdxAttestationVariant, VmConfig};
use super::{DstackError, OsImageCheck};

/// The registers an OS image determines: MRTD and RTMR0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdImageRegisters {
    /// MRTD: the initial TD memory (firmware, TD HOB) as the TDX module measured it.
    pub mrtd: Rtmr,
    /// RTMR0, RTMR1 and RTMR2 (firmware configuration and ACPI, kernel, command line and initrd).
    pub rtmr: [Rtmr; 3],
}

impl From<&TdRegisters> for TdImageRegisters {
    fn from(registers: &TdRegisters) -> Self {
        let [rtmr0, rtmr1, rtmr2, _] = registers.rtmr;
        TdImageRegisters {
            mrtd: registers.mr_td,
            rtmr: [rtmr0, rtmr1, rtmr2],
        }
    }
}

impl TdImageRegisters {
    /// Each register with the name the report gives it (`mr_td`, `rtmr0`..`rtmr2`) and the
    /// check that compares it.
    pub fn named(&self) -> [(&'static str, OsImageCheck, &Rtmr); 4] {
        [
            ("mr_td", OsImageCheck::Mrtd, &self.mrtd),
            ("rtmr0", OsImageCheck::Rtmr(0), &self.rtmr[0]),
            ("rtmr1", OsImageCheck::Rtmr(1), &self.rtmr[1]),
            ("rtmr2", OsImageCheck::Rtmr(2), &self.rtmr[2]),
        ]
    }
}

/// Whether to bind TDX-lite images (`--allow-tdx-lite`, on by default for dstack parity). Off, a
/// lite attestation is verified as any other but its os image stays unbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsImagePolicy {
    /// Bind `tdx_attestation_variant = "lite"` images from their vm_config material (default on).
    pub allow_lite: bool,
}

impl Default for OsImagePolicy {
    fn default() -> Self {
        OsImagePolicy { allow_lite: true }
    }
}

/// How a TDX os_image_hash came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsImageBinding {
    /// The variant vm_config selected (legacy without a vm_config).
    pub variant: TdxAttestationVariant,
    /// MRTD and RTMR0-2 were recomputed from the image material and equal the quote's.
    pub bound: bool,
    /// The ACPI table contents were checked; never on the lite path.
    pub acpi_tables_verified: bool,
}

/// MRTD and RTMR0-2 the lite material of `config` predicts, with the ACPI digests of `log`:
/// every check of the lite binding but the final comparison with the quote.
pub fn lite_registers(config: &VmConfig, log: &EventLog) -> Result<TdImageRegisters, DstackError> {
    let document = verified_document(config)?;
    let acpi = registers::acpi_digests(log)?;
    registers::predicted(&document, config, &acpi)
}

/// The lite check: [`lite_registers`] must equal the quote's registers; the first that differs
/// (MRTD, then RTMR0-2) is named.
pub fn check_lite(
    config: &VmConfig,
    log: &EventLog,
    quoted: &TdImageRegisters,
) -> Result<(), DstackError> {
    let computed = lite_registers(config, log)?;
    for ((_, check, computed), (_, _, quoted)) in computed.named().into_iter().zip(quoted.named()) {
        if computed != quoted {
            return Err(DstackError::OsImageMismatch {
                check,
                detail: format!(
                    "the image predicts {}, the quote has {}",
                    crate::encoding::hex(computed),
                    crate::encoding::hex(quoted)
                ),
            });
        }
    }
    Ok(())
}

/// Binds the os_image_hash of a TDX guest whose quote (`quoted`) the caller has verified: lite
/// images are checked (a failure is an `os_image_mismatch`), legacy ones stay unbound.
pub fn bind_tdx_os_image(
    config: Option<&VmConfig>,
    log: &EventLog,
    quoted: &TdImageRegisters,
    policy: OsImagePolicy,
) -> Result<OsImageBinding, DstackError> {
    let variant = config.map_or(TdxAttestationVariant::Legacy, |config| {
        config.tdx_attestation_variant
    });
    let bound = match (config, variant) {
        (Some(config), TdxAttestationVariant::Lite) if policy.allow_lite => {
            check_lite(config, log, quoted)?;
            true
        }
        _ => false,
    };
    Ok(OsImageBinding {
        variant,
        bound,
        acpi_tables_verified: false,
    })
}

/// The unverified preview (`measure --json` → `"os_image"`): what the image material predicts
/// beside what the quote says, so a developer sees which register differs and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsImagePreview {
    /// The variant vm_config selected (legacy without a vm_config).
    pub variant: TdxAttestationVariant,
    /// The lite computation, or why the material does not compute; `None` for legacy.
    pub computed: Option<Result<TdImageRegisters, DstackError>>,
    /// The quote's MRTD and RTMR0-2, unverified.
    pub quoted: TdImageRegisters,
}

impl OsImagePreview {
    /// Per register (`mr_td`, `rtmr0`..`rtmr2`), whether the computed value equals the quoted one.
    pub fn matches(&self) -> Option<[(&'static str, bool); 4]> {
        let computed = self.computed.as_ref()?.as_ref().ok()?;
        let mut matches = [("", false); 4];
        for (slot, ((name, _, computed), (_, _, quoted))) in matches
            .iter_mut()
            .zip(computed.named().into_iter().zip(self.quoted.named()))
        {
            *slot = (name, computed == quoted);
        }
        Some(matches)
    }
}

/// The preview of [`bind_tdx_os_image`], which never fails: errors are part of the answer.
pub fn preview_tdx_os_image(
    config: Option<&VmConfig>,
    log: &EventLog,
    quoted: &TdImageRegisters,
) -> OsImagePreview {
    let variant = config.map_or(TdxAttestationVariant::Legacy, |config| {
        config.tdx_attestation_variant
    });
    let computed = match (config, variant) {
        (Some(config), TdxAttestationVariant::Lite) => Some(lite_registers(config, log)),
        _ => None,
    };
    OsImagePreview {
        variant,
        computed,
        quoted: *quoted,
    }
}

#[cfg(test)]
mod tests;
