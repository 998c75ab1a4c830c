//! The end-to-end pipeline shared by the CLI and the service: detect what kind of evidence some
//! bytes are, verify it at `now` with the platform's rules, rebuild dstack's identity from it, and
//! report everything in one shape (the field names of the CLI's `--json` and of the gRPC response).
//!
//! Formats, detected from the bytes: a Nitro COSE_Sign1 document (tagged or not), a raw TDX quote
//! (with an optional dstack event log beside it), a dstack quote report JSON, and a dstack
//! VersionedAttestation (SCALE, or hex inside `{"attestation": …}`).

use crate::boot_info::BootInfo;
use crate::cache_stats::CacheCounts;
use crate::dstack::{
    self, nitro_identity, tdx_identity, DstackError, DstackIdentity, EventLog, MrMode,
    NitroEnclave, TdRegisters, TdxEvidence, TdxTcb, VmConfig,
};
use crate::encoding::to_0x_hex;
use crate::nitro::{self, AttestationDocument, NitroError, NitroVerifier};
use crate::tdx::{Collateral, PckInfo, Quote, TdxError, TdxPolicy, TdxVerifier};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// The evidence and what travels with it. Only `evidence` is required; the rest depends on the format.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvidenceInput<'a> {
    /// A Nitro COSE document, a raw TDX quote, a dstack VersionedAttestation, or a dstack quote
    /// report JSON (`{quote, event_log, report_data?, vm_config?}`), already decoded from base64/hex.
    pub evidence: &'a [u8],
    /// dstack event-log JSON, for a raw TDX quote.
    pub event_log: Option<&'a [u8]>,
    /// Intel collateral in the QuoteCollateralV3 JSON shape, for TDX.
    pub collateral: Option<&'a [u8]>,
    /// dstack vm_config JSON, for a raw TDX quote.
    pub vm_config: Option<&'a [u8]>,
    /// The exact app-compose.json bytes whose sha256 must be the attested compose-hash.
    pub app_compose: Option<&'a [u8]>,
}

/// Everything a caller may expect of the evidence besides its signatures.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub nonce: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    /// Expected report data (TDX REPORTDATA; for Nitro, the user_data dstack binds), right-padded
    /// with zeros to 64 bytes.
    pub report_data: Option<Vec<u8>>,
    /// Oldest acceptable Nitro document, in seconds before `now` (its signed timestamp).
    pub max_age_secs: Option<u64>,
    /// Accept debug-mode enclaves and debug TDs. Never on by default.
    pub allow_debug: bool,
}

/// Why evidence was rejected. `kind()` is the stable name printed by the CLI and the service.
#[derive(Debug, Error)]
pub enum EvidenceError {
    #[error("unrecognized evidence format: {0}")]
    UnknownFormat(&'static str),
    #[error("{0} is not valid UTF-8 JSON")]
    NotUtf8(&'static str),
    /// The caller asked for a check this kind of evidence cannot make: refusing is the only
    /// answer that does not silently skip it.
    #[error("{what} does not apply to {evidence}")]
    Inapplicable {
        what: &'static str,
        evidence: &'static str,
    },
    #[error(transparent)]
    Nitro(#[from] NitroError),
    #[error(transparent)]
    Tdx(#[from] TdxError),
    #[error(transparent)]
    Dstack(#[from] DstackError),
}

impl EvidenceError {
    pub fn kind(&self) -> &'static str {
        match self {
            EvidenceError::UnknownFormat(_) | EvidenceError::NotUtf8(_) => "malformed",
            EvidenceError::Inapplicable { .. } => "invalid_argument",
            EvidenceError::Nitro(e) => e.kind(),
            EvidenceError::Tdx(e) => e.kind(),
            EvidenceError::Dstack(e) => e.kind(),
        }
    }
}

/// The TEE that produced the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Nitro,
    Tdx,
}

/// What verification established (or, for a preview, what the evidence claims). Hex values are
/// `0x`-prefixed lowercase; absent values serialize as null; a section not applicable to the
/// platform is left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verified: bool,
    pub platform: Platform,
    /// Nitro: sha256(PCR0‖PCR1‖PCR2), measured. TDX: the vm_config claim, if any.
    pub os_image_hash: Option<String>,
    /// The 64 bytes the workload bound: TDX REPORTDATA, or dstack's report data for Nitro.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
    #[serde(flatten)]
    pub nitro: Option<NitroClaims>,
    #[serde(flatten)]
    pub tdx: Option<TdxClaims>,
    #[serde(flatten)]
    pub dstack: Option<DstackClaims>,
}

/// The fields of a Nitro attestation document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NitroClaims {
    pub module_id: String,
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u8, String>,
    pub user_data: Option<String>,
    pub nonce: Option<String>,
    pub public_key: Option<String>,
}

/// The registers and TCB verdict of a TDX quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxClaims {
    pub quote_version: u16,
    /// Null in a preview: only verification against collateral establishes it.
    pub tcb_status: Option<String>,
    pub advisory_ids: Vec<String>,
    pub ppid: Option<String>,
    pub mr_td: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
}

