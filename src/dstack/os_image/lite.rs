//! The TDX-lite measurement material of `vm_config.tdx_measurement` and the chain that ties it to
//! the claimed os_image_hash (as dstack-types' `verify_measurement_material`,
//! `sha256sum_entry_hash` and `TdxOsImageMeasurement::from_cbor_slice` do):
//! `os_image_hash = sha256(checksum_file)`, the checksum file's unique `measurement.tdx.cbor` line
//! is `sha256(measurement)`, and the measurement is a version-3 CBOR document
//! `{version, image: {cmdline_sha384, kernel_authenticode, initrd_sha384},
//!   tdvf: {ovmf, mrtd: {single_pass, two_pass}, td_hob}}`.
//!
//! CBOR is read in place, as upstream's serde types read it ([`super::super::cbor_struct`]):
//! unknown keys are ignored, a byte field may be a byte string, an array of bytes or a text
//! string, a repeated key is refused.

use super::super::cbor_struct::read_document;
use super::super::vm_config::{OvmfVariant, VmConfig};
use super::super::{DstackError, OsImageCheck};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The checksum-file entry that names the measurement document.
pub const MEASUREMENT_FILE_NAME: &str = "measurement.tdx.cbor";
/// The only document version dstack's lite path reads.
pub const MEASUREMENT_VERSION: u32 = 3;
/// Bound on the document before it is decoded (the real one is 384 bytes).
pub const MAX_MEASUREMENT_LEN: usize = 64 * 1024;

/// The decoded `measurement.tdx.cbor`, borrowed from its bytes where it can be. Digest lengths
/// are checked where they are used, as upstream does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementDocument<'a> {
    /// sha384 of the kernel command line (RTMR2's first event).
    pub cmdline_sha384: Cow<'a, [u8]>,
    /// The kernel's Authenticode (PE image) hash, extended into RTMR1.
    pub kernel_authenticode: Cow<'a, [u8]>,
    /// sha384 of the initrd (RTMR2's second event).
    pub initrd_sha384: Cow<'a, [u8]>,
    /// The OVMF build the digests below were taken from; vm_config must name the same.
    pub ovmf: OvmfVariant,
    /// MRTD for a QEMU that adds the TD's pages in a single pass (which of the two applies
    /// follows from vm_config's `qemu_version` and `qemu_single_pass_add_pages`).
    pub mrtd_single_pass: Cow<'a, [u8]>,
    /// MRTD for a QEMU that adds the TD's pages in two passes.
    pub mrtd_two_pass: Cow<'a, [u8]>,
    /// The TD HOB witness: the firmware's memory ranges, from which the HOB for the VM's
    /// `memory_size` is rebuilt.
    pub td_hob_witness: Cow<'a, [u8]>,
}

pub(super) fn mismatch(check: OsImageCheck, detail: impl Into<String>) -> DstackError {
    DstackError::OsImageMismatch {
        check,
        detail: detail.into(),
    }
}

/// Checks the material against the claimed os_image_hash and decodes the document (steps 1-3).
pub fn verified_document(config: &VmConfig) -> Result<MeasurementDocument<'_>, DstackError> {
    let material = config.tdx_measurement.as_ref().ok_or_else(|| {
        mismatch(
            OsImageCheck::ChecksumFile,
            "TDX-lite needs vm_config.tdx_measurement, which is absent",
        )
    })?;
    chain_material(
        config.os_image_hash,
        &material.checksum_file,
        &material.measurement,
        MEASUREMENT_FILE_NAME,
    )?;
    let document = decode(&material.measurement)?;
    if let Some(configured) = config.ovmf_variant {
        if configured != document.ovmf {
            return Err(mismatch(
                OsImageCheck::OvmfVariant,
                format!(
                    "vm_config says {}, the measurement document {}",
                    configured.as_str(),
                    document.ovmf.as_str()
                ),
            ));
        }
    }
    Ok(document)
}

