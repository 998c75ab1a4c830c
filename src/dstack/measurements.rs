//! The measurement identities dstack's KMS derives from platform registers
//! (`decode_mr_tdx_from_quote` and `decode_mr_nitro_nsm_from_v1` in dstack-attest):
//! `mr_key_provider` is sha256 of the key-provider payload, or 32 zero bytes without one (and
//! always in boot-time mode); for a Nitro enclave os_image_hash, compose_hash, mr_system and
//! mr_aggregated are all sha256(PCR0 ‖ PCR1 ‖ PCR2).
//!
//! The inputs are this room's own small structs, so the formulas do not depend on how the TDX and
//! Nitro rooms parse their formats.

use super::event_log::Rtmr;
use super::DstackError;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;

/// Length of `report_data` in a TD report and in a dstack attestation.
pub const REPORT_DATA_LEN: usize = 64;

/// The TD report registers dstack reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdRegisters {
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID (dstack ≥ 0.5.1: `0x01 ‖ compose_hash ‖ 0*15`).
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3 as the quote reports them.
    pub rtmr: [Rtmr; 4],
    /// REPORTDATA.
    pub report_data: [u8; REPORT_DATA_LEN],
}

impl Default for TdRegisters {
    /// All registers zero.
    fn default() -> Self {
        TdRegisters {
            mr_td: [0; 48],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [[0; 48]; 4],
            report_data: [0; REPORT_DATA_LEN],
        }
    }
}

impl From<&crate::tdx::TdReport> for TdRegisters {
    fn from(report: &crate::tdx::TdReport) -> Self {
        TdRegisters {
            mr_td: report.mr_td,
            mr_config_id: report.mr_config_id,
            mr_owner: report.mr_owner,
            mr_owner_config: report.mr_owner_config,
            rtmr: report.rtmr,
            report_data: report.report_data,
        }
    }
}

/// SHA-256 fed with `MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2`, the prefix both dstack measurements share.
fn boot_chain_hasher(registers: &TdRegisters) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(registers.mr_td);
    registers
        .rtmr
        .iter()
        .take(3)
        .for_each(|rtmr| hasher.update(rtmr));
    hasher
}

/// `mr_system = SHA256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ mr_key_provider)`.
pub fn mr_system(registers: &TdRegisters, mr_key_provider: &[u8; 32]) -> [u8; 32] {
    let mut hasher = boot_chain_hasher(registers);
    hasher.update(mr_key_provider);
    hasher.finalize().into()
}

/// `mr_aggregated = SHA256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ rtmr3 [‖ MRCONFIGID ‖ MROWNER ‖
/// MROWNERCONFIG])`, the last three appended iff any of them is non-zero. `rtmr3` is the quote's
/// RTMR3, or its boot-time replay.
pub fn mr_aggregated(registers: &TdRegisters, rtmr3: &Rtmr) -> [u8; 32] {
    let mut hasher = boot_chain_hasher(registers);
    hasher.update(rtmr3);
    let config = [
        &registers.mr_config_id,
        &registers.mr_owner,
        &registers.mr_owner_config,
    ];
    if config
        .iter()
        .any(|register| register.iter().any(|byte| *byte != 0))
    {
        config.iter().for_each(|register| hasher.update(register));
    }
    hasher.finalize().into()
}

/// TDX device id: `sha256(PPID)`, the PPID coming from the verified PCK certificate.
pub fn tdx_device_id(ppid: &[u8]) -> [u8; 32] {
    Sha256::digest(ppid).into()
}

/// The parts of a verified Nitro attestation document dstack reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NitroEnclave {
    /// `i-<instance>-enc<id>`; only its text before the first `-` enters the device id.
    pub module_id: String,
    /// PCR index → value; PCR0..2 must be 48 bytes.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The document's `user_data`, which dstack fills with its 64-byte report data.
    pub user_data: Option<Vec<u8>>,
}

impl From<&crate::nitro::AttestationDocument> for NitroEnclave {
    fn from(document: &crate::nitro::AttestationDocument) -> Self {
        NitroEnclave {
            module_id: document.module_id.clone(),
            pcrs: document.pcrs.clone(),
            user_data: document.user_data.clone(),
        }
    }
}

