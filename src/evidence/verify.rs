//! The verification pipeline: each detected format verified with its platform's rules at `now`,
//! the caller's bindings checked, dstack's identity rebuilt, into one [`Verified`]; and the
//! [`preview`] that reads the same formats without verifying them.

use super::detect::{Detected, EvidenceInput, Parsed};
use super::memo::ExactCache;
use super::report::{
    dstack_claims, nitro_claims, tdx_registers, GcpClaims, OsImageClaims, Report, TdxClaims,
    TpmClaims,
};
use super::verified::{
    Attestation, AttestedDstack, AttestedTdx, AttestedTpm, Platform, Preview, Verified,
};
use super::EvidenceError;
use crate::cache::{CacheCounts, Window};
use crate::dstack::gcp::{self, GcpError};
use crate::dstack::gcp_ak::{DigestedBundle, GcpAkVerifier, GcpCaBundle};
use crate::dstack::os_image::preview_tdx_os_image;
use crate::dstack::{
    self, nitro_identity, tdx_identity, tdx_identity_with_policy, DstackError, DstackIdentity,
    MrMode, NitroEnclave, OsImagePolicy, TdImageRegisters, TdRegisters, TdxTcb,
};
use crate::encoding::to_0x_hex;
use crate::nitro::{self, NitroVerifier};
use crate::tdx::{Collateral, PckInfo, Quote, TdxError, TdxPolicy, TdxVerifier, VerifiedQuote};
use crate::tpm;
use std::sync::Arc;

/// Everything a caller may expect of the evidence besides its signatures.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// Expected Nitro `nonce`, compared byte for byte; an expectation TDX cannot check is refused
    /// as `invalid_argument`.
    pub nonce: Option<Vec<u8>>,
    /// Expected Nitro `user_data`, compared byte for byte.
    pub user_data: Option<Vec<u8>>,
    /// Expected Nitro `public_key`, compared byte for byte.
    pub public_key: Option<Vec<u8>>,
    /// Expected report data (TDX REPORTDATA; for Nitro, the user_data dstack binds), right-padded
    /// with zeros to 64 bytes.
    pub report_data: Option<Vec<u8>>,
    /// Oldest acceptable Nitro document, in seconds before `now` (its signed timestamp).
    pub max_age_secs: Option<u64>,
    /// Accept debug-mode enclaves and debug TDs. Never on by default.
    pub allow_debug: bool,
    /// Whether TDX-lite OS images are bound to the hardware; `None` takes the verifier's policy
    /// ([`EvidenceVerifier::with_os_image_policy`]; on by default, as dstack's KMS does). Off, a
    /// lite attestation verifies but its os_image_hash stays the host's claim.
    pub os_image: Option<OsImagePolicy>,
}

/// Parsed collateral JSON kept, by its exact bytes: one set per FMSPC and PCS update, inline or
/// fetched.
const COLLATERAL_JSON_ENTRIES: usize = 64;
/// Their byte budget (a real set is 16-20 KB).
const COLLATERAL_JSON_BYTES: usize = 16 << 20;
/// What one cached [`Verified`] counts for in the result cache's byte budget, besides its inputs.
const RESULT_WEIGHT: usize = 4 << 10;

/// Verifiers for every platform, sharing their caches across calls (cheap to clone).
#[derive(Clone)]
pub struct EvidenceVerifier {
    nitro: NitroVerifier,
    tdx: TdxVerifier,
    gcp: GcpAkVerifier,
    gcp_ca: Arc<DigestedBundle>,
    os_image: OsImagePolicy,
    /// `Collateral::from_json` of collateral bytes seen before (the parse is pure).
    collaterals: ExactCache<Arc<Collateral>>,
    /// Verified results by every input ([`Self::with_result_cache`]); `None`: off.
    results: Option<ExactCache<Arc<CachedResult>>>,
}

