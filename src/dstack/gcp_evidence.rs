//! The GCP TDX evidence (`DstackGcpTdx`, V0 discriminant 1 and V1 `gcp-tdx`): a TDX quote with
//! its event log, and the vTPM's `TpmQuote`, read into the TPM room's types. Nothing is verified
//! here.

use super::evidence::TdxEvidence;
use super::scale::ScaleReader;
use super::v1;
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
/// ak_cert, platform u8, event_log: Vec<{pcr_index u32, digest}> }` (dstack tpm-types), SCALE.
pub(super) fn read_scale_tpm_quote(
    reader: &mut ScaleReader<'_>,
) -> Result<v1::TpmQuote, DstackError> {
    let message = reader.bytes()?;
    let signature = reader.bytes()?;
    let count = reader.count(MAX_PCR_VALUES)?;
    let pcr_values = (0..count)
        .map(|_| {
            Ok(v1::PcrValue {
                index: reader.u32()?,
                algorithm: reader.string()?,
                value: reader.bytes()?,
            })
        })
        .collect::<Result<Vec<_>, DstackError>>()?;
    let ak_cert = reader.bytes()?;
    let platform = scale_tpm_platform(reader.u8()?)?;
    let count = reader.count(tpm::MAX_EVENTS)?;
    let event_log = (0..count)
        .map(|_| {
            Ok(v1::TpmEvent {
                pcr_index: reader.u32()?,
                digest: reader.bytes()?,
            })
        })
        .collect::<Result<Vec<_>, DstackError>>()?;
    Ok(v1::TpmQuote {
        message,
        signature,
        pcr_values,
        ak_cert,
        platform,
        event_log,
    })
}

/// The TPM room's quote and the AK certificate of a dstack `TpmQuote` (V0 or V1). Only a quote
/// from Google's vTPM (`platform: gcp`) with SHA-256 values is a GCP quote.
pub(super) fn gcp_tpm_quote(quote: v1::TpmQuote) -> Result<(tpm::TpmQuote, Vec<u8>), DstackError> {
    if quote.platform != "gcp" {
        return Err(DstackError::UnsupportedPlatform(format!(
            "a {} TPM quote in a GCP TDX attestation",
            quote.platform
        )));
    }
    if quote.pcr_values.len() > MAX_PCR_VALUES {
        return Err(DstackError::TooLarge {
            what: "TPM PCR values",
            len: quote.pcr_values.len(),
            max: MAX_PCR_VALUES,
        });
    }
    let pcr_values = quote
        .pcr_values
        .into_iter()
        .map(|pcr| {
            if pcr.algorithm != "sha256" {
                return Err(DstackError::Unsupported(
                    "a TPM PCR value outside the sha256 bank",
                ));
            }
            PcrValue::new(pcr.index, &pcr.value).map_err(|_| DstackError::Length {
                field: "TPM PCR value",
                len: pcr.value.len(),
                expected: 32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let event_log = quote
        .event_log
        .into_iter()
        .map(|event| {
            TpmEvent::new(event.pcr_index, &event.digest).map_err(|_| DstackError::Length {
                field: "TPM event digest",
                len: event.digest.len(),
                expected: 32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        tpm::TpmQuote {
            message: quote.message,
            signature: quote.signature,
            pcr_values,
            event_log,
        },
        quote.ak_cert,
    ))
}
