//! What kind of evidence some bytes are, told from the bytes themselves, and which of the
//! caller's companions and expectations that kind can use.

use super::{EvidenceError, Expectations};
use crate::dstack::{self, EventLog, TdxEvidence, VmConfig};

/// The evidence and what travels with it. Only `evidence` is required; the rest depends on the format.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvidenceInput<'a> {
    /// A Nitro COSE document, a raw TDX quote, a dstack VersionedAttestation (V0 SCALE or V1
    /// msgpack), a dstack quote report JSON (`{quote, event_log, report_data?, vm_config?}`), or
    /// a dstack RA-TLS certificate (PEM or DER), already decoded from base64/hex.
    pub evidence: &'a [u8],
    /// dstack event-log JSON, for a raw TDX quote.
    pub event_log: Option<&'a [u8]>,
    /// Intel collateral in the QuoteCollateralV3 JSON shape, for TDX.
    pub collateral: Option<&'a [u8]>,
    /// dstack vm_config JSON. For a raw TDX quote, its vm_config; for dstack evidence that embeds
    /// one, it replaces the embedded one when non-empty (as dstack's KMS resolves it).
    pub vm_config: Option<&'a [u8]>,
    /// The exact app-compose.json bytes whose sha256 must be the attested compose-hash.
    pub app_compose: Option<&'a [u8]>,
}

/// The evidence, split by what verifies it, and the RA-TLS certificate key it came with.
pub(super) struct Detected<'a> {
    pub(super) parsed: Parsed<'a>,
    /// The SubjectPublicKeyInfo (DER) of the RA-TLS certificate the evidence was read from; its
    /// binding to the attestation's declared report_data is already checked.
    pub(super) certificate_key: Option<Vec<u8>>,
}

