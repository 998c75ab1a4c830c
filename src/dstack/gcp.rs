//! dstack on Google Cloud TDX (`DstackGcpTdx`): what dstack reads from a
//! verified vTPM quote beside the TDX quote. The TPM room ([`crate::tpm`]) has verified the quote
//! itself; here are the GCP rules on top of it:
//! - the quote binds the TD: `qualified_data = sha256(raw TDX quote)` ([`qualified_data`]);
//! - PCR14 holds dstack's runtime events, replayed with SHA-256 ([`RuntimePcr`]);
//! - the OS image is bound by PCR0 (Google's TDX firmware), `vm_config.gcp_measurement` and the
//!   UKI digest in PCR2's event log ([`verify_os_image`]; upstream dstack-verifier
//!   `verify_os_image_hash_for_gcp_tdx` and dstack-types `verify_measurement_material`);
//! - `mr_system = SHA256(os_image_hash ‖ mr_key_provider)` and
//!   `mr_aggregated = SHA256(PCR0 ‖ PCR2 ‖ PCR14′)` ([`GcpPcrs`]; `decode_mr_gcp_tpm_from_v1`).

use super::cbor_struct::read_document;
use super::event_log::{runtime_event_hash, RuntimeEventVersion};
use super::gcp_ak::GcpAkError;
use super::os_image::chain_material;
use super::vm_config::TdxMeasurementMaterial;
use super::{
    check_report_data, tdx_device_id, AppInfo, DstackError, DstackIdentity, GcpEvidence,
    IdentityField, MrMode, OsImageCheck, TdRegisters, TdxTcb, TeeVariant, BOOT_MR_DONE,
};
use crate::boot_info::BootInfo;
use crate::error::ErrorKind;
use crate::tpm::{TpmError, VerifiedTpmQuote};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// PCR0 of Google's TDX firmware: "GCE Virtual Firmware v2", NonHostInfo with technology 3
/// (TDX), separator. The only firmware dstack accepts.
pub const GCE_TDX_PCR0: [u8; 32] = [
    0x0c, 0xca, 0x9e, 0xc1, 0x61, 0xb0, 0x92, 0x88, 0x80, 0x2e, 0x5a, 0x11, 0x22, 0x55, 0xd2, 0x13,
    0x40, 0xed, 0x5b, 0x79, 0x7f, 0x5f, 0xe2, 0x9c, 0xec, 0xcc, 0xfd, 0x8f, 0x67, 0xb9, 0xf8, 0x02,
];
/// The PCRs a GCP guest quotes (tpm-attest's policy `sha256:0,2,14`).
pub const GCP_PCRS: [u32; 3] = [0, 2, 14];
/// The PCR that holds dstack's runtime events.
pub const RUNTIME_PCR: u32 = 14;
/// The checksum-file entry that names the measurement document.
pub const MEASUREMENT_FILE_NAME: &str = "measurement.gcp.cbor";
/// The only measurement document version upstream reads.
pub const MEASUREMENT_VERSION: u64 = 1;
/// Bound on the document before it is decoded (the real one is 53 bytes).
pub const MAX_MEASUREMENT_LEN: usize = 64 * 1024;
/// GCP's PCR2 events are separator, GPT, UKI, inner Linux: the UKI Authenticode digest is the
/// third ("Event 28").
const UKI_EVENT: usize = 2;

/// Why GCP evidence was rejected; `kind()` is its stable [`ErrorKind`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcpError {
    /// The quote does not cover a PCR dstack reads (0, 2 or 14); kind `malformed`.
    #[error("the TPM quote does not cover PCR{0}, which a GCP guest quotes")]
    MissingPcr(u32),
    /// PCR14 is not the replay of the runtime events; kind `event_log_mismatch`.
    #[error("PCR14 {quoted} is not the SHA-256 replay of the runtime events ({replayed})")]
    RuntimePcrMismatch {
        /// The quoted PCR14, hex.
        quoted: String,
        /// The replayed value, hex.
        replayed: String,
    },
    /// The OS image material does not bind (`os_image_mismatch`) or does not parse (`malformed`).
    #[error(transparent)]
    Image(#[from] DstackError),
    /// The AK certificate chain or the CA bundle was refused (its kind).
    #[error(transparent)]
    Ak(#[from] GcpAkError),
    /// The TPM quote was refused (its kind).
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

impl GcpError {
    /// Stable snake_case name of the failure class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GcpError::MissingPcr(_) => ErrorKind::Malformed,
            GcpError::RuntimePcrMismatch { .. } => ErrorKind::EventLogMismatch,
            GcpError::Image(error) => error.kind(),
            GcpError::Ak(error) => error.kind(),
            GcpError::Tpm(error) => error.kind(),
        }
    }
}