impl NitroEnclave {
    /// `sha256(PCR0 ‖ PCR1 ‖ PCR2)` over 48-byte PCRs: dstack's os_image_hash, compose_hash,
    /// mr_system and mr_aggregated of an enclave. A debug enclave (all three zero) is refused.
    pub fn image_hash(&self) -> Result<[u8; 32], DstackError> {
        let pcr = |index: u8| {
            self.pcrs
                .get(&index)
                .map(Vec::as_slice)
                .filter(|pcr| pcr.len() == 48)
                .ok_or(DstackError::InvalidPcr(index))
        };
        let boot_pcrs = [pcr(0)?, pcr(1)?, pcr(2)?];
        if boot_pcrs
            .iter()
            .all(|pcr| pcr.iter().all(|byte| *byte == 0))
        {
            return Err(DstackError::DebugEnclave);
        }
        let [pcr0, pcr1, pcr2] = boot_pcrs;
        Ok(crate::nitro::os_image_hash(pcr0, pcr1, pcr2))
    }

    /// dstack's enclave device id: sha256 of the text before the first `-` of module_id (the
    /// whole id without one). Upstream quirk kept for compatibility: for `i-<instance>-enc<id>`
    /// this is sha256("i"), the same for every enclave.
    pub fn device_id(&self) -> [u8; 32] {
        let prefix = self
            .module_id
            .split_once('-')
            .map_or(self.module_id.as_str(), |(head, _)| head);
        Sha256::digest(prefix.as_bytes()).into()
    }
}

/// dstack's `QuoteContentType` report data with its default hash: `sha512(tag ‖ ":" ‖ content)`.
/// Tags: `ratls-cert` (an RA-TLS certificate's SubjectPublicKeyInfo DER), `app-data` (a
/// `dstack-pod` payload), `kms-root-ca`.
pub fn content_report_data(tag: &str, content: &[u8]) -> [u8; REPORT_DATA_LEN] {
    let mut hasher = Sha512::new();
    hasher.update(tag.as_bytes());
    hasher.update(b":");
    hasher.update(content);
    hasher.finalize().into()
}