/// dstack's view of the workload: app identity and the boot info its KMS sends on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DstackClaims {
    pub app_id: String,
    pub compose_hash: String,
    pub instance_id: Option<String>,
    /// The key-provider event's payload, as text.
    pub key_provider: Option<String>,
    /// Whether os_image_hash is measured by the platform rather than claimed by the host.
    pub os_image_hash_bound: bool,
    pub mr_system: String,
    pub mr_aggregated: String,
    pub device_id: String,
    pub boot_info: BootInfo,
}

/// Why a verified report has no boot info the registry may be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Unauthorizable {
    #[error("the evidence carries no dstack boot info (app id, compose hash) to authorize")]
    NoBootInfo,
    /// dstack's KMS measures the OS image in a step of its own, which this crate does not
    /// perform: authorizing the host's claim would let a host name any registered image.
    #[error(
        "os_image_hash is the host's vm_config claim, not measured by the platform; it is \
         authorized only when the caller accepts the claim (the image was measured separately)"
    )]
    UnmeasuredOsImage,
}

impl Report {
    /// The boot info to ask the registry about. An os_image_hash that is only the host's claim
    /// is refused unless the caller vouches for it.
    pub fn authorizable_boot_info(
        &self,
        accept_os_image_claim: bool,
    ) -> Result<&BootInfo, Unauthorizable> {
        match &self.dstack {
            None => Err(Unauthorizable::NoBootInfo),
            Some(dstack) if !dstack.os_image_hash_bound && !accept_os_image_claim => {
                Err(Unauthorizable::UnmeasuredOsImage)
            }
            Some(dstack) => Ok(&dstack.boot_info),
        }
    }
}

/// Verifiers for every platform, sharing their caches across calls (cheap to clone).
#[derive(Clone)]
pub struct EvidenceVerifier {
    nitro: NitroVerifier,
    tdx: TdxVerifier,
}

impl Default for EvidenceVerifier {
    fn default() -> Self {
        EvidenceVerifier::new(NitroVerifier::new(), TdxVerifier::new())
    }
}

impl EvidenceVerifier {
    /// Verifiers with other trust roots (test PKIs); production uses `default()`.
    pub fn new(nitro: NitroVerifier, tdx: TdxVerifier) -> Self {
        EvidenceVerifier { nitro, tdx }
    }

    /// Hits and misses of every verification cache, by a stable snake_case name: for Nitro the
    /// X.509 walker's `nitro_x509_certificates` and `nitro_x509_links`; for TDX its own walker's
    /// `tdx_x509_certificates` and `tdx_x509_links`, then `tdx_collateral`, `tdx_pck_crl` and
    /// `tdx_qe`. Clones of this verifier count into the same numbers.
    pub fn cache_stats(&self) -> Vec<(&'static str, CacheCounts)> {
        let nitro = self.nitro.cache_counts();
        let tdx = self.tdx.cache_counts();
        vec![
            ("nitro_x509_certificates", nitro.certificates),
            ("nitro_x509_links", nitro.links),
            ("tdx_x509_certificates", tdx.chains.certificates),
            ("tdx_x509_links", tdx.chains.links),
            ("tdx_collateral", tdx.collateral),
            ("tdx_pck_crl", tdx.pck_crl),
            ("tdx_qe", tdx.qe),
        ]
    }

