//! TPMS_ATTEST of a quote (TPM 2.0 Part 2 §10.12.8): what the attestation key signs. All fields
//! are big-endian; bytes after pcrDigest are ignored, as tpm-qvl ignores them.

use super::reader::Reader;
use super::TpmError;

/// `TPM_GENERATED_VALUE`: the magic that marks a structure the TPM itself produced.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// Largest TPMS_ATTEST accepted. A quote's is a few hundred bytes: TPM2B_NAME and TPM2B_DATA
/// are at most 70 and 66 bytes, and there is one PCR selection per bank.
pub const MAX_ATTEST_LEN: usize = 1024;
/// Most PCR selections accepted (`HASH_COUNT`: one per bank a TPM can implement).
pub const MAX_PCR_SELECTIONS: usize = 16;
/// Largest PCR bitmap accepted, in bytes (256 PCRs; TPMs have 24).
const MAX_SIZEOF_SELECT: usize = 32;

/// `TPMS_CLOCK_INFO`. Not checked: a quote's freshness comes from its qualifying data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    /// TPM resets (power cycles) so far.
    pub reset_count: u32,
    /// TPM restarts (resumes) since the last reset.
    pub restart_count: u32,
    /// `TPMI_YES_NO` as sent.
    pub safe: u8,
}

/// One `TPMS_PCR_SELECTION`: a bank and the PCRs selected in it, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's `TPM_ALG_ID` (e.g. [`TPM_ALG_SHA256`](super::TPM_ALG_SHA256)).
    pub hash_alg: u16,
    /// The selected PCR indices, ascending.
    pub pcrs: Vec<u32>,
}

/// A parsed quote TPMS_ATTEST (magic and type checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmAttest {
    /// `qualifiedSigner` (the signing key's qualified name). Not checked.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data the quote was asked for.
    pub extra_data: Vec<u8>,
    /// `clockInfo`. Not checked.
    pub clock_info: ClockInfo,
    /// Vendor-defined firmware version. Not checked.
    pub firmware_version: u64,
    /// `TPMS_QUOTE_INFO.pcrSelect`, in order.
    pub pcr_selections: Vec<PcrSelection>,
    /// `TPMS_QUOTE_INFO.pcrDigest`: the digest of the selected PCRs, in selection order.
    pub pcr_digest: Vec<u8>,
}

impl TpmAttest {
    /// Parses `bytes` (the TPM2B_ATTEST contents, without its size prefix).
    pub fn parse(bytes: &[u8]) -> Result<TpmAttest, TpmError> {
        if bytes.len() > MAX_ATTEST_LEN {
            return Err(TpmError::TooLarge {
                what: "TPMS_ATTEST",
                len: bytes.len(),
                max: MAX_ATTEST_LEN,
            });
        }
        let mut reader = Reader::new(bytes);
        let magic = reader.be_u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::Magic(magic));
        }
        let attest_type = reader.be_u16("type")?;
        if attest_type != TPM_ST_ATTEST_QUOTE {
            return Err(TpmError::AttestType(attest_type));
        }
        let qualified_signer = reader.tpm2b("qualifiedSigner")?.to_vec();
        let extra_data = reader.tpm2b("extraData")?.to_vec();
        let clock_info = ClockInfo {
            clock: reader.be_u64("clockInfo.clock")?,
            reset_count: reader.be_u32("clockInfo.resetCount")?,
            restart_count: reader.be_u32("clockInfo.restartCount")?,
            safe: reader.u8("clockInfo.safe")?,
        };
        let firmware_version = reader.be_u64("firmwareVersion")?;
        let count = reader.be_u32("pcrSelect.count")?;
        let count = usize::try_from(count)
            .ok()
            .filter(|count| *count <= MAX_PCR_SELECTIONS)
            .ok_or(TpmError::TooLarge {
                what: "PCR selection count",
                len: usize::try_from(count).unwrap_or(usize::MAX),
                max: MAX_PCR_SELECTIONS,
            })?;
        let pcr_selections = (0..count)
            .map(|_| selection(&mut reader))
            .collect::<Result<Vec<_>, _>>()?;
        let pcr_digest = reader.tpm2b("pcrDigest")?.to_vec();
        Ok(TpmAttest {
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            pcr_selections,
            pcr_digest,
        })
    }

    /// The selected PCR indices of every bank, flattened in selection order.
    pub fn selected_pcrs(&self) -> Vec<u32> {
        self.pcr_selections
            .iter()
            .flat_map(|selection| selection.pcrs.iter().copied())
            .collect()
    }
}