fn mismatch(check: OsImageCheck, detail: impl Into<String>) -> GcpError {
    GcpError::Image(DstackError::OsImageMismatch {
        check,
        detail: detail.into(),
    })
}

/// The qualifying data a GCP guest asks its vTPM quote for: sha256 of the raw TDX quote. Passed
/// to [`crate::tpm::verify_quote`], whose extraData check then binds the two quotes.
pub fn qualified_data(tdx_quote: &[u8]) -> [u8; 32] {
    Sha256::digest(tdx_quote).into()
}

/// The quoted PCRs dstack reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcpPcrs {
    /// The firmware (must be [`GCE_TDX_PCR0`] for a bound image).
    pub pcr0: [u8; 32],
    /// The boot loader and UKI, whose third event is the UKI's Authenticode digest.
    pub pcr2: [u8; 32],
    /// dstack's runtime events.
    pub pcr14: [u8; 32],
}

impl GcpPcrs {
    /// PCR0, PCR2 and PCR14 of a verified quote; each must be quoted.
    pub fn from_quote(quote: &VerifiedTpmQuote) -> Result<GcpPcrs, GcpError> {
        let pcr = |index| quote.pcr(index).copied().ok_or(GcpError::MissingPcr(index));
        Ok(GcpPcrs {
            pcr0: pcr(0)?,
            pcr2: pcr(2)?,
            pcr14: pcr(RUNTIME_PCR)?,
        })
    }

    /// `mr_aggregated = SHA256(PCR0 ‖ PCR2 ‖ PCR14′)`, PCR14′ being the runtime events replayed
    /// in full, or through `boot-mr-done` for [`MrMode::BootTime`].
    pub fn mr_aggregated(&self, runtime: &RuntimePcr, mode: MrMode) -> [u8; 32] {
        let pcr14 = match mode {
            MrMode::Runtime => runtime.full,
            MrMode::BootTime => runtime.boot_time,
        };
        let mut hasher = Sha256::new();
        hasher.update(self.pcr0);
        hasher.update(self.pcr2);
        hasher.update(pcr14);
        hasher.finalize().into()
    }

    /// PCR14 must be the full replay of the runtime events, else `event_log_mismatch`.
    pub fn check_runtime_pcr(&self, runtime: &RuntimePcr) -> Result<(), GcpError> {
        if self.pcr14 != runtime.full {
            return Err(GcpError::RuntimePcrMismatch {
                quoted: crate::encoding::hex(self.pcr14),
                replayed: crate::encoding::hex(runtime.full),
            });
        }
        Ok(())
    }
}

/// `mr_system = SHA256(os_image_hash ‖ mr_key_provider)`: the claimed image hash (nothing when
/// vm_config has none, as upstream hashes an empty one), bound only when [`verify_os_image`] ran.
pub fn mr_system(os_image_hash: Option<&[u8; 32]>, mr_key_provider: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    if let Some(hash) = os_image_hash {
        hasher.update(hash);
    }
    hasher.update(mr_key_provider);
    hasher.finalize().into()
}

/// dstack's runtime events replayed into a SHA-256 register from 32 zero bytes, as they extend
/// PCR14: in full, and through the first `boot-mr-done` (all of them without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimePcr {
    /// Every runtime event replayed.
    pub full: [u8; 32],
    /// The events up to and including the first `boot-mr-done` (all of them without one).
    pub boot_time: [u8; 32],
}