    /// Verifies `input` at `now` against `expect`.
    pub fn verify(
        &self,
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<Report, EvidenceError> {
        let parsed = Parsed::from_input(input)?;
        parsed.check_applicable(input, expect)?;
        match parsed {
            Parsed::Nitro(document) => {
                let verified = self
                    .nitro
                    .verify(document, now, &nitro_expectations(expect))?;
                if let Some(report_data) = &expect.report_data {
                    let user_data = verified.document.user_data.as_deref().unwrap_or_default();
                    dstack::check_report_data(user_data, report_data)?;
                }
                Ok(Report {
                    verified: true,
                    platform: Platform::Nitro,
                    os_image_hash: Some(to_0x_hex(&verified.os_image_hash)),
                    report_data: None,
                    nitro: Some(nitro_claims(&verified.document)),
                    tdx: None,
                    dstack: None,
                })
            }
            Parsed::DstackNitro(evidence) => {
                let verified =
                    self.nitro
                        .verify(&evidence.document, now, &nitro_expectations(expect))?;
                let identity = nitro_identity(&NitroEnclave::from(&verified.document), &evidence)?;
                if let Some(report_data) = &expect.report_data {
                    dstack::check_report_data(&evidence.report_data, report_data)?;
                }
                check_app_compose(&identity, input.app_compose)?;
                Ok(Report {
                    verified: true,
                    platform: Platform::Nitro,
                    os_image_hash: Some(to_0x_hex(&verified.os_image_hash)),
                    report_data: Some(to_0x_hex(&evidence.report_data)),
                    nitro: Some(nitro_claims(&verified.document)),
                    tdx: None,
                    dstack: Some(dstack_claims(&identity)),
                })
            }
            Parsed::Tdx { quote, dstack } => {
                let collateral = input.collateral.ok_or_else(|| {
                    TdxError::CollateralMissing(
                        "a TDX quote is verified against Intel collateral (QuoteCollateralV3 JSON)"
                            .into(),
                    )
                })?;
                let collateral = Collateral::from_json(collateral)?;
                let policy = TdxPolicy {
                    allow_debug: expect.allow_debug,
                };
                let verified = self.tdx.verify(&quote, &collateral, now, &policy)?;
                let registers = TdRegisters::from(&verified.quote.body);
                if let Some(report_data) = &expect.report_data {
                    dstack::check_report_data(&registers.report_data, report_data)?;
                }
                let tcb = TdxTcb {
                    ppid: verified.ppid.clone(),
                    tcb_status: verified.tcb_status.clone(),
                    advisory_ids: verified.advisory_ids.clone(),
                };
                let identity = dstack
                    .map(|evidence| {
                        tdx_identity(&registers, &evidence, tcb, MrMode::Runtime)
                            .map(|identity| (identity, evidence.vm_config))
                    })
                    .transpose()?;
                if let Some((identity, _)) = &identity {
                    check_app_compose(identity, input.app_compose)?;
                }
                Ok(tdx_report(
                    true,
                    &verified.quote,
                    Some(&verified.tcb_status),
                    &verified.advisory_ids,
                    Some(&verified.ppid),
                    identity,
                ))
            }
        }
    }
}

/// Parses `input` and reports what it claims, without checking any signature or collateral.
/// An event log is still replayed against the quote's registers: a preview of an inconsistent
/// log is an error, not a guess.
pub fn preview(input: &EvidenceInput<'_>) -> Result<Report, EvidenceError> {
    match Parsed::from_input(input)? {
        Parsed::Nitro(document) => {
            let document = nitro::parse_document(document)?;
            Ok(nitro_preview(&document, None))
        }
        Parsed::DstackNitro(evidence) => {
            let document = nitro::parse_document(&evidence.document)?;
            let identity = nitro_identity(&NitroEnclave::from(&document), &evidence)?;
            let mut report = nitro_preview(&document, Some(&identity));
            report.report_data = Some(to_0x_hex(&evidence.report_data));
            Ok(report)
        }
        Parsed::Tdx { quote, dstack } => {
            let quote = Quote::parse(&quote)?;
            let registers = TdRegisters::from(&quote.body);
            // The PPID the quote's own (unverified) PCK certificate claims, for the device id.
            let ppid = quote
                .pck_chain()
                .and_then(Result::ok)
                .and_then(|chain| {
                    chain
                        .first()
                        .and_then(|leaf| PckInfo::from_certificate(leaf).ok())
                })
                .map(|pck| pck.ppid);
            let tcb = TdxTcb {
                ppid: ppid.clone().unwrap_or_default(),
                ..TdxTcb::default()
            };
            let identity = dstack
                .map(|evidence| {
                    tdx_identity(&registers, &evidence, tcb, MrMode::Runtime)
                        .map(|identity| (identity, evidence.vm_config))
                })
                .transpose()?;
            Ok(tdx_report(
                false,
                &quote,
                None,
                &[],
                ppid.as_deref(),
                identity,
            ))
        }
    }
}

/// The evidence, split by what verifies it.
enum Parsed<'a> {
    Nitro(&'a [u8]),
    DstackNitro(dstack::NitroEvidence),
    Tdx {
        quote: Vec<u8>,
        /// Absent for a bare quote given without an event log.
        dstack: Option<TdxEvidence>,
    },
}

impl<'a> Parsed<'a> {
    fn name(&self) -> &'static str {
        match self {
            Parsed::Nitro(_) => "a Nitro document",
            Parsed::DstackNitro(_) => "a dstack Nitro attestation",
            Parsed::Tdx { dstack: None, .. } => "a TDX quote without an event log",
            Parsed::Tdx {
                dstack: Some(_), ..
            } => "a TDX quote",
        }
    }

