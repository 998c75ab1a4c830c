//! MRTD and RTMR0-2 predicted by a TDX-lite measurement document (dstack-mr tdx.rs
//! `tdx_measurements_from_measurement_document`, tdvf.rs `rtmr0_log_from_td_hob_hash_with_acpi_hashes`,
//! machine.rs `versioned_options`). Each register is a log of
//! digests extended from 48 zero bytes.

use super::super::event_log::{extend, sha384, EventLog, Rtmr};
use super::super::vm_config::{OvmfVariant, VmConfig};
use super::super::{DstackError, OsImageCheck};
use super::lite::{mismatch, MeasurementDocument};
use super::td_hob::{td_hob_digest, Q35_HIGH_MEMORY_SPLIT};
use super::TdImageRegisters;
use sha2::{Digest, Sha384};
use std::sync::OnceLock;

/// The exact 2 GiB placement QEMU patches the kernel header identically to the high-memory case.
const COMPAT_2G_MEMORY: u64 = 0x8000_0000;
/// The three RTMR0 ACPI DATA events, in RTMR0 order, as the guest labels them.
pub const ACPI_EVENT_NAMES: [&str; 3] = ["acpi-loader", "acpi-rsdp", "acpi-tables"];
/// The OVMF CFV image digest (pre-202505 firmware).
const CFV_IMAGE: Rtmr = [
    0x34, 0x4b, 0xc5, 0x1c, 0x98, 0x0b, 0xa6, 0x21, 0xaa, 0xa0, 0x0d, 0xa3, 0xed, 0x74, 0x36, 0xf7,
    0xd6, 0xe5, 0x49, 0x19, 0x7d, 0xfe, 0x69, 0x95, 0x15, 0xdf, 0xa2, 0xc6, 0x58, 0x3d, 0x95, 0xe6,
    0x41, 0x2a, 0xf2, 0x1c, 0x09, 0x7d, 0x47, 0x31, 0x55, 0x87, 0x5f, 0xfd, 0x56, 0x1d, 0x67, 0x90,
];
/// Boot0000 (OVMF UiApp) of pre-202505 firmware.
const BOOT0000: Rtmr = [
    0x23, 0xad, 0xa0, 0x7f, 0x52, 0x61, 0xf1, 0x2f, 0x34, 0xa0, 0xbd, 0x8e, 0x46, 0x76, 0x09, 0x62,
    0xd6, 0xb4, 0xd5, 0x76, 0xa4, 0x16, 0xf1, 0xfe, 0xa1, 0xc6, 0x4b, 0xc6, 0x56, 0xb1, 0xd2, 0x8e,
    0xac, 0xf7, 0x04, 0x7a, 0xe6, 0xe9, 0x67, 0xc5, 0x8f, 0xd2, 0xa9, 0x8b, 0xfa, 0x74, 0xc2, 0x98,
];
/// EFI_GLOBAL_VARIABLE and EFI_IMAGE_SECURITY_DATABASE_GUID, in their in-memory (mixed-endian) order.
const EFI_GLOBAL_VARIABLE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
const EFI_IMAGE_SECURITY_DATABASE: [u8; 16] = [
    0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
];

fn measure_log(digests: &[Rtmr]) -> Rtmr {
    let mut register = [0u8; 48];
    digests
        .iter()
        .for_each(|digest| extend(&mut register, digest));
    register
}

/// `SHA384(guid ‖ u64 len(name) ‖ u64 0 ‖ utf16le(name))` of an empty EFI variable.
fn efi_variable(guid: &[u8; 16], name: &str) -> Rtmr {
    let mut hasher = Sha384::new();
    hasher.update(guid);
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(0u64.to_le_bytes());
    name.encode_utf16()
        .for_each(|unit| hasher.update(unit.to_le_bytes()));
    hasher.finalize().into()
}

fn digest48(field: &'static str, bytes: &[u8]) -> Result<Rtmr, DstackError> {
    Rtmr::try_from(bytes).map_err(|_| DstackError::Length {
        field,
        len: bytes.len(),
        expected: 48,
    })
}

/// The digests every pre-202505 OVMF boot measures, whatever the image: hashed once.
struct FixedDigests {
    secure_boot: Rtmr,
    pk: Rtmr,
    kek: Rtmr,
    db: Rtmr,
    dbx: Rtmr,
    separator: Rtmr,
    boot_order: Rtmr,
    calling_efi_application: Rtmr,
    exit_boot_services_invocation: Rtmr,
    exit_boot_services_returned: Rtmr,
}