impl RuntimePcr {
    /// Replays `(version, name, payload)` runtime events in log order.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = (RuntimeEventVersion, &'a str, &'a [u8])>,
    ) -> RuntimePcr {
        let mut register = [0u8; 32];
        let mut boot_time = None;
        for (version, name, payload) in events {
            let mut hasher = Sha256::new();
            hasher.update(register);
            hasher.update(runtime_event_hash(
                &aws_lc_rs::digest::SHA256,
                version,
                name,
                payload,
            ));
            register = hasher.finalize().into();
            if boot_time.is_none() && name == BOOT_MR_DONE {
                boot_time = Some(register);
            }
        }
        RuntimePcr {
            full: register,
            boot_time: boot_time.unwrap_or(register),
        }
    }
}

/// How much of the OS image a GCP quote binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcpOsImage {
    /// No `gcp_measurement`: os_image_hash stays the host's claim, as for an unbound TDX image.
    Unbound,
    /// os_image_hash is the image whose UKI Authenticode digest `uki_auth` Google's firmware
    /// measured into PCR2.
    Bound {
        /// The UKI's Authenticode digest, PCR2's third event.
        uki_auth: [u8; 32],
    },
}

/// Binds `os_image_hash` to the quote (upstream semantics): PCR0 is Google's
/// TDX firmware; sha256 of the checksum file is os_image_hash; its unique `measurement.gcp.cbor`
/// line is sha256 of the document; the document is `{version: 1, uki_auth}`; and PCR2's third
/// replayed event is `uki_auth`. Any failure is an `os_image_mismatch`; an unreadable document is
/// malformed. Without `measurement` the image is [`GcpOsImage::Unbound`].
pub fn verify_os_image(
    os_image_hash: Option<&[u8; 32]>,
    measurement: Option<&TdxMeasurementMaterial>,
    quote: &VerifiedTpmQuote,
) -> Result<GcpOsImage, GcpError> {
    let Some(measurement) = measurement else {
        return Ok(GcpOsImage::Unbound);
    };
    let pcr0 = quote.pcr(0).ok_or(GcpError::MissingPcr(0))?;
    if *pcr0 != GCE_TDX_PCR0 {
        return Err(mismatch(
            OsImageCheck::Pcr0,
            format!(
                "{} is not Google's TDX firmware {}",
                crate::encoding::hex(pcr0),
                crate::encoding::hex(GCE_TDX_PCR0)
            ),
        ));
    }
    let uki_auth = verified_uki_auth(os_image_hash, measurement)?;
    let events = quote.replayed_events(2).ok_or_else(|| {
        mismatch(
            OsImageCheck::UkiAuth,
            "PCR2 is not quoted with events from the TPM event log",
        )
    })?;
    let measured = events.get(UKI_EVENT).ok_or_else(|| {
        mismatch(
            OsImageCheck::UkiAuth,
            format!("PCR2 has {} events, no UKI event", events.len()),
        )
    })?;
    if uki_auth != measured[..] {
        return Err(mismatch(
            OsImageCheck::UkiAuth,
            format!(
                "PCR2's UKI event is {}, the measurement document's uki_auth {}",
                crate::encoding::hex(measured),
                crate::encoding::hex(&uki_auth)
            ),
        ));
    }
    Ok(GcpOsImage::Bound {
        uki_auth: *measured,
    })
}

/// The checksum file and document chain up to os_image_hash; returns the document's `uki_auth`.
fn verified_uki_auth(
    os_image_hash: Option<&[u8; 32]>,
    measurement: &TdxMeasurementMaterial,
) -> Result<Vec<u8>, GcpError> {
    chain_material(
        os_image_hash.copied(),
        &measurement.checksum_file,
        &measurement.measurement,
        MEASUREMENT_FILE_NAME,
    )?;
    Ok(uki_auth(&measurement.measurement)?)
}