    /// Refuses inputs and expectations that this evidence has no way to check or use.
    fn check_applicable(
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
            (
                "a vm_config",
                input.vm_config.is_some(),
                raw_quote && input.event_log.is_some(),
            ),
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

    fn from_input(input: &EvidenceInput<'a>) -> Result<Parsed<'a>, EvidenceError> {
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
                        vm_config: match input.vm_config {
                            Some(config) => VmConfig::from_json(utf8(config, "vm_config")?)?,
                            None => None,
                        },
                    }),
                };
                Ok(Parsed::Tdx {
                    quote: evidence.to_vec(),
                    dstack,
                })
            }
            _ => match dstack::Evidence::parse(evidence)? {
                dstack::Evidence::Nitro(nitro) => Ok(Parsed::DstackNitro(nitro)),
                dstack::Evidence::Tdx(tdx) => Ok(Parsed::Tdx {
                    quote: tdx.quote.clone(),
                    dstack: Some(tdx),
                }),
            },
        }
    }
}

/// A TDX quote starts with version 4 or 5 (u16 LE), then attestation key type and TEE type 0x81.
fn is_tdx_quote(bytes: &[u8]) -> bool {
    matches!(bytes.get(..2), Some([4 | 5, 0])) && bytes.get(4..8) == Some(&[0x81, 0, 0, 0])
}

fn utf8<'b>(bytes: &'b [u8], what: &'static str) -> Result<&'b str, EvidenceError> {
    std::str::from_utf8(bytes).map_err(|_| EvidenceError::NotUtf8(what))
}

fn nitro_expectations(expect: &Expectations) -> nitro::Expectations {
    nitro::Expectations {
        nonce: expect.nonce.clone(),
        user_data: expect.user_data.clone(),
        public_key: expect.public_key.clone(),
        max_age_secs: expect.max_age_secs,
        allow_debug: expect.allow_debug,
    }
}

fn check_app_compose(
    identity: &DstackIdentity,
    app_compose: Option<&[u8]>,
) -> Result<(), DstackError> {
    app_compose.map_or(Ok(()), |bytes| identity.app_info.check_app_compose(bytes))
}

fn nitro_claims(document: &AttestationDocument) -> NitroClaims {
    let optional = |value: &Option<Vec<u8>>| value.as_deref().map(to_0x_hex);
    NitroClaims {
        module_id: document.module_id.clone(),
        timestamp_ms: document.timestamp_ms,
        pcrs: document
            .pcrs
            .iter()
            .map(|(index, value)| (*index, to_0x_hex(value)))
            .collect(),
        user_data: optional(&document.user_data),
        nonce: optional(&document.nonce),
        public_key: optional(&document.public_key),
    }
}

fn nitro_preview(document: &AttestationDocument, identity: Option<&DstackIdentity>) -> Report {
    Report {
        verified: false,
        platform: Platform::Nitro,
        os_image_hash: document.os_image_hash().ok().map(|hash| to_0x_hex(&hash)),
        report_data: None,
        nitro: Some(nitro_claims(document)),
        tdx: None,
        dstack: identity.map(dstack_claims),
    }
}