impl<'a> Detected<'a> {
    /// Tells the format from the first bytes and parses what it carries (no signature is checked).
    pub(super) fn from_input(input: &EvidenceInput<'a>) -> Result<Detected<'a>, EvidenceError> {
        if is_certificate(input.evidence) {
            let ratls = dstack::ratls::from_certificate(input.evidence)?;
            return Ok(Detected {
                parsed: Parsed::from_dstack(ratls.evidence, input)?,
                certificate_key: Some(ratls.public_key),
            });
        }
        Ok(Detected {
            parsed: Parsed::from_input(input)?,
            certificate_key: None,
        })
    }
}

/// The evidence, split by what verifies it.
pub(super) enum Parsed<'a> {
    Nitro(&'a [u8]),
    DstackNitro(dstack::NitroEvidence),
    DstackGcp(Box<dstack::GcpEvidence>),
    Tdx {
        quote: Vec<u8>,
        /// Absent for a bare quote given without an event log.
        dstack: Option<TdxEvidence>,
    },
}

impl<'a> Parsed<'a> {
    /// Tells the format from the first bytes and parses what it carries (no signature is checked).
    pub(super) fn from_input(input: &EvidenceInput<'a>) -> Result<Parsed<'a>, EvidenceError> {
        let evidence = input.evidence;
        match evidence.first() {
            None => Err(EvidenceError::UnknownFormat("empty input")),
            // A CBOR array of 4 (untagged COSE_Sign1), or tag 18 in front of it.
            Some(0x84) | Some(0xd2) => Ok(Parsed::Nitro(evidence)),
            _ if is_tdx_quote(evidence) => {
                let dstack = match input.event_log {
                    None => None,
                    Some(log) => Some(TdxEvidence {
                        quote: evidence.to_vec(),
                        event_log: EventLog::from_json(utf8(log, "event log")?)?,
                        report_data: None,
                        vm_config: requested_vm_config(input, None)?,
                    }),
                };
                Ok(Parsed::Tdx {
                    quote: evidence.to_vec(),
                    dstack,
                })
            }
            _ => Parsed::from_dstack(dstack::Evidence::parse(evidence)?, input),
        }
    }

    /// dstack evidence, with the request's vm_config in place of the embedded one when given.
    fn from_dstack(
        evidence: dstack::Evidence,
        input: &EvidenceInput<'_>,
    ) -> Result<Parsed<'a>, EvidenceError> {
        Ok(match evidence {
            dstack::Evidence::Nitro(mut nitro) => {
                nitro.vm_config = requested_vm_config(input, nitro.vm_config.take())?;
                Parsed::DstackNitro(nitro)
            }
            dstack::Evidence::Tdx(mut tdx) => {
                tdx.vm_config = requested_vm_config(input, tdx.vm_config.take())?;
                Parsed::Tdx {
                    quote: tdx.quote.clone(),
                    dstack: Some(tdx),
                }
            }
            dstack::Evidence::GcpTdx(mut gcp) => {
                gcp.tdx.vm_config = requested_vm_config(input, gcp.tdx.vm_config.take())?;
                Parsed::DstackGcp(Box::new(gcp))
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Parsed::Nitro(_) => "a Nitro document",
            Parsed::DstackNitro(_) => "a dstack Nitro attestation",
            Parsed::DstackGcp(_) => "a dstack GCP TDX attestation",
            Parsed::Tdx { dstack: None, .. } => "a TDX quote without an event log",
            Parsed::Tdx {
                dstack: Some(_), ..
            } => "a TDX quote",
        }
    }

    /// Refuses inputs and expectations that this evidence has no way to check or use.
    pub(super) fn check_applicable(
        &self,
        input: &EvidenceInput<'_>,
        expect: &Expectations,
    ) -> Result<(), EvidenceError> {
        let raw_quote = matches!(self, Parsed::Tdx { .. }) && is_tdx_quote(input.evidence);
        let nitro = matches!(self, Parsed::Nitro(_) | Parsed::DstackNitro(_));
        let has_dstack = !matches!(self, Parsed::Nitro(_) | Parsed::Tdx { dstack: None, .. });
        let rules: [(&'static str, bool, bool); 8] = [
            ("collateral", input.collateral.is_some(), !nitro),
            ("an event log", input.event_log.is_some(), raw_quote),
            ("a vm_config", input.vm_config.is_some(), has_dstack),
            (
                "an app-compose binding",
                input.app_compose.is_some(),
                has_dstack,
            ),
            ("a nonce binding", expect.nonce.is_some(), nitro),
            ("a user_data binding", expect.user_data.is_some(), nitro),
            ("a public_key binding", expect.public_key.is_some(), nitro),
            (
                "a maximum document age",
                expect.max_age_secs.is_some(),
                nitro,
            ),
        ];
        match rules.iter().find(|(_, given, applies)| *given && !*applies) {
            Some((what, _, _)) => Err(EvidenceError::Inapplicable {
                what,
                evidence: self.name(),
            }),
            None => Ok(()),
        }
    }
}

/// A TDX quote starts with version 4 or 5 (u16 LE), then attestation key type and TEE type 0x81.
fn is_tdx_quote(bytes: &[u8]) -> bool {
    matches!(bytes.get(..2), Some([4 | 5, 0])) && bytes.get(4..8) == Some(&[0x81, 0, 0, 0])
}

/// An X.509 certificate: PEM text, or DER (a SEQUENCE, 0x30, which no other format starts with).
fn is_certificate(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) || bytes.trim_ascii_start().starts_with(b"-----BEGIN")
}

/// dstack's vm_config resolution: the request's when non-empty, else `embedded`.
fn requested_vm_config(
    input: &EvidenceInput<'_>,
    embedded: Option<VmConfig>,
) -> Result<Option<VmConfig>, EvidenceError> {
    let request = input
        .vm_config
        .map(|config| utf8(config, "vm_config"))
        .transpose()?;
    Ok(VmConfig::resolve(request, embedded)?)
}

fn utf8<'b>(bytes: &'b [u8], what: &'static str) -> Result<&'b str, EvidenceError> {
    std::str::from_utf8(bytes).map_err(|_| EvidenceError::NotUtf8(what))
}
