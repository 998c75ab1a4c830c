//! The GCP TDX evidence (`DstackGcpTdx`, V0 discriminant 1 and V1 `gcp-tdx`): a TDX quote with
//! its event log, and the vTPM's `TpmQuote`, read into the TPM room's types. Nothing is verified
//! here.

use super::evidence::TdxEvidence;
use super::scale::ScaleReader;
use super::DstackError;
use crate::tpm::{self, PcrValue, TpmEvent};

/// Most PCR values a `TpmQuote` may carry (a TPM has 24 PCRs per bank).
pub const MAX_PCR_VALUES: usize = 24;

/// A dstack GCP TDX attestation: the TDX evidence and the vTPM quote bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpEvidence {
    /// The TDX quote, its event log (RTMR3 = the runtime events), report data and vm_config.
    pub tdx: TdxEvidence,
    /// The vTPM quote: TPMS_ATTEST, its signature, the SHA-256 PCRs and the TPM event log.
    pub tpm_quote: tpm::TpmQuote,
    /// The attestation key's certificate (DER), to be chained to Google's root.
    pub ak_cert: Vec<u8>,
}

/// tpm-types `Platform` as SCALE encodes it (a u8), named as V1 spells it.
fn scale_tpm_platform(tag: u8) -> Result<&'static str, DstackError> {
    match tag {
        0 => Ok("dstack"),
        1 => Ok("gcp"),
        2 => Ok("nitroenclave"),
        3 => Ok("aws-ec2"),
        _ => Err(DstackError::Scale {
            offset: 0,
            reason: "unknown TpmQuote platform",
        }),
    }
}

/// `TpmQuote { message, signature, pcr_values: Vec<{index u32, algorithm String, value}>,
/// ak_cert, platform u8, event_log: Vec<{pcr_index u32, digest}> }` (dstack tpm-types), SCALE:
/// the TPM room's quote and the AK certificate.
pub(super) fn read_scale_tpm_quote(
    reader: &mut ScaleReader<'_>,
) -> Result<(tpm::TpmQuote, Vec<u8>), DstackError> {
    let message = reader.bytes()?;
    let signature = reader.bytes()?;
    let count = reader.count(MAX_PCR_VALUES)?;
    let pcr_values = (0..count)
        .map(|_| Ok((reader.u32()?, reader.string()?, reader.bytes()?)))
        .collect::<Result<Vec<_>, DstackError>>()?;
    let ak_cert = reader.bytes()?;
    let platform = scale_tpm_platform(reader.u8()?)?;
    let count = reader.count(tpm::MAX_EVENTS)?;
    let event_log = (0..count)
        .map(|_| Ok((reader.u32()?, reader.bytes()?)))
        .collect::<Result<Vec<_>, DstackError>>()?;
    let quote = gcp_tpm_quote(message, signature, pcr_values, platform, event_log)?;
    Ok((quote, ak_cert))
}

/// The TPM room's quote from a dstack `TpmQuote`'s fields as V0 or V1 decodes them: PCR values
/// as `(index, algorithm, value)`, events as `(pcr_index, digest)`. Only a quote from Google's
/// vTPM (`platform: gcp`) with SHA-256 values is a GCP quote.
pub(super) fn gcp_tpm_quote(
    message: Vec<u8>,
    signature: Vec<u8>,
    pcr_values: Vec<(u32, String, Vec<u8>)>,
    platform: &str,
    event_log: Vec<(u32, Vec<u8>)>,
) -> Result<tpm::TpmQuote, DstackError> {
    if platform != "gcp" {
        return Err(DstackError::UnsupportedPlatform(format!(
            "a {platform} TPM quote in a GCP TDX attestation"
        )));
    }
    if pcr_values.len() > MAX_PCR_VALUES {
        return Err(DstackError::TooLarge {
            what: "TPM PCR values",
            len: pcr_values.len(),
            max: MAX_PCR_VALUES,
        });
    }
    let pcr_values = pcr_values
        .into_iter()
        .map(|(index, algorithm, value)| {
            if algorithm != "sha256" {
                return Err(DstackError::Unsupported(
                    "a TPM PCR value outside the sha256 bank",
                ));
            }
            PcrValue::new(index, &value).map_err(|_| DstackError::Length {
                field: "TPM PCR value",
                len: value.len(),
                expected: 32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let event_log = event_log
        .into_iter()
        .map(|(pcr_index, digest)| {
            TpmEvent::new(pcr_index, &digest).map_err(|_| DstackError::Length {
                field: "TPM event digest",
                len: digest.len(),
                expected: 32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tpm::TpmQuote {
        message,
        signature,
        pcr_values,
        event_log,
    })
}