/// One `TPMS_PCR_SELECTION`: hash u16, sizeofSelect u8, a bitmap with PCR `8·i + j` at bit `j`
/// (LSB first) of byte `i`.
fn selection(reader: &mut Reader) -> Result<PcrSelection, TpmError> {
    let hash_alg = reader.be_u16("pcrSelect.hash")?;
    let size = usize::from(reader.u8("pcrSelect.sizeofSelect")?);
    if size > MAX_SIZEOF_SELECT {
        return Err(TpmError::TooLarge {
            what: "PCR bitmap",
            len: size,
            max: MAX_SIZEOF_SELECT,
        });
    }
    let bitmap = reader.take("pcrSelect.pcrSelect", size)?;
    let pcrs = bitmap
        .iter()
        .zip(0u32..)
        .flat_map(|(byte, byte_index)| {
            (0..8u32)
                .filter(move |bit| byte & (1 << bit) != 0)
                .map(move |bit| byte_index * 8 + bit)
        })
        .collect();
    Ok(PcrSelection { hash_alg, pcrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::AttestSpec;

    /// The real TPMS_ATTEST sample (dstack's tpm_quote_sample.bin), if the samples are present.
    fn sample() -> Option<Vec<u8>> {
        let dir = crate::tpm::samples::samples_dir();
        Some(std::fs::read(dir.join("gcp/dstack_tpm_quote_sample.bin")).unwrap())
    }

    #[test]
    fn the_real_sample_parses_with_and_without_trailing_bytes() {
        let Some(bytes) = sample() else { return };
        let attest = TpmAttest::parse(&bytes).unwrap();
        assert_eq!(attest.qualified_signer.len(), 34);
        assert_eq!(attest.qualified_signer[..2], [0x00, 0x0b]);
        assert_eq!(attest.extra_data, [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(
            attest.clock_info,
            ClockInfo {
                clock: 0x054d_d1ef,
                reset_count: 16,
                restart_count: 0,
                safe: 1,
            }
        );
        assert_eq!(attest.firmware_version, 0x2016_0511_0016_2800);
        assert_eq!(
            attest.pcr_selections,
            [PcrSelection {
                hash_alg: 0x000b,
                pcrs: vec![0, 1, 2],
            }]
        );
        assert_eq!(attest.selected_pcrs(), [0, 1, 2]);
        assert_eq!(
            hex::encode(&attest.pcr_digest),
            "d8de2be2e8a319cddf3d1ce1a310f45e30fd335255278e4fcbd59a5f58887648"
        );
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[0xee; 9]);
        assert_eq!(TpmAttest::parse(&trailing).unwrap(), attest);
    }

    #[test]
    fn every_truncation_is_malformed() {
        let bytes = AttestSpec::quote(&[7; 32], &[(0, [1; 32]), (2, [2; 32])]).encode();
        TpmAttest::parse(&bytes).unwrap();
        for len in 0..bytes.len() {
            let err = TpmAttest::parse(&bytes[..len]).unwrap_err();
            assert!(matches!(err, TpmError::Truncated { .. }), "{len}: {err}");
            assert_eq!(err.kind().as_str(), "malformed");
        }
    }

    #[test]
    fn magic_type_and_sizes_are_checked() {
        let spec = AttestSpec::quote(&[7; 32], &[(0, [1; 32])]);
        let bad_magic = AttestSpec {
            magic: 0xff54_4348,
            ..spec.clone()
        };
        let bad_type = AttestSpec {
            attest_type: 0x8017, // TPM_ST_ATTEST_CERTIFY
            ..spec.clone()
        };
        assert_eq!(
            TpmAttest::parse(&bad_magic.encode()),
            Err(TpmError::Magic(0xff54_4348))
        );
        assert_eq!(
            TpmAttest::parse(&bad_type.encode()),
            Err(TpmError::AttestType(0x8017))
        );
        let many = AttestSpec {
            selections: vec![(0x000b, vec![0]); MAX_PCR_SELECTIONS + 1],
            ..spec.clone()
        };
        let too_large = [spec.encode(), vec![0; MAX_ATTEST_LEN]].concat();
        for bytes in [many.encode(), too_large] {
            let err = TpmAttest::parse(&bytes).unwrap_err();
            assert!(matches!(err, TpmError::TooLarge { .. }), "{err}");
            assert_eq!(err.kind().as_str(), "malformed");
        }
        // A bitmap longer than 32 bytes.
        let mut wide = spec.encode();
        let select_at = wide.len() - 2 - 32 - 3 - 1;
        wide[select_at] = 33;
        wide.extend_from_slice(&[0; 30]);
        assert!(matches!(
            TpmAttest::parse(&wide),
            Err(TpmError::TooLarge {
                what: "PCR bitmap",
                ..
            })
        ));
    }

    #[test]
    fn bitmaps_are_read_lsb_first_across_bytes() {
        let spec = AttestSpec {
            selections: vec![(0x000b, vec![0, 2, 14, 23]), (0x0004, vec![7, 8])],
            ..AttestSpec::quote(&[], &[])
        };
        let attest = TpmAttest::parse(&spec.encode()).unwrap();
        assert_eq!(attest.pcr_selections[0].pcrs, [0, 2, 14, 23]);
        assert_eq!(attest.pcr_selections[1].hash_alg, 0x0004);
        assert_eq!(attest.selected_pcrs(), [0, 2, 14, 23, 7, 8]);
        assert!(attest.extra_data.is_empty());
    }
}