fn dstack_claims(identity: &DstackIdentity) -> DstackClaims {
    let info = &identity.boot_info;
    let key_provider = &identity.app_info.key_provider_info;
    DstackClaims {
        app_id: to_0x_hex(&info.app_id),
        compose_hash: to_0x_hex(&info.compose_hash),
        instance_id: identity.app_info.instance_id.map(|id| to_0x_hex(&id)),
        key_provider: (!key_provider.is_empty())
            .then(|| String::from_utf8_lossy(key_provider).into_owned()),
        os_image_hash_bound: identity.os_image_hash_bound,
        mr_system: to_0x_hex(&info.mr_system),
        mr_aggregated: to_0x_hex(&info.mr_aggregated),
        device_id: to_0x_hex(&info.device_id),
        boot_info: info.clone(),
    }
}

fn tdx_report(
    verified: bool,
    quote: &Quote,
    tcb_status: Option<&str>,
    advisory_ids: &[String],
    ppid: Option<&[u8]>,
    identity: Option<(DstackIdentity, Option<VmConfig>)>,
) -> Report {
    let body = &quote.body;
    let os_image_hash = identity
        .as_ref()
        .and_then(|(_, config)| config.as_ref())
        .and_then(|config| config.os_image_hash)
        .map(|hash| to_0x_hex(&hash));
    Report {
        verified,
        platform: Platform::Tdx,
        os_image_hash,
        report_data: Some(to_0x_hex(&body.report_data)),
        nitro: None,
        tdx: Some(TdxClaims {
            quote_version: quote.version(),
            tcb_status: tcb_status.map(str::to_owned),
            advisory_ids: advisory_ids.to_vec(),
            ppid: ppid.map(to_0x_hex),
            mr_td: to_0x_hex(&body.mr_td),
            rtmr0: to_0x_hex(&body.rtmr[0]),
            rtmr1: to_0x_hex(&body.rtmr[1]),
            rtmr2: to_0x_hex(&body.rtmr[2]),
            rtmr3: to_0x_hex(&body.rtmr[3]),
        }),
        dstack: identity.map(|(identity, _)| dstack_claims(&identity)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A file of the committed generated fixtures (`fixtures/nitro/`, `fixtures/tdx/`).
    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(path),
        )
        .unwrap()
    }

    fn counts(hits: u64, misses: u64) -> CacheCounts {
        CacheCounts { hits, misses }
    }

    #[test]
    fn cache_stats_name_every_cache_and_count_cold_then_warm() {
        let verifier = EvidenceVerifier::new(
            NitroVerifier::with_root_der(&fixture("nitro/root.der")),
            TdxVerifier::with_root_der(&fixture("tdx/root_ca.der")),
        );
        assert_eq!(verifier.cache_stats().len(), 7);
        assert!(verifier
            .cache_stats()
            .iter()
            .all(|(_, counts)| *counts == CacheCounts::default()));

        // Nitro, cold then warm through a clone: a chain of 5 certificates and 4 links.
        let document = fixture("nitro/valid.cbor");
        let nitro = EvidenceInput {
            evidence: &document,
            ..EvidenceInput::default()
        };
        let nitro_now = 1_750_000_060;
        verifier
            .verify(&nitro, nitro_now, &Expectations::default())
            .unwrap();
        verifier
            .clone()
            .verify(&nitro, nitro_now, &Expectations::default())
            .unwrap();

        // TDX, cold then warm, on its own walker: cold walks 4 distinct certificates (10 lookups)
        // and 3 distinct links (5 lookups); warm looks up only the collateral and the QE.
        let quote = fixture("tdx/quote_v4.bin");
        let collateral = fixture("tdx/collateral.json");
        let tdx = EvidenceInput {
            evidence: &quote,
            collateral: Some(&collateral),
            ..EvidenceInput::default()
        };
        for _ in 0..2 {
            verifier
                .verify(&tdx, 1_750_000_000, &Expectations::default())
                .unwrap();
        }

        assert_eq!(
            verifier.cache_stats(),
            [
                ("nitro_x509_certificates", counts(5, 5)),
                ("nitro_x509_links", counts(4, 4)),
                ("tdx_x509_certificates", counts(6, 4)),
                ("tdx_x509_links", counts(2, 3)),
                ("tdx_collateral", counts(1, 1)),
                ("tdx_pck_crl", counts(0, 1)),
                ("tdx_qe", counts(1, 1)),
            ]
        );
    }
}