/// Checks that the attested 64-byte report data is `expected`, right-padded with zeros to 64
/// bytes (how dstack fills report_data); anything else is a `binding_mismatch`.
pub fn check_report_data(attested: &[u8], expected: &[u8]) -> Result<(), DstackError> {
    DstackError::check_len("expected report_data", expected.len(), REPORT_DATA_LEN)?;
    let mut padded = [0u8; REPORT_DATA_LEN];
    padded
        .iter_mut()
        .zip(expected)
        .for_each(|(slot, byte)| *slot = *byte);
    if attested != padded {
        return Err(DstackError::ReportDataMismatch {
            attested: crate::encoding::hex(attested),
            expected: crate::encoding::hex(padded),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registers() -> TdRegisters {
        TdRegisters {
            mr_td: [1; 48],
            rtmr: [[2; 48], [3; 48], [4; 48], [5; 48]],
            ..Default::default()
        }
    }

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        parts.iter().for_each(|part| hasher.update(part));
        hasher.finalize().into()
    }

    #[test]
    fn mr_system_covers_mrtd_boot_rtmrs_and_key_provider() {
        let regs = registers();
        let expected = sha256(&[&[1; 48], &[2; 48], &[3; 48], &[4; 48], &[9; 32]]);
        assert_eq!(mr_system(&regs, &[9; 32]), expected);
        // RTMR3 and the config registers never enter mr_system.
        let other = TdRegisters {
            rtmr: [[2; 48], [3; 48], [4; 48], [0; 48]],
            mr_owner: [7; 48],
            ..regs
        };
        assert_eq!(mr_system(&other, &[9; 32]), expected);
    }

    #[test]
    fn mr_aggregated_appends_config_registers_only_when_any_is_set() {
        let regs = registers();
        let base: [&[u8]; 5] = [&[1; 48], &[2; 48], &[3; 48], &[4; 48], &[8; 48]];
        assert_eq!(mr_aggregated(&regs, &[8; 48]), sha256(&base));

        for (config_id, owner, owner_config) in
            [([1; 48], [0; 48], [0; 48]), ([0; 48], [0; 48], [1; 48])]
        {
            let with = TdRegisters {
                mr_config_id: config_id,
                mr_owner: owner,
                mr_owner_config: owner_config,
                ..registers()
            };
            let mut parts = base.to_vec();
            parts.extend([&config_id[..], &owner[..], &owner_config[..]]);
            assert_eq!(mr_aggregated(&with, &[8; 48]), sha256(&parts));
            assert_ne!(mr_aggregated(&with, &[8; 48]), sha256(&base));
        }
    }

    #[test]
    fn tdx_device_id_is_sha256_of_ppid() {
        assert_eq!(
            hex::encode(tdx_device_id(
                &hex::decode("897d3eb76ea887b783f9ad3d0771034b").unwrap()
            )),
            "ea0ba482106a22ecb76b59b95fed32b5cc3a81534b27ee01a25a10a87cca7d03"
        );
    }

    fn enclave(pcr_byte: u8) -> NitroEnclave {
        NitroEnclave {
            module_id: "i-0827e799ec9232d44-enc019b5640fdf630d6".into(),
            pcrs: (0..16u8).map(|index| (index, vec![pcr_byte; 48])).collect(),
            user_data: None,
        }
    }

    #[test]
    fn nitro_image_hash_and_device_id() {
        let image = enclave(7).image_hash().unwrap();
        assert_eq!(image, sha256(&[&[7; 144]]));
        assert_eq!(
            hex::encode(enclave(7).device_id()),
            "de7d1b721a1e0632b7cf04edf5032c8ecffa9f9a08492152b926f1a5a7e765d7"
        );
        let no_dash = NitroEnclave {
            module_id: "enclave".into(),
            ..enclave(7)
        };
        assert_eq!(no_dash.device_id(), sha256(&[b"enclave"]));
    }

    #[test]
    fn nitro_debug_and_malformed_pcrs_are_refused() {
        assert_eq!(enclave(0).image_hash(), Err(DstackError::DebugEnclave));
        assert_eq!(DstackError::DebugEnclave.kind().as_str(), "debug_enclave");

        let mut short = enclave(7);
        short.pcrs.insert(1, vec![7; 32]);
        assert_eq!(short.image_hash(), Err(DstackError::InvalidPcr(1)));
        let mut missing = enclave(7);
        missing.pcrs.remove(&2);
        let err = missing.image_hash().unwrap_err();
        assert_eq!(
            (err.clone(), err.kind().as_str()),
            (DstackError::InvalidPcr(2), "malformed")
        );
    }

    #[test]
    fn content_report_data_is_sha512_of_tag_colon_content() {
        let expected: [u8; 64] = Sha512::digest(b"ratls-cert:\x30\x01").into();
        assert_eq!(content_report_data("ratls-cert", &[0x30, 0x01]), expected);
        assert_ne!(
            content_report_data("app-data", b""),
            content_report_data("ratls-cert", b"")
        );
    }

    #[test]
    fn report_data_is_compared_right_padded() {
        let mut attested = [0u8; 64];
        attested[..2].copy_from_slice(&[0x12, 0x34]);
        check_report_data(&attested, &[0x12, 0x34]).unwrap();
        check_report_data(&attested, &attested).unwrap();

        let err = check_report_data(&attested, &[0x12, 0x35]).unwrap_err();
        assert_eq!(err.kind().as_str(), "binding_mismatch");
        // A short attested value (a Nitro user_data of 32 bytes) never equals 64 bytes.
        assert_eq!(
            check_report_data(&attested[..32], &[0x12, 0x34])
                .unwrap_err()
                .kind()
                .as_str(),
            "binding_mismatch"
        );
        assert_eq!(
            check_report_data(&attested, &[0; 65])
                .unwrap_err()
                .kind()
                .as_str(),
            "malformed"
        );
    }
}