/// Chains a measurement document to the claimed os_image_hash (TDX-lite and GCP alike):
/// `sha256(checksum_file) == os_image_hash` and the checksum file's unique `file_name` line is
/// `sha256(measurement)`.
pub(crate) fn chain_material(
    claimed: Option<[u8; 32]>,
    checksum_file: &[u8],
    measurement: &[u8],
    file_name: &'static str,
) -> Result<(), DstackError> {
    let claimed = claimed.ok_or_else(|| {
        mismatch(
            OsImageCheck::ChecksumFile,
            "vm_config has no os_image_hash to bind",
        )
    })?;
    let checksum_hash: [u8; 32] = Sha256::digest(checksum_file).into();
    if checksum_hash != claimed {
        return Err(mismatch(
            OsImageCheck::ChecksumFile,
            format!(
                "sha256(checksum_file) = {} is not os_image_hash {}",
                crate::encoding::hex(checksum_hash),
                crate::encoding::hex(claimed)
            ),
        ));
    }
    let listed = checksum_entry(checksum_file, file_name)
        .map_err(|detail| mismatch(OsImageCheck::MeasurementHash, detail))?;
    let measured: [u8; 32] = Sha256::digest(measurement).into();
    if listed != measured {
        return Err(mismatch(
            OsImageCheck::MeasurementHash,
            format!(
                "the checksum file lists {} for {file_name}, the measurement hashes \
                 to {}",
                crate::encoding::hex(listed),
                crate::encoding::hex(measured)
            ),
        ));
    }
    Ok(())
}

/// The hash `sha256sum.txt` lists for `file_name`: lines are `<hex> <name>` (blank lines skipped,
/// other names ignored); the name must appear exactly once with a 32-byte hex hash.
fn checksum_entry(checksum_file: &[u8], file_name: &str) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(checksum_file)
        .map_err(|_| "the checksum file is not UTF-8".to_owned())?;
    let mut found = None;
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(hash) = words.next() else {
            continue;
        };
        let name = words
            .next()
            .ok_or_else(|| format!("checksum file line {} has no file name", number + 1))?;
        if name != file_name {
            continue;
        }
        if found.is_some() {
            return Err(format!("the checksum file lists {file_name} twice"));
        }
        let mut parsed = [0u8; 32];
        crate::encoding::decode_hex_to_slice(hash, &mut parsed)
            .ok_or_else(|| format!("the checksum file's {file_name} hash is not 32-byte hex"))?;
        found = Some(parsed);
    }
    found.ok_or_else(|| format!("the checksum file does not list {file_name}"))
}