/// A verification that succeeded at `window.from`, usable until the earliest expiry of what it
/// relied on.
struct CachedResult {
    verified: Verified,
    window: Window,
}

impl Default for EvidenceVerifier {
    /// Pinned to the built-in AWS Nitro Enclaves Root G1, Intel SGX Root CA and Google EK/AK CA
    /// Root (with no GCP intermediates: see [`Self::with_gcp`]).
    fn default() -> Self {
        EvidenceVerifier::new(NitroVerifier::new(), TdxVerifier::new())
    }
}

impl EvidenceVerifier {
    /// Verifiers with the given trust roots (e.g. pinned by the service's `--nitro-root` and
    /// `--intel-root`); `default()` pins the built-in ones. GCP is pinned to Google's root with
    /// an empty CA bundle until [`Self::with_gcp`].
    pub fn new(nitro: NitroVerifier, tdx: TdxVerifier) -> Self {
        EvidenceVerifier {
            nitro,
            tdx,
            gcp: GcpAkVerifier::new(),
            gcp_ca: Arc::new(DigestedBundle::new(GcpCaBundle::default())),
            os_image: OsImagePolicy::default(),
            collaterals: ExactCache::new(COLLATERAL_JSON_ENTRIES, COLLATERAL_JSON_BYTES),
            results: None,
        }
    }

    /// This verifier answering byte-identical evidence, companions and expectations from a cache
    /// of successful results: at most `max_entries` of them, weighing at most `max_bytes` (their
    /// inputs plus 4 KiB each); `0` for either turns it off. Off by default; the service turns it
    /// on (`--result-cache-entries`), since a KMS sees the same RA-TLS certificate on every key
    /// request of a CVM.
    ///
    /// A result is found only by the exact bytes of every input (evidence, event log, collateral,
    /// vm_config, app-compose) and every expectation (nonce, user_data, public_key, report_data,
    /// maximum age, debug, the effective OS-image policy): one differing byte is a miss. A hit is
    /// used only while `now` lies between the instant it was verified at and the earliest expiry
    /// of everything it relied on (certificates, CRLs, TCB Info, QE Identity, a Nitro document's
    /// maximum age); outside that window the evidence is verified in full again, which reports the
    /// precise failure (e.g. `collateral_expired`). Only the signature, chain and parsing work is
    /// skipped; failures are never cached. GCP attestations are always verified in full.
    ///
    /// The cache belongs to this configuration: [`Self::with_gcp`] and
    /// [`Self::with_os_image_policy`] start an empty one. Clones share it.
    pub fn with_result_cache(mut self, max_entries: usize, max_bytes: usize) -> Self {
        self.results =
            (max_entries > 0 && max_bytes > 0).then(|| ExactCache::new(max_entries, max_bytes));
        self
    }

    /// After a configuration change: results verified under the old one are not reused.
    fn reconfigured(mut self) -> Self {
        self.results = self.results.as_ref().map(ExactCache::emptied);
        self
    }

    /// This verifier with GCP AK chains verified by `gcp` (a pinned root, `--gcp-root`) through
    /// the intermediates and CRLs of `bundle` (`--gcp-ca-bundle`, `--gcp-require-crl`).
    pub fn with_gcp(mut self, gcp: GcpAkVerifier, bundle: GcpCaBundle) -> Self {
        self.gcp = gcp;
        self.gcp_ca = Arc::new(DigestedBundle::new(bundle));
        self.reconfigured()
    }

    /// The GCP AK chain verifier and the CA bundle it is given (`--gcp-ca-bundle`): what the
    /// service asks which intermediates and CRLs a chain lacks.
    pub fn gcp_ak(&self) -> (&GcpAkVerifier, &GcpCaBundle) {
        (&self.gcp, self.gcp_ca.bundle())
    }