fn fixed() -> &'static FixedDigests {
    static FIXED: OnceLock<FixedDigests> = OnceLock::new();
    FIXED.get_or_init(|| FixedDigests {
        secure_boot: efi_variable(&EFI_GLOBAL_VARIABLE, "SecureBoot"),
        pk: efi_variable(&EFI_GLOBAL_VARIABLE, "PK"),
        kek: efi_variable(&EFI_GLOBAL_VARIABLE, "KEK"),
        db: efi_variable(&EFI_IMAGE_SECURITY_DATABASE, "db"),
        dbx: efi_variable(&EFI_IMAGE_SECURITY_DATABASE, "dbx"),
        separator: sha384(&[0; 4]),
        boot_order: sha384(&[0; 2]),
        calling_efi_application: sha384(b"Calling EFI Application from Boot Option"),
        exit_boot_services_invocation: sha384(b"Exit Boot Services Invocation"),
        exit_boot_services_returned: sha384(b"Exit Boot Services Returned with Success"),
    })
}

/// The image-less path measures only `memory_size == 2 GiB` or `>= 0xB0000000`: below the split
/// QEMU's kernel-header patch depends on the exact RAM size.
pub(super) fn check_memory_size(memory_size: u64) -> Result<(), DstackError> {
    if memory_size == COMPAT_2G_MEMORY || memory_size >= Q35_HIGH_MEMORY_SPLIT {
        return Ok(());
    }
    Err(mismatch(
        OsImageCheck::MemorySize,
        format!(
            "TDX-lite measures memory_size {COMPAT_2G_MEMORY:#x} or at least \
             {Q35_HIGH_MEMORY_SPLIT:#x}, not {memory_size:#x}"
        ),
    ))
}