/// Decodes the document; a version other than 3 is an `os_image_mismatch`, anything unreadable
/// is malformed. An OVMF name dstack does not measure is an `ovmf variant` mismatch.
pub(crate) fn decode(bytes: &[u8]) -> Result<MeasurementDocument<'_>, DstackError> {
    DstackError::check_len(MEASUREMENT_FILE_NAME, bytes.len(), MAX_MEASUREMENT_LEN)?;
    let top = read_document(bytes, MEASUREMENT_FILE_NAME, ["version", "image", "tdvf"])?;
    // A `u32` in upstream's struct: a larger number is unreadable, not another version.
    let version = u32::try_from(top.unsigned("version")?).map_err(|_| DstackError::Cbor {
        what: MEASUREMENT_FILE_NAME,
        reason: "version is not an unsigned 32-bit integer".into(),
    })?;
    if version != MEASUREMENT_VERSION {
        return Err(mismatch(
            OsImageCheck::CborVersion,
            format!(
                "the measurement document is version {version}, {MEASUREMENT_VERSION} expected"
            ),
        ));
    }
    let image = top.map(
        "image",
        "image",
        ["cmdline_sha384", "kernel_authenticode", "initrd_sha384"],
    )?;
    let tdvf = top.map("tdvf", "tdvf", ["ovmf", "mrtd", "td_hob"])?;
    let mrtd = tdvf.map("mrtd", "tdvf.mrtd", ["single_pass", "two_pass"])?;
    let ovmf = tdvf.text("ovmf")?;
    let ovmf = OvmfVariant::from_name(ovmf).ok_or_else(|| {
        mismatch(
            OsImageCheck::OvmfVariant,
            format!("the measurement document names OVMF {ovmf:?}, which dstack does not measure"),
        )
    })?;
    Ok(MeasurementDocument {
        cmdline_sha384: image.bytes("cmdline_sha384")?,
        kernel_authenticode: image.bytes("kernel_authenticode")?,
        initrd_sha384: image.bytes("initrd_sha384")?,
        ovmf,
        mrtd_single_pass: mrtd.bytes("single_pass")?,
        mrtd_two_pass: mrtd.bytes("two_pass")?,
        td_hob_witness: tdvf.bytes("td_hob")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dstack::vm_config::TdxMeasurementMaterial;
    use coset::cbor::value::Value;

    /// A version-3 document as dstack's image builder writes it (ciborium, struct field order).
    pub(crate) fn document_cbor(version: u64, ovmf: &str, witness: &[u8]) -> Vec<u8> {
        let text = |s: &str| Value::Text(s.into());
        let bytes = |b: u8| Value::Bytes(vec![b; 48]);
        let value = Value::Map(vec![
            (text("version"), Value::Integer(version.into())),
            (
                text("image"),
                Value::Map(vec![
                    (text("cmdline_sha384"), bytes(1)),
                    (text("kernel_authenticode"), bytes(2)),
                    (text("initrd_sha384"), bytes(3)),
                ]),
            ),
            (
                text("tdvf"),
                Value::Map(vec![
                    (text("ovmf"), text(ovmf)),
                    (
                        text("mrtd"),
                        Value::Map(vec![
                            (text("single_pass"), bytes(4)),
                            (text("two_pass"), bytes(5)),
                        ]),
                    ),
                    (text("td_hob"), Value::Bytes(witness.to_vec())),
                ]),
            ),
        ]);
        let mut out = Vec::new();
        coset::cbor::ser::into_writer(&value, &mut out).unwrap();
        out
    }

    /// vm_config material whose checksum file lists `measurement`, and the os_image_hash it makes.
    pub(crate) fn material_config(measurement: Vec<u8>) -> VmConfig {
        let checksum_file = format!(
            "{}  {MEASUREMENT_FILE_NAME}\n",
            crate::encoding::hex(Sha256::digest(&measurement))
        )
        .into_bytes();
        VmConfig {
            os_image_hash: Some(Sha256::digest(&checksum_file).into()),
            tdx_measurement: Some(TdxMeasurementMaterial {
                checksum_file,
                measurement,
            }),
            ..VmConfig::default()
        }
    }

    /// The check an `os_image_mismatch` names (panics on any other error).
    pub(crate) fn check_of(err: DstackError) -> OsImageCheck {
        assert_eq!(err.kind().as_str(), "os_image_mismatch", "{err}");
        match err {
            DstackError::OsImageMismatch { check, .. } => check,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_consistent_chain_decodes() {
        let config = material_config(document_cbor(3, "pre202505", &[1, 2]));
        let document = verified_document(&config).unwrap();
        assert_eq!(document.cmdline_sha384, vec![1; 48]);
        assert_eq!(document.mrtd_two_pass, vec![5; 48]);
        assert_eq!(document.td_hob_witness, vec![1, 2]);
        assert_eq!(document.ovmf, OvmfVariant::Pre202505);
        let with_ovmf = VmConfig {
            ovmf_variant: Some(OvmfVariant::Pre202505),
            ..config
        };
        assert!(verified_document(&with_ovmf).is_ok());
    }

    #[test]
    fn checksum_file_failures() {
        let config = material_config(document_cbor(3, "pre202505", &[]));
        let mut other_hash = config.clone();
        other_hash.os_image_hash = Some([0; 32]);
        let no_material = VmConfig {
            tdx_measurement: None,
            ..config.clone()
        };
        let no_hash = VmConfig {
            os_image_hash: None,
            ..config
        };
        for bad in [other_hash, no_material, no_hash] {
            assert_eq!(
                check_of(verified_document(&bad).unwrap_err()),
                OsImageCheck::ChecksumFile
            );
        }
    }

    #[test]
    fn measurement_hash_failures() {
        let measurement = document_cbor(3, "pre202505", &[]);
        let digest = crate::encoding::hex(Sha256::digest(&measurement));
        let other = crate::encoding::hex([7u8; 32]);
        for checksum_file in [
            format!("{other}  {MEASUREMENT_FILE_NAME}\n"),
            format!("{digest}  other.cbor\n"),
            format!("{digest}  {MEASUREMENT_FILE_NAME}\n{digest}  {MEASUREMENT_FILE_NAME}\n"),
            format!("{digest}\n"),
            format!("{}  {MEASUREMENT_FILE_NAME}\n", &digest[..62]),
        ] {
            let checksum_file = checksum_file.into_bytes();
            let config = VmConfig {
                os_image_hash: Some(Sha256::digest(&checksum_file).into()),
                tdx_measurement: Some(TdxMeasurementMaterial {
                    checksum_file,
                    measurement: measurement.clone(),
                }),
                ..VmConfig::default()
            };
            assert_eq!(
                check_of(verified_document(&config).unwrap_err()),
                OsImageCheck::MeasurementHash
            );
        }
        // Other entries and blank lines are ignored.
        let listed = format!("\n{other}  bzImage\n{digest}  {MEASUREMENT_FILE_NAME}\n");
        assert_eq!(
            checksum_entry(listed.as_bytes(), MEASUREMENT_FILE_NAME).unwrap(),
            <[u8; 32]>::from(Sha256::digest(&measurement))
        );
    }

    #[test]
    fn version_and_ovmf_failures() {
        for version in [2, 4] {
            let config = material_config(document_cbor(version, "pre202505", &[]));
            assert_eq!(
                check_of(verified_document(&config).unwrap_err()),
                OsImageCheck::CborVersion
            );
        }
        let config = material_config(document_cbor(3, "post202505", &[]));
        assert_eq!(
            check_of(verified_document(&config).unwrap_err()),
            OsImageCheck::OvmfVariant
        );
    }

    #[test]
    fn unreadable_documents_are_malformed() {
        let text = |s: &str| Value::Text(s.into());
        let encode = |value: &Value| {
            let mut out = Vec::new();
            coset::cbor::ser::into_writer(value, &mut out).unwrap();
            out
        };
        let repeated = encode(&Value::Map(vec![
            (text("version"), Value::Integer(3.into())),
            (text("version"), Value::Integer(3.into())),
        ]));
        let mut wrong_type = document_cbor(3, "pre202505", &[]);
        // image.cmdline_sha384: a 48-byte string (0x58 0x30) becomes an unsigned 48 (0x18 0x30).
        let at = wrong_type
            .windows(2)
            .position(|w| w == [0x58, 0x30])
            .unwrap();
        wrong_type[at] = 0x18;
        for bytes in [
            vec![0xff],
            encode(&Value::Array(vec![])),
            encode(&Value::Map(vec![])),
            repeated,
            encode(&Value::Map(vec![(text("version"), text("3"))])),
            wrong_type,
        ] {
            let err = decode(&bytes).unwrap_err();
            assert!(matches!(err, DstackError::Cbor { .. }), "{err}");
            assert_eq!(err.kind().as_str(), "malformed");
        }
        assert!(matches!(
            decode(&vec![0; MAX_MEASUREMENT_LEN + 1]),
            Err(DstackError::TooLarge { .. })
        ));
    }
}