/// `uki_auth` of a `measurement.gcp.cbor` `{"version": 1, "uki_auth": bytes}`, read as upstream's
/// serde struct reads it (the map reader TDX-lite's document uses). A version other than 1 is an
/// `os_image_mismatch`; an unreadable document is malformed.
pub(crate) fn uki_auth(document: &[u8]) -> Result<Vec<u8>, DstackError> {
    DstackError::check_len(MEASUREMENT_FILE_NAME, document.len(), MAX_MEASUREMENT_LEN)?;
    let fields = read_document(document, MEASUREMENT_FILE_NAME, ["version", "uki_auth"])?;
    let version = fields.unsigned("version")?;
    if version != MEASUREMENT_VERSION {
        return Err(DstackError::OsImageMismatch {
            check: OsImageCheck::CborVersion,
            detail: format!(
                "the measurement document is version {version}, {MEASUREMENT_VERSION} expected"
            ),
        });
    }
    Ok(fields.bytes("uki_auth")?.into_owned())
}

/// dstack identity of a GCP TDX guest whose TDX quote (`registers`, `tcb`) and vTPM quote
/// (`quote`, verified with `qualified_data` of the TDX quote and an AK chained to Google's root)
/// the caller has verified. In dstack's order: RTMR3 replays the runtime events, the
/// attestation's report_data is the quote's, PCR14 is their SHA-256 replay, the OS image binds
/// when `vm_config.gcp_measurement` is given (else it stays the host's claim), then the boot info
/// with GCP's formulas: `mr_system = SHA256(os_image_hash ‖ mr_key_provider)`,
/// `mr_aggregated = SHA256(PCR0 ‖ PCR2 ‖ PCR14′)`, device_id from the TDX PPID, the TCB verdict
/// from the TDX quote.
pub fn gcp_identity(
    registers: &TdRegisters,
    evidence: &GcpEvidence,
    quote: &VerifiedTpmQuote,
    tcb: TdxTcb,
    mode: MrMode,
) -> Result<(DstackIdentity, GcpOsImage), GcpError> {
    let tdx = &evidence.tdx;
    let replay = tdx.event_log.verify(&registers.rtmr)?;
    if let Some(report_data) = &tdx.report_data {
        check_report_data(&registers.report_data, report_data)?;
    }
    let pcrs = GcpPcrs::from_quote(quote)?;
    let runtime = RuntimePcr::replay(tdx.event_log.runtime_events().map(|event| {
        (
            event.version.unwrap_or(RuntimeEventVersion::V1),
            event.name.as_str(),
            event.payload.as_slice(),
        )
    }));
    pcrs.check_runtime_pcr(&runtime)?;
    let config = tdx.vm_config.as_ref();
    let os_image_hash = config.and_then(|config| config.os_image_hash);
    let os_image = verify_os_image(
        os_image_hash.as_ref(),
        config.and_then(|config| config.gcp_measurement.as_ref()),
        quote,
    )?;
    let app_info = AppInfo::from_events(
        tdx.event_log
            .runtime_events()
            .map(|event| (event.name.as_str(), event.payload.as_slice())),
    )?;
    let compose_hash = app_info.require_compose_hash()?;
    let mr_key_provider = match mode {
        MrMode::Runtime => app_info.mr_key_provider(),
        MrMode::BootTime => [0; 32],
    };
    let bound = matches!(os_image, GcpOsImage::Bound { .. });
    let boot_info = BootInfo {
        app_id: app_info.app_id,
        compose_hash,
        instance_id: app_info.instance_id.unwrap_or_default(),
        device_id: tdx_device_id(&tcb.ppid),
        mr_aggregated: pcrs.mr_aggregated(&runtime, mode),
        mr_system: mr_system(os_image_hash.as_ref(), &mr_key_provider),
        os_image_hash: os_image_hash.unwrap_or_default(),
        tcb_status: tcb.tcb_status,
        advisory_ids: tcb.advisory_ids,
    };
    let identity = DstackIdentity {
        tee_variant: TeeVariant::DstackGcpTdx,
        app_info,
        boot_info,
        os_image_hash_bound: bound,
        replay: Some(replay),
        os_image: None,
        registers: None,
        unbound: if bound {
            Vec::new()
        } else {
            vec![IdentityField::OsImageHash]
        },
    };
    Ok((identity, os_image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::event_log::runtime_event_preimage_v2;
    use crate::tpm::test_support::{AkKey, AttestSpec};
    use crate::tpm::{
        parse_tcg2_event_log, replay_pcr, verify_quote, AkPublicKey, PcrValue, TpmEvent, TpmQuote,
    };
    use coset::cbor::value::Value;

    const TDX_QUOTE: &[u8] = b"a raw TDX quote";
    const UKI: [u8; 32] = [0x9a; 32];

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        parts.iter().for_each(|part| hasher.update(part));
        hasher.finalize().into()
    }

    /// PCR0's events on a GCE VM of technology `tech`: the CRTM version
    /// string, NonHostInfo and the separator.
    fn firmware_events(tech: u8) -> Vec<TpmEvent> {
        let version: Vec<u8> = "GCE Virtual Firmware v2\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut non_host = b"GCE NonHostInfo\0".to_vec();
        non_host.push(tech);
        non_host.extend_from_slice(&[0; 15]);
        [&version[..], &non_host, &[0; 4]]
            .iter()
            .map(|data| TpmEvent {
                pcr_index: 0,
                digest: sha256(&[data]),
            })
            .collect()
    }

    /// PCR2's events on GCP: separator, GPT, the UKI, the inner Linux.
    fn pcr2_events(uki: [u8; 32]) -> Vec<TpmEvent> {
        [sha256(&[&[0; 4]]), [0x0b; 32], uki, [0xad; 32]]
            .into_iter()
            .map(|digest| TpmEvent {
                pcr_index: 2,
                digest,
            })
            .collect()
    }

    /// A quote of `pcrs` over `qualified`, with `events`, signed by a fresh AK and verified.
    fn verify_signed(
        pcrs: &[(u32, [u8; 32])],
        events: Vec<TpmEvent>,
        qualified: &[u8],
    ) -> VerifiedTpmQuote {
        let ak = AkKey::ecc();
        let message = AttestSpec::quote(qualified, pcrs).encode();
        let quote = TpmQuote {
            signature: ak.sign(&message),
            message,
            pcr_values: pcrs
                .iter()
                .map(|(index, value)| PcrValue {
                    index: *index,
                    value: *value,
                })
                .collect(),
            event_log: events,
        };
        let key = AkPublicKey::from_certificate(&ak.bare_certificate()).unwrap();
        verify_quote(&quote, &key, qualified).unwrap()
    }

    /// A quote of PCR0, PCR2 and PCR14 replayed from `events` (PCR14 given), bound to TDX_QUOTE.
    fn verified(events: Vec<TpmEvent>, pcr14: [u8; 32]) -> VerifiedTpmQuote {
        let pcrs = [
            (0, replay_pcr(&events, 0)),
            (2, replay_pcr(&events, 2)),
            (14, pcr14),
        ];
        verify_signed(&pcrs, events, &qualified_data(TDX_QUOTE))
    }

    fn gce_quote(uki: [u8; 32]) -> VerifiedTpmQuote {
        let events = [firmware_events(3), pcr2_events(uki)].concat();
        verified(events, [0; 32])
    }

    /// `measurement.gcp.cbor` as dstack's image builder writes it (53 bytes).
    fn document(version: u8, uki: &[u8; 32]) -> Vec<u8> {
        let mut cbor = vec![0xa2, 0x67];
        cbor.extend_from_slice(b"version");
        cbor.push(version);
        cbor.push(0x68);
        cbor.extend_from_slice(b"uki_auth");
        cbor.extend_from_slice(&[0x58, 0x20]);
        cbor.extend_from_slice(uki);
        cbor
    }

    fn checksum_file(document: &[u8]) -> Vec<u8> {
        format!(
            "{}  metadata.json\n{}  {MEASUREMENT_FILE_NAME}\n",
            "11".repeat(32),
            hex::encode(sha256(&[document]))
        )
        .into_bytes()
    }

    fn material(checksum_file: &[u8], measurement: &[u8]) -> TdxMeasurementMaterial {
        TdxMeasurementMaterial {
            checksum_file: checksum_file.to_vec(),
            measurement: measurement.to_vec(),
        }
    }

    fn check_of(result: Result<GcpOsImage, GcpError>) -> OsImageCheck {
        match result.unwrap_err() {
            error @ GcpError::Image(DstackError::OsImageMismatch { check, .. }) => {
                assert_eq!(error.kind().as_str(), "os_image_mismatch");
                check
            }
            other => panic!("not an os_image_mismatch: {other}"),
        }
    }

    #[test]
    fn gce_tdx_pcr0_is_firmware_v2_on_tdx() {
        assert_eq!(replay_pcr(&firmware_events(3), 0), GCE_TDX_PCR0);
        // Technology 4 is SEV-SNP (the chutes-api GCE quote's PCR0).
        assert_eq!(
            hex::encode(replay_pcr(&firmware_events(4), 0))[..8],
            *"50597a27"
        );
    }

    #[test]
    fn a_matching_image_is_bound() {
        let quote = gce_quote(UKI);
        let document = document(1, &UKI);
        assert_eq!(document.len(), 53);
        let checksum = checksum_file(&document);
        let os_image_hash = sha256(&[&checksum]);
        let measurement = material(&checksum, &document);
        assert_eq!(
            verify_os_image(Some(&os_image_hash), Some(&measurement), &quote),
            Ok(GcpOsImage::Bound { uki_auth: UKI })
        );
        // Without the material the claim stays unbound, whatever the quote says.
        let other_firmware = verified(firmware_events(4), [0; 32]);
        assert_eq!(
            verify_os_image(Some(&os_image_hash), None, &other_firmware),
            Ok(GcpOsImage::Unbound)
        );
    }

    #[test]
    fn the_real_gce_log_binds_its_uki() {
        let dir = crate::tpm::samples::samples_dir();
        let log = std::fs::read(dir.join("gcp/dstack_gce_tdx_tpm_eventlog.bin")).unwrap();
        let quote = verified(parse_tcg2_event_log(&log).unwrap(), [0; 32]);
        assert_eq!(quote.pcr(0), Some(&GCE_TDX_PCR0));
        let uki = hex::decode("9ab14a46f858662a89adc102d2a57a13f52f75c1769d65a4c34edbbfc8855f0f")
            .unwrap()
            .try_into()
            .unwrap();
        let document = document(1, &uki);
        let checksum = checksum_file(&document);
        let measurement = material(&checksum, &document);
        assert_eq!(
            verify_os_image(Some(&sha256(&[&checksum])), Some(&measurement), &quote),
            Ok(GcpOsImage::Bound { uki_auth: uki })
        );
    }

    #[test]
    fn a_wrong_pcr0_or_uki_is_an_os_image_mismatch() {
        let document = document(1, &UKI);
        let checksum = checksum_file(&document);
        let os_image_hash = sha256(&[&checksum]);
        let measurement = material(&checksum, &document);
        let check = |quote: &VerifiedTpmQuote| {
            check_of(verify_os_image(
                Some(&os_image_hash),
                Some(&measurement),
                quote,
            ))
        };
        let sev_firmware = verified([firmware_events(4), pcr2_events(UKI)].concat(), [0; 32]);
        assert_eq!(check(&sev_firmware), OsImageCheck::Pcr0);
        assert_eq!(check(&gce_quote([0x9b; 32])), OsImageCheck::UkiAuth);
        let short_pcr2 = {
            let mut events = [firmware_events(3), pcr2_events(UKI)].concat();
            events.truncate(5);
            verified(events, [0; 32])
        };
        assert_eq!(check(&short_pcr2), OsImageCheck::UkiAuth);
        // PCR2 quoted without its events: nothing binds the UKI digest.
        assert_eq!(
            check(&verified(firmware_events(3), [0; 32])),
            OsImageCheck::UkiAuth
        );
    }

    #[test]
    fn the_checksum_file_chains_the_document_to_os_image_hash() {
        let quote = gce_quote(UKI);
        let document = document(1, &UKI);
        let good = checksum_file(&document);
        let bind = |os_image_hash: Option<&[u8; 32]>, checksum: &[u8], measurement: &[u8]| {
            verify_os_image(
                os_image_hash,
                Some(&material(checksum, measurement)),
                &quote,
            )
        };
        let hash_of = |bytes: &[u8]| sha256(&[bytes]);

        // sha256(checksum_file) is not the claimed os_image_hash, or there is no claim.
        assert_eq!(
            check_of(bind(Some(&[0x42; 32]), &good, &document)),
            OsImageCheck::ChecksumFile
        );
        assert_eq!(
            check_of(bind(None, &good, &document)),
            OsImageCheck::ChecksumFile
        );

        let line = |hash: &str, name: &str| format!("{hash}  {name}\n");
        let listed = hex::encode(hash_of(&document));
        for checksum in [
            line(&"22".repeat(32), MEASUREMENT_FILE_NAME),
            line(&listed, "measurement.tdx.cbor"),
            line(&listed, MEASUREMENT_FILE_NAME) + &line(&listed, MEASUREMENT_FILE_NAME),
            line(&listed[..62], MEASUREMENT_FILE_NAME),
            line("zz", MEASUREMENT_FILE_NAME),
            format!("{listed}\n"),
        ] {
            let checksum = checksum.into_bytes();
            assert_eq!(
                check_of(bind(Some(&hash_of(&checksum)), &checksum, &document)),
                OsImageCheck::MeasurementHash,
                "{}",
                String::from_utf8_lossy(&checksum)
            );
        }
        let not_utf8 = [&good[..], &[0xff]].concat();
        assert_eq!(
            check_of(bind(Some(&hash_of(&not_utf8)), &not_utf8, &document)),
            OsImageCheck::MeasurementHash
        );
        // Blank lines and spacing do not matter; the exact bytes are what os_image_hash hashes.
        let spaced = format!("\n{listed}\t{MEASUREMENT_FILE_NAME}  \n\n").into_bytes();
        bind(Some(&hash_of(&spaced)), &spaced, &document).unwrap();
    }

    #[test]
    fn the_measurement_document_is_version_1_with_uki_auth() {
        let quote = gce_quote(UKI);
        let bind = |document: &[u8]| {
            let checksum = checksum_file(document);
            verify_os_image(
                Some(&sha256(&[&checksum])),
                Some(&material(&checksum, document)),
                &quote,
            )
        };
        assert_eq!(
            check_of(bind(&document(2, &UKI))),
            OsImageCheck::CborVersion
        );

        let encode = |value: Value| {
            let mut out = Vec::new();
            coset::cbor::ser::into_writer(&value, &mut out).unwrap();
            out
        };
        let text = |s: &str| Value::Text(s.into());
        let version = || (text("version"), Value::Integer(1.into()));
        // Unknown keys are ignored and the bytes may be an array, as serde reads them.
        let as_array = encode(Value::Map(vec![
            (text("comment"), text("built by dstack")),
            (
                text("uki_auth"),
                Value::Array(UKI.iter().map(|b| Value::Integer((*b).into())).collect()),
            ),
            version(),
        ]));
        assert_eq!(bind(&as_array), Ok(GcpOsImage::Bound { uki_auth: UKI }));
        // A 48-byte digest can never be PCR2's SHA-256 event.
        assert_eq!(
            check_of(bind(&encode(Value::Map(vec![
                version(),
                (text("uki_auth"), Value::Bytes(vec![0x9a; 48])),
            ])))),
            OsImageCheck::UkiAuth
        );

        for (document, why) in [
            (b"\xff\x00".to_vec(), "not CBOR"),
            (encode(Value::Array(vec![])), "not a map"),
            (encode(Value::Map(vec![version()])), "no uki_auth"),
            (
                encode(Value::Map(vec![
                    version(),
                    version(),
                    (text("uki_auth"), Value::Bytes(UKI.to_vec())),
                ])),
                "repeated version",
            ),
            (
                encode(Value::Map(vec![
                    (text("version"), text("1")),
                    (text("uki_auth"), Value::Bytes(UKI.to_vec())),
                ])),
                "text version",
            ),
            (
                encode(Value::Map(vec![
                    version(),
                    (text("uki_auth"), Value::Bool(true)),
                ])),
                "uki_auth not bytes",
            ),
            (vec![0; MAX_MEASUREMENT_LEN + 1], "too large"),
        ] {
            let err = bind(&document).unwrap_err();
            assert_eq!(err.kind().as_str(), "malformed", "{why}: {err}");
        }
    }

    fn v1_digest(name: &str, payload: &[u8]) -> [u8; 32] {
        sha256(&[
            &0x0800_0001u32.to_le_bytes(),
            b":",
            name.as_bytes(),
            b":",
            payload,
        ])
    }

    fn extend(register: [u8; 32], digest: [u8; 32]) -> [u8; 32] {
        sha256(&[&register, &digest])
    }

    #[test]
    fn pcr14_is_the_sha256_replay_of_v1_and_v2_runtime_events() {
        use RuntimeEventVersion::{V1, V2};
        let events: [(RuntimeEventVersion, &str, &[u8]); 4] = [
            (V1, "app-id", &[1; 20]),
            (V2, "compose-hash", &[2; 32]),
            (V1, BOOT_MR_DONE, b""),
            (V1, "key-provider", b"{}"),
        ];
        let replay = RuntimePcr::replay(events);
        let v2 = sha256(&[&runtime_event_preimage_v2("compose-hash", &[2; 32])]);
        let boot_time = extend(
            extend(extend([0; 32], v1_digest("app-id", &[1; 20])), v2),
            v1_digest(BOOT_MR_DONE, b""),
        );
        assert_eq!(replay.boot_time, boot_time);
        assert_eq!(
            replay.full,
            extend(boot_time, v1_digest("key-provider", b"{}"))
        );

        let quote = verified(gce_events(), replay.full);
        let pcrs = GcpPcrs::from_quote(&quote).unwrap();
        pcrs.check_runtime_pcr(&replay).unwrap();

        // One event fewer, or one more, is another PCR14.
        for other in [
            RuntimePcr::replay(events.iter().copied().take(3)),
            RuntimePcr::replay(events.iter().copied().chain([(V1, "extra", &b""[..])])),
            RuntimePcr::replay(
                events
                    .iter()
                    .map(|(_, name, payload)| (V1, *name, *payload)),
            ),
        ] {
            let err = pcrs.check_runtime_pcr(&other).unwrap_err();
            assert!(matches!(err, GcpError::RuntimePcrMismatch { .. }), "{err}");
            assert_eq!(err.kind().as_str(), "event_log_mismatch");
        }
        // Without boot-mr-done the boot-time value is the full one.
        let no_marker = RuntimePcr::replay(events.iter().copied().take(2));
        assert_eq!(no_marker.boot_time, no_marker.full);
    }

    fn gce_events() -> Vec<TpmEvent> {
        [firmware_events(3), pcr2_events(UKI)].concat()
    }

    #[test]
    fn identity_formulas() {
        let runtime = RuntimePcr {
            full: [0xf1; 32],
            boot_time: [0xb7; 32],
        };
        let quote = verified(gce_events(), runtime.full);
        let pcrs = GcpPcrs::from_quote(&quote).unwrap();
        assert_eq!(pcrs.pcr0, GCE_TDX_PCR0);
        assert_eq!(
            pcrs.mr_aggregated(&runtime, MrMode::Runtime),
            sha256(&[&GCE_TDX_PCR0, &pcrs.pcr2, &[0xf1; 32]])
        );
        assert_eq!(
            pcrs.mr_aggregated(&runtime, MrMode::BootTime),
            sha256(&[&GCE_TDX_PCR0, &pcrs.pcr2, &[0xb7; 32]])
        );
        assert_eq!(
            mr_system(Some(&[3; 32]), &[4; 32]),
            sha256(&[&[3; 32], &[4; 32]])
        );
        assert_eq!(mr_system(None, &[4; 32]), sha256(&[&[4; 32]]));
        assert_eq!(qualified_data(TDX_QUOTE), sha256(&[TDX_QUOTE]));
    }

    #[test]
    fn pcr0_2_and_14_must_be_quoted() {
        let verified = verify_signed(&[(0, GCE_TDX_PCR0), (2, [2; 32])], vec![], &[]);
        let err = GcpPcrs::from_quote(&verified).unwrap_err();
        assert_eq!(
            (err.clone(), err.kind().as_str()),
            (GcpError::MissingPcr(14), "malformed")
        );
    }
}