/// `major.minor.patch`, each a u32, as dstack-mr parses it.
fn qemu_version(text: &str) -> Result<(u32, u32, u32), DstackError> {
    let invalid = DstackError::Invalid {
        field: "vm_config qemu_version",
        reason: "not major.minor.patch",
    };
    let parts = text
        .split('.')
        .map(|part| part.parse::<u32>().map_err(|_| invalid.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    match parts.as_slice() {
        [major, minor, patch] => Ok((*major, *minor, *patch)),
        _ => Err(invalid),
    }
}

/// Whether QEMU added the TD pages in two passes. QEMU 8.x does by default, others (default
/// 9.1.0) do not; `qemu_single_pass_add_pages` overrides that and is passed *verbatim as the
/// two-pass flag*, a naming inversion upstream has and this reproduces literally.
pub(super) fn two_pass_add_pages(config: &VmConfig) -> Result<bool, DstackError> {
    let version = match &config.qemu_version {
        Some(text) => qemu_version(text)?,
        None => (9, 1, 0),
    };
    if version < (8, 0, 0) {
        return Err(DstackError::Unsupported("QEMU before 8.0.0"));
    }
    let default = ((8, 0, 0)..(9, 0, 0)).contains(&version);
    Ok(config.qemu_single_pass_add_pages.unwrap_or(default))
}

/// The digests of the three named RTMR0 ACPI DATA events: exactly three such events, each name
/// exactly once (dstack-verifier `tdx_acpi_hashes_from_event_log`).
pub(super) fn acpi_digests(log: &EventLog) -> Result<[Rtmr; 3], DstackError> {
    let mut total = 0;
    let mut named = [0usize; 3];
    let mut digests = [[0u8; 48]; 3];
    for event in log.events().iter().filter(|event| event.is_acpi_data()) {
        total += 1;
        if let Some(slot) = ACPI_EVENT_NAMES.iter().position(|name| *name == event.name) {
            named[slot] += 1;
            digests[slot] = event.digest;
        }
    }
    if total != ACPI_EVENT_NAMES.len() {
        return Err(mismatch(
            OsImageCheck::AcpiEvents,
            format!("TDX-lite needs exactly 3 RTMR0 ACPI DATA events, the log has {total}"),
        ));
    }
    if let Some((name, count)) = ACPI_EVENT_NAMES
        .iter()
        .zip(named)
        .find(|(_, count)| *count != 1)
    {
        return Err(mismatch(
            OsImageCheck::AcpiEvents,
            format!("TDX-lite needs one RTMR0 ACPI DATA event named {name}, the log has {count}"),
        ));
    }
    Ok(digests)
}

/// MRTD and RTMR0-2 the document predicts for this VM. The memory size must be measurable.
pub(super) fn predicted(
    document: &MeasurementDocument,
    config: &VmConfig,
    acpi: &[Rtmr; 3],
) -> Result<TdImageRegisters, DstackError> {
    check_memory_size(config.memory_size)?;
    let mrtd = if two_pass_add_pages(config)? {
        &document.mrtd_two_pass
    } else {
        &document.mrtd_single_pass
    };
    let mrtd = digest48("measurement tdvf.mrtd", mrtd)?;
    let td_hob = td_hob_digest(&document.td_hob_witness, config.memory_size)?;
    let fixed = fixed();
    let rtmr0 = match document.ovmf {
        OvmfVariant::Pre202505 => measure_log(&[
            td_hob,
            CFV_IMAGE,
            fixed.secure_boot,
            fixed.pk,
            fixed.kek,
            fixed.db,
            fixed.dbx,
            fixed.separator,
            acpi[0],
            acpi[1],
            acpi[2],
            fixed.boot_order,
            BOOT0000,
        ]),
    };
    let rtmr1 = measure_log(&[
        digest48(
            "measurement image.kernel_authenticode",
            &document.kernel_authenticode,
        )?,
        fixed.calling_efi_application,
        fixed.separator,
        fixed.exit_boot_services_invocation,
        fixed.exit_boot_services_returned,
    ]);
    let rtmr2 = measure_log(&[
        digest48("measurement image.cmdline_sha384", &document.cmdline_sha384)?,
        digest48("measurement image.initrd_sha384", &document.initrd_sha384)?,
    ]);
    Ok(TdImageRegisters {
        mrtd,
        rtmr: [rtmr0, rtmr1, rtmr2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::event_log::{acpi, RawEvent};

    #[test]
    fn guids_are_the_mixed_endian_encodings() {
        // 8BE4DF61-93CA-11D2-AA0D-00E098032B8C and D719B2CB-3D3A-4596-A3BC-DAD00E67656F.
        let encode = |text: &str| -> Vec<u8> {
            text.split('-')
                .enumerate()
                .flat_map(|(index, part)| {
                    let mut bytes = hex::decode(part).unwrap();
                    if index <= 2 {
                        bytes.reverse();
                    }
                    bytes
                })
                .collect()
        };
        assert_eq!(
            encode("8BE4DF61-93CA-11D2-AA0D-00E098032B8C"),
            EFI_GLOBAL_VARIABLE
        );
        assert_eq!(
            encode("D719B2CB-3D3A-4596-A3BC-DAD00E67656F"),
            EFI_IMAGE_SECURITY_DATABASE
        );
    }

    #[test]
    fn memory_size_rule() {
        for good in [0x8000_0000, 0xB000_0000, 0x2_0000_0000] {
            check_memory_size(good).unwrap();
        }
        for bad in [0, 0x4000_0000, 0x8000_1000, 0xAFFF_F000] {
            let err = check_memory_size(bad).unwrap_err();
            assert!(matches!(
                err,
                DstackError::OsImageMismatch {
                    check: OsImageCheck::MemorySize,
                    ..
                }
            ));
        }
    }

    #[test]
    fn page_add_order_and_its_inverted_override() {
        let config = |version: Option<&str>, flag: Option<bool>| VmConfig {
            qemu_version: version.map(str::to_owned),
            qemu_single_pass_add_pages: flag,
            ..VmConfig::default()
        };
        assert!(!two_pass_add_pages(&config(None, None)).unwrap());
        assert!(two_pass_add_pages(&config(Some("8.2.2"), None)).unwrap());
        assert!(!two_pass_add_pages(&config(Some("9.0.0"), None)).unwrap());
        // `qemu_single_pass_add_pages: true` selects the two-pass MRTD, as upstream.
        assert!(two_pass_add_pages(&config(Some("9.1.0"), Some(true))).unwrap());
        assert!(!two_pass_add_pages(&config(Some("8.2.2"), Some(false))).unwrap());
        assert_eq!(
            two_pass_add_pages(&config(Some("7.2.0"), Some(true))).unwrap_err(),
            DstackError::Unsupported("QEMU before 8.0.0")
        );
        for bad in ["9.1", "9.1.0.1", "v9.1.0", ""] {
            assert_eq!(
                two_pass_add_pages(&config(Some(bad), None))
                    .unwrap_err()
                    .kind()
                    .as_str(),
                "malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn acpi_digests_by_name() {
        let log = |events: Vec<RawEvent>| EventLog::from_raw(events).unwrap();
        let named = vec![
            acpi("acpi-tables", 3),
            acpi("acpi-loader", 1),
            acpi("acpi-rsdp", 2),
        ];
        assert_eq!(
            acpi_digests(&log(named.clone())).unwrap(),
            [[1; 48], [2; 48], [3; 48]]
        );
        let unlabelled = vec![acpi("", 1), acpi("", 2), acpi("", 3)];
        let twice = vec![
            acpi("acpi-loader", 1),
            acpi("acpi-loader", 2),
            acpi("acpi-rsdp", 3),
        ];
        let four = [named.clone(), vec![acpi("acpi-loader", 4)]].concat();
        let wrong_payload = vec![
            RawEvent {
                payload: b"ACPI".to_vec(),
                ..acpi("acpi-loader", 1)
            },
            acpi("acpi-rsdp", 2),
            acpi("acpi-tables", 3),
        ];
        for events in [vec![], unlabelled, twice, four, wrong_payload] {
            let err = acpi_digests(&log(events)).unwrap_err();
            assert!(
                matches!(
                    err,
                    DstackError::OsImageMismatch {
                        check: OsImageCheck::AcpiEvents,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }
}