    /// This verifier, sharing every cache, with `bundle` for GCP AK chains instead (the
    /// configured bundle completed with fetched intermediates and CRLs).
    pub fn with_gcp_bundle(&self, bundle: GcpCaBundle) -> EvidenceVerifier {
        EvidenceVerifier {
            gcp_ca: Arc::new(DigestedBundle::new(bundle)),
            ..self.clone()
        }
    }

    /// The OS-image policy used when the expectations name none (e.g. the service's
    /// `--allow-tdx-lite`); the default binds TDX-lite images.
    pub fn with_os_image_policy(mut self, policy: OsImagePolicy) -> Self {
        self.os_image = policy;
        self.reconfigured()
    }

    /// Hits and misses of every verification cache, by a stable snake_case name: for Nitro the
    /// X.509 walker's `nitro_x509_certificates` and `nitro_x509_links`; for TDX its own walker's
    /// `tdx_x509_certificates` and `tdx_x509_links`, then `tdx_collateral`, `tdx_pck_crl` and
    /// `tdx_qe`; for GCP's AK chains `gcp_x509_certificates` and `gcp_x509_links`; then
    /// `tdx_collateral_json` (collateral JSON parsed before) and `evidence_results` (the result
    /// cache, zero while it is off). Clones of this verifier count into the same numbers.
    pub fn cache_stats(&self) -> Vec<(&'static str, CacheCounts)> {
        let nitro = self.nitro.cache_counts();
        let tdx = self.tdx.cache_counts();
        let gcp = self.gcp.cache_counts();
        vec![
            ("nitro_x509_certificates", nitro.certificates),
            ("nitro_x509_links", nitro.links),
            ("tdx_x509_certificates", tdx.chains.certificates),
            ("tdx_x509_links", tdx.chains.links),
            ("tdx_collateral", tdx.collateral),
            ("tdx_pck_crl", tdx.pck_crl),
            ("tdx_qe", tdx.qe),
            ("gcp_x509_certificates", gcp.certificates),
            ("gcp_x509_links", gcp.links),
            ("tdx_collateral_json", self.collaterals.counts()),
            (
                "evidence_results",
                self.results
                    .as_ref()
                    .map_or_else(CacheCounts::default, ExactCache::counts),
            ),
        ]
    }

    /// Verifies `input` at `now` against `expect` (from the result cache, when it is on and
    /// holds this exact input valid at `now`: [`Self::with_result_cache`]).
    pub fn verify(
        &self,
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<Verified, EvidenceError> {
        let Some(results) = &self.results else {
            return self
                .verify_in_full(input, now, expect)
                .map(|(verified, _)| verified);
        };
        let settings = self.settings(expect);
        let key = result_key(input, expect, &settings);
        if let Some(hit) = results.get(&key, |cached| cached.window.contains(now)) {
            return Ok(hit.verified.clone());
        }
        let (verified, valid_until) = self.verify_in_full(input, now, expect)?;
        if let Some(until) = valid_until {
            let cached = CachedResult {
                verified: verified.clone(),
                window: Window { from: now, until },
            };
            results.insert(&key, Arc::new(cached), RESULT_WEIGHT);
        }
        Ok(verified)
    }

    /// Every check, and the earliest expiry of what the result relied on (`None`: not cacheable).
    pub(super) fn verify_in_full(
        &self,
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<(Verified, Option<u64>), EvidenceError> {
        let Detected {
            parsed,
            certificate_key,
        } = Detected::from_input(input)?;
        parsed.check_applicable(input, expect)?;
        let (mut verified, valid_until) = self.verify_parsed(parsed, input, now, expect)?;
        verified.certificate_key = certificate_key;
        Ok((verified, valid_until))
    }

    /// The expectations that are not byte fields, and the verifier's OS-image policy when they
    /// name none, as key bytes: `max_age_secs` (tag and u64 LE), `allow_debug`, `allow_lite`.
    fn settings(&self, expect: &Expectations) -> [u8; 11] {
        let OsImagePolicy { allow_lite } = expect.os_image.unwrap_or(self.os_image);
        let mut settings = [0u8; 11];
        if let Some(max_age) = expect.max_age_secs {
            settings[0] = 1;
            settings[1..9].copy_from_slice(&max_age.to_le_bytes());
        }
        settings[9] = u8::from(expect.allow_debug);
        settings[10] = u8::from(allow_lite);
        settings
    }

    fn verify_parsed(
        &self,
        parsed: Parsed<'_>,
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<(Verified, Option<u64>), EvidenceError> {
        match parsed {
            Parsed::Nitro(document) => {
                let verified = self
                    .nitro
                    .verify(document, now, &nitro_expectations(expect))?;
                if let Some(report_data) = &expect.report_data {
                    let user_data = verified.document.user_data.as_deref().unwrap_or_default();
                    dstack::check_report_data(user_data, report_data)?;
                }
                let valid_until = nitro_valid_until(&verified, expect);
                let verified = Verified {
                    attestation: Attestation::Nitro(verified.document.into()),
                    os_image_hash: Some(verified.os_image_hash),
                    report_data: None,
                    dstack: None,
                    certificate_key: None,
                };
                Ok((verified, Some(valid_until)))
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
                let valid_until = nitro_valid_until(&verified, expect);
                let verified = Verified {
                    attestation: Attestation::Nitro(verified.document.into()),
                    os_image_hash: Some(verified.os_image_hash),
                    report_data: Some(evidence.report_data),
                    dstack: Some(identity.into()),
                    certificate_key: None,
                };
                Ok((verified, Some(valid_until)))
            }
            Parsed::Tdx { quote, dstack } => {
                let (verified, registers, tcb) =
                    self.verify_tdx_quote(&quote, input, now, expect)?;
                let mut os_image_hash = None;
                let identity = match dstack {
                    None => None,
                    Some(evidence) => {
                        let identity = tdx_identity_with_policy(
                            &registers,
                            &evidence,
                            tcb,
                            MrMode::Runtime,
                            expect.os_image.unwrap_or(self.os_image),
                        )?;
                        check_app_compose(&identity, input.app_compose)?;
                        os_image_hash = evidence.vm_config.and_then(|config| config.os_image_hash);
                        Some(identity)
                    }
                };
                let report_data = verified.quote.body.report_data;
                let valid_until = verified.valid_until;
                let verified = Verified {
                    attestation: Attestation::Tdx(attested_tdx(verified)),
                    os_image_hash,
                    report_data: Some(report_data),
                    dstack: identity.map(AttestedDstack::from),
                    certificate_key: None,
                };
                Ok((verified, Some(valid_until)))
            }
            Parsed::DstackGcp(evidence) => {
                let (verified, registers, tcb) =
                    self.verify_tdx_quote(&evidence.tdx.quote, input, now, expect)?;
                let ak = self
                    .gcp
                    .verify_in(&evidence.ak_cert, &self.gcp_ca, now)
                    .map_err(GcpError::from)?;
                let tpm_quote = tpm::verify_quote(
                    &evidence.tpm_quote,
                    &ak.key,
                    &gcp::qualified_data(&evidence.tdx.quote),
                )
                .map_err(GcpError::from)?;
                let (identity, os_image) =
                    gcp::gcp_identity(&registers, &evidence, &tpm_quote, tcb, MrMode::Runtime)?;
                check_app_compose(&identity, input.app_compose)?;
                let os_image_hash = evidence
                    .tdx
                    .vm_config
                    .as_ref()
                    .and_then(|config| config.os_image_hash);
                let tpm = AttestedTpm {
                    pcrs: tpm_quote
                        .pcrs
                        .iter()
                        .map(|pcr| (pcr.index, pcr.value))
                        .collect(),
                    ak_subject: ak.subject,
                    signature_algorithm: tpm_quote.signature_scheme.as_str(),
                    os_image_variant: match os_image {
                        gcp::GcpOsImage::Bound { .. } => Some("gcp"),
                        gcp::GcpOsImage::Unbound => None,
                    },
                };
                let report_data = verified.quote.body.report_data;
                let verified = Verified {
                    attestation: Attestation::GcpTdx(attested_tdx(verified), tpm),
                    certificate_key: None,
                    os_image_hash,
                    report_data: Some(report_data),
                    dstack: Some(identity.into()),
                };
                // The AK chain's and CRLs' windows are not reported: never cached.
                Ok((verified, None))
            }
        }
    }

    /// A TDX quote verified against the input's collateral at `now`, with the caller's
    /// report_data expectation: what a `tdx` and a `gcp-tdx` attestation share.
    fn verify_tdx_quote(
        &self,
        quote: &[u8],
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<(VerifiedQuote, TdRegisters, TdxTcb), EvidenceError> {
        let collateral = input.collateral.ok_or_else(|| {
            TdxError::CollateralMissing(
                "a TDX quote is verified against Intel collateral (QuoteCollateralV3 JSON)".into(),
            )
        })?;
        let collateral = self.parsed_collateral(collateral)?;
        let policy = TdxPolicy {
            allow_debug: expect.allow_debug,
        };
        let verified = self.tdx.verify(quote, &collateral, now, &policy)?;
        let registers = TdRegisters::from(&verified.quote.body);
        if let Some(report_data) = &expect.report_data {
            dstack::check_report_data(&registers.report_data, report_data)?;
        }
        let tcb = TdxTcb {
            ppid: verified.ppid.clone(),
            tcb_status: verified.tcb_status.as_str().to_owned(),
            advisory_ids: verified.advisory_ids.clone(),
        };
        Ok((verified, registers, tcb))
    }

    /// `Collateral::from_json(json)`, parsed once per distinct bytes. Only what parsed is kept;
    /// what it parsed to is verified on every use.
    fn parsed_collateral(&self, json: &[u8]) -> Result<Arc<Collateral>, TdxError> {
        let key = [Some(json)];
        if let Some(parsed) = self.collaterals.get(&key, |_| true) {
            return Ok(parsed);
        }
        let parsed = Arc::new(Collateral::from_json(json)?);
        self.collaterals
            .insert(&key, Arc::clone(&parsed), json.len());
        Ok(parsed)
    }
}

/// The result cache's key: every input and expectation, each absent or present. Destructured in
/// full, so that a field added to either is a compile error here until it is keyed.
fn result_key<'a>(
    input: &EvidenceInput<'a>,
    expect: &'a Expectations,
    settings: &'a [u8; 11],
) -> [Option<&'a [u8]>; 10] {
    let EvidenceInput {
        evidence,
        event_log,
        collateral,
        vm_config,
        app_compose,
    } = *input;
    let Expectations {
        nonce,
        user_data,
        public_key,
        report_data,
        // In `settings`, with the OS-image policy they resolve to.
        max_age_secs: _,
        allow_debug: _,
        os_image: _,
    } = expect;
    [
        Some(evidence),
        event_log,
        collateral,
        vm_config,
        app_compose,
        nonce.as_deref(),
        user_data.as_deref(),
        public_key.as_deref(),
        report_data.as_deref(),
        Some(settings),
    ]
}

/// When a verified Nitro document stops verifying: its chain's earliest notAfter, or the
/// caller's maximum age of its signed timestamp if that ends first (`now_ms - timestamp_ms <=
/// max_age_ms`, in whole seconds of `now`).
fn nitro_valid_until(verified: &nitro::VerifiedDocument, expect: &Expectations) -> u64 {
    let fresh_until = expect.max_age_secs.map_or(u64::MAX, |max_age| {
        verified
            .document
            .timestamp_ms
            .saturating_add(max_age.saturating_mul(1000))
            / 1000
    });
    verified.valid_until.min(fresh_until)
}

/// What the report keeps of a verified TDX quote.
fn attested_tdx(verified: VerifiedQuote) -> AttestedTdx {
    let body = &verified.quote.body;
    AttestedTdx {
        quote_version: verified.quote.version(),
        tcb_status: verified.tcb_status,
        advisory_ids: verified.advisory_ids,
        ppid: verified.ppid,
        mr_td: body.mr_td,
        rtmrs: body.rtmr,
    }
}

/// Parses `input` and reports what it claims, without checking any signature or collateral.
/// An event log is still replayed against the quote's registers: a preview of an inconsistent
/// log is an error, not a guess.
pub fn preview(input: &EvidenceInput<'_>) -> Result<Preview, EvidenceError> {
    let Detected {
        parsed,
        certificate_key,
    } = Detected::from_input(input)?;
    let mut report = match parsed {
        Parsed::Nitro(document) => nitro_preview(nitro::parse_document(document)?, None, None),
        Parsed::DstackNitro(evidence) => {
            let document = nitro::parse_document(&evidence.document)?;
            let identity = nitro_identity(&NitroEnclave::from(&document), &evidence)?;
            nitro_preview(document, Some(&evidence.report_data), Some(identity))
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
            let (os_image_hash, identity, os_image) = match dstack {
                None => (None, None, None),
                Some(evidence) => (
                    evidence.vm_config.as_ref().and_then(|c| c.os_image_hash),
                    Some(preview_tdx_identity(&registers, &evidence, tcb)?),
                    Some(OsImageClaims::from(&preview_tdx_os_image(
                        evidence.vm_config.as_ref(),
                        &evidence.event_log,
                        &TdImageRegisters::from(&registers),
                    ))),
                ),
            };
            let body = &quote.body;
            Report {
                verified: false,
                platform: Platform::Tdx,
                os_image_hash: os_image_hash.map(|hash| to_0x_hex(&hash)),
                report_data: Some(to_0x_hex(&body.report_data)),
                nitro: None,
                tdx: Some(TdxClaims {
                    ppid: ppid.as_deref().map(to_0x_hex),
                    ..tdx_registers(quote.version(), &body.mr_td, &body.rtmr)
                }),
                gcp: None,
                dstack: identity.map(|identity| dstack_claims(&identity.into())),
                ratls_public_key: None,
                os_image,
            }
        }
        Parsed::DstackGcp(evidence) => gcp_preview(&evidence)?,
    };
    report.ratls_public_key = certificate_key.as_deref().map(to_0x_hex);
    Ok(Preview { report })
}

/// The TDX quote `input` carries (a raw quote, or the one inside dstack evidence), so that an
/// edge can fetch the collateral it needs; `None` for Nitro evidence. Nothing is verified.
pub fn tdx_quote(input: &EvidenceInput<'_>) -> Result<Option<Vec<u8>>, EvidenceError> {
    Ok(match Parsed::from_input(input)? {
        Parsed::Tdx { quote, .. } => Some(quote),
        _ => None,
    })
}

/// The identity a preview shows. An OS image that does not compute is not fatal here: the
/// identity is then shown with the image unbound, and the `os_image` section says why.
fn preview_tdx_identity(
    registers: &TdRegisters,
    evidence: &dstack::TdxEvidence,
    tcb: TdxTcb,
) -> Result<DstackIdentity, DstackError> {
    match tdx_identity(registers, evidence, tcb.clone(), MrMode::Runtime) {
        Err(DstackError::OsImageMismatch { .. }) => tdx_identity_with_policy(
            registers,
            evidence,
            tcb,
            MrMode::Runtime,
            OsImagePolicy { allow_lite: false },
        ),
        identity => identity,
    }
}

/// The AK certificate of a GCP TDX attestation, unverified (for the service to find the
/// intermediates and CRLs its chain needs); `None` for every other kind of evidence.
pub fn gcp_ak_certificate(input: &EvidenceInput<'_>) -> Result<Option<Vec<u8>>, EvidenceError> {
    Ok(match Parsed::from_input(input)? {
        Parsed::DstackGcp(evidence) => Some(evidence.ak_cert),
        _ => None,
    })
}

/// The preview of a Nitro document, and of the dstack identity around it.
fn nitro_preview(
    document: nitro::AttestationDocument,
    report_data: Option<&[u8; 64]>,
    identity: Option<DstackIdentity>,
) -> Report {
    Report {
        verified: false,
        platform: Platform::Nitro,
        os_image_hash: document.os_image_hash().ok().map(|hash| to_0x_hex(&hash)),
        report_data: report_data.map(|data| to_0x_hex(data)),
        nitro: Some(nitro_claims(&document.into())),
        tdx: None,
        gcp: None,
        dstack: identity.map(|identity| dstack_claims(&identity.into())),
        ratls_public_key: None,
        os_image: None,
    }
}

/// The preview of a GCP attestation: the TDX registers and the PCRs the vTPM quote claims. Its
/// dstack identity needs the verified quote (mr_aggregated is built from its PCRs), so a preview
/// has none.
fn gcp_preview(evidence: &dstack::GcpEvidence) -> Result<Report, EvidenceError> {
    let quote = Quote::parse(&evidence.tdx.quote)?;
    let body = &quote.body;
    let signature =
        tpm::TpmSignature::parse(&evidence.tpm_quote.signature).map_err(GcpError::from)?;
    let ak_subject = x509_subject(&evidence.ak_cert).unwrap_or_default();
    Ok(Report {
        verified: false,
        platform: Platform::GcpTdx,
        os_image_hash: evidence
            .tdx
            .vm_config
            .as_ref()
            .and_then(|config| config.os_image_hash)
            .map(|hash| to_0x_hex(&hash)),
        report_data: Some(to_0x_hex(&body.report_data)),
        nitro: None,
        tdx: Some(tdx_registers(quote.version(), &body.mr_td, &body.rtmr)),
        gcp: Some(GcpClaims {
            tpm: TpmClaims {
                pcrs: evidence
                    .tpm_quote
                    .pcr_values
                    .iter()
                    .map(|pcr| (pcr.index, to_0x_hex(&pcr.value)))
                    .collect(),
                ak_subject,
                signature_algorithm: signature.scheme().as_str().to_owned(),
            },
        }),
        dstack: None,
        ratls_public_key: None,
        os_image: None,
    })
}

/// The subject of a DER certificate, as text (for a preview: nothing is verified).
fn x509_subject(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .ok()
        .map(|(_, cert)| cert.subject().to_string())
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::evidence::Unauthorizable;
    use crate::tdx::TcbStatus;
    use std::path::Path;

    /// A file of the committed generated fixtures (`fixtures/nitro/`, `fixtures/tdx/`).
    pub(in crate::evidence) fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(path),
        )
        .unwrap()
    }

    pub(in crate::evidence) fn fixture_verifier() -> EvidenceVerifier {
        EvidenceVerifier::new(
            NitroVerifier::with_root_der(&fixture("nitro/root.der")),
            TdxVerifier::with_root_der(&fixture("tdx/root_ca.der")),
        )
    }

    fn counts(hits: u64, misses: u64) -> CacheCounts {
        CacheCounts { hits, misses }
    }

    #[test]
    fn cache_stats_name_every_cache_and_count_cold_then_warm() {
        let verifier = fixture_verifier();
        assert_eq!(verifier.cache_stats().len(), 11);
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
                ("gcp_x509_certificates", counts(0, 0)),
                ("gcp_x509_links", counts(0, 0)),
                ("tdx_collateral_json", counts(1, 1)),
                ("evidence_results", counts(0, 0)),
            ]
        );
    }

    /// The typed result carries the bytes its report spells, and a bare document or quote has
    /// no boot info to authorize.
    #[test]
    fn verified_values_are_the_bytes_the_report_spells() {
        let verifier = fixture_verifier();
        let document = fixture("nitro/valid.cbor");
        let nitro = verifier
            .verify(
                &EvidenceInput {
                    evidence: &document,
                    ..EvidenceInput::default()
                },
                1_750_000_060,
                &Expectations::default(),
            )
            .unwrap();
        let report = nitro.report();
        assert_eq!(nitro.platform(), Platform::Nitro);
        assert!(report.verified);
        assert_eq!(
            report.os_image_hash,
            nitro.os_image_hash().map(|hash| to_0x_hex(hash))
        );
        let claims = report.nitro.as_ref().unwrap();
        let attested = nitro.nitro().unwrap();
        assert_eq!(claims.pcrs[&0], to_0x_hex(&attested.pcrs[&0]));
        assert_eq!(claims.module_id, attested.module_id);
        assert!(nitro.tdx().is_none() && nitro.dstack().is_none());
        assert_eq!(nitro.report_data(), None);
        assert_eq!(
            serde_json::to_value(&nitro).unwrap(),
            serde_json::to_value(&report).unwrap()
        );
        assert_eq!(
            nitro.authorizable_boot_info(true),
            Err(Unauthorizable::NoBootInfo)
        );

        let quote = fixture("tdx/quote_v4.bin");
        let collateral = fixture("tdx/collateral.json");
        let tdx = verifier
            .verify(
                &EvidenceInput {
                    evidence: &quote,
                    collateral: Some(&collateral),
                    ..EvidenceInput::default()
                },
                1_750_000_000,
                &Expectations::default(),
            )
            .unwrap();
        let attested = tdx.tdx().unwrap();
        let claims = tdx.report().tdx.unwrap();
        assert_eq!(tdx.platform(), Platform::Tdx);
        assert_eq!(attested.tcb_status, TcbStatus::UpToDate);
        assert_eq!(claims.tcb_status.as_deref(), Some("UpToDate"));
        assert_eq!(claims.mr_td, to_0x_hex(&attested.mr_td));
        assert_eq!(claims.rtmr3, to_0x_hex(&attested.rtmrs[3]));
        assert_eq!(claims.ppid, Some(to_0x_hex(&attested.ppid)));
        assert_eq!(
            tdx.report().report_data,
            tdx.report_data().map(|data| to_0x_hex(data))
        );
        assert_eq!(tdx.os_image_hash(), None);
        assert_eq!(
            tdx.authorizable_boot_info(true),
            Err(Unauthorizable::NoBootInfo)
        );
    }

    #[test]
    fn the_tdx_quote_of_evidence_is_found_without_verifying() {
        let quote = fixture("tdx/quote_v4.bin");
        let input = |evidence: &[u8]| {
            tdx_quote(&EvidenceInput {
                evidence,
                ..EvidenceInput::default()
            })
        };
        assert_eq!(input(&quote).unwrap(), Some(quote.clone()));
        assert_eq!(input(&fixture("nitro/valid.cbor")).unwrap(), None);
        assert_eq!(input(b"").unwrap_err().kind().as_str(), "malformed");
    }

    /// A preview says what it read, marked unverified, with no TCB verdict.
    #[test]
    fn a_preview_is_unverified_and_has_no_tcb_verdict() {
        let quote = fixture("tdx/quote_v4.bin");
        let preview = preview(&EvidenceInput {
            evidence: &quote,
            ..EvidenceInput::default()
        })
        .unwrap();
        let report = preview.report();
        assert!(!report.verified);
        assert_eq!(report.platform, Platform::Tdx);
        let tdx = report.tdx.as_ref().unwrap();
        assert_eq!((tdx.tcb_status.as_ref(), tdx.advisory_ids.len()), (None, 0));
        assert!(
            tdx.ppid.is_some(),
            "claimed by the quote's own PCK certificate"
        );
        assert_eq!(
            serde_json::to_value(&preview).unwrap(),
            serde_json::to_value(report).unwrap()
        );
    }
}
