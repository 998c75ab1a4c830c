//! The boot info dstack's KMS builds from verified evidence (`build_boot_info`). TDX: app id,
//! compose hash and instance id from the runtime events, measurements and device id from the
//! registers and PPID, os_image_hash bound by the TDX-lite OS-image check when it applies (else
//! the host's vm_config claim), TCB status from DCAP. Nitro: the image hash
//! sha256(PCR0 ‖ PCR1 ‖ PCR2) in every measurement field and an empty TCB status, so apps that
//! require `UpToDate` refuse it. The caller verifies the platform proof first (the DCAP quote
//! signature and TCB, or the NSM document's signature and chain) and hands over the registers it
//! vouches for.
//!
//! The KMS's rules: app_id is exactly 20 bytes (an `app-id` event of another length is
//! malformed); tcbStatus and advisory ids are the DCAP verdict on TDX and empty on a Nitro enclave.
//! What the hardware does not bind is said: [`DstackIdentity::unbound`] lists the boot-info
//! values taken on trust, and for TDX [`DstackIdentity::registers`] says where MRTD and RTMR0-2
//! were bound.

use super::app_info::{AppInfo, BOOT_MR_DONE};
use super::event_log::ReplayOutcome;
use super::evidence::{NitroEvidence, TdxEvidence};
use super::measurements::{
    check_report_data, mr_aggregated, mr_system, tdx_device_id, NitroEnclave, TdRegisters,
};
use super::os_image::{bind_tdx_os_image, OsImageBinding, OsImagePolicy, TdImageRegisters};
use super::DstackError;
use crate::boot_info::BootInfo;

/// dstack's `teeVariant` names for the platforms handled here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeeVariant {
    /// `"dstack-tdx"`.
    DstackTdx,
    /// `"dstack-nitro-enclave"`.
    DstackNitroEnclave,
    /// `"dstack-gcp-tdx"`: TDX on Google Cloud, with the vTPM quote.
    DstackGcpTdx,
}

impl TeeVariant {
    /// dstack's spelling (`"dstack-tdx"`, `"dstack-nitro-enclave"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TeeVariant::DstackTdx => "dstack-tdx",
            TeeVariant::DstackNitroEnclave => "dstack-nitro-enclave",
            TeeVariant::DstackGcpTdx => "dstack-gcp-tdx",
        }
    }
}

/// Which RTMR3 value and key-provider measurement enter the boot info.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MrMode {
    /// The KMS's `get_app_key`: full RTMR3 and the key-provider event.
    #[default]
    Runtime,
    /// `use_boottime_mr` (certificate signing): RTMR3 replayed through `boot-mr-done`, no key provider.
    BootTime,
}

/// What DCAP verification of the quote established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TdxTcb {
    /// The platform's PPID from the PCK certificate (16 bytes).
    pub ppid: Vec<u8>,
    /// The converged TCB status as Intel spells it (`"UpToDate"`, ...).
    pub tcb_status: String,
    /// Intel advisory IDs behind the status.
    pub advisory_ids: Vec<String>,
}

/// Where a TDX register's value was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterSource {
    /// Recomputed from the OS image material and equal to the quote (TDX-lite).
    OsImage,
    /// The event log is complete for the register and replays to the quote's value.
    EventLog,
    /// Neither: the quote's value is signed but nothing explains it.
    Unbound,
}

impl RegisterSource {
    /// The report's spelling: `"os_image"`, `"event_log"` or `"unbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterSource::OsImage => "os_image",
            RegisterSource::EventLog => "event_log",
            RegisterSource::Unbound => "unbound",
        }
    }
}

/// Where each register the OS image determines was bound (RTMR3 is always replayed from the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterSources {
    /// MRTD: only the OS-image computation can bind it (the event log does not cover it).
    pub mr_td: RegisterSource,
    /// RTMR0 (firmware configuration, ACPI tables).
    pub rtmr0: RegisterSource,
    /// RTMR1 (kernel).
    pub rtmr1: RegisterSource,
    /// RTMR2 (kernel command line, initrd).
    pub rtmr2: RegisterSource,
}

impl RegisterSources {
    /// The OS image binding wins over a replay: it explains the value, a replay only matches it.
    fn of(os_image: &OsImageBinding, replay: &ReplayOutcome) -> RegisterSources {
        let source = |checked: bool| match (os_image.bound, checked) {
            (true, _) => RegisterSource::OsImage,
            (false, true) => RegisterSource::EventLog,
            (false, false) => RegisterSource::Unbound,
        };
        RegisterSources {
            mr_td: source(false),
            rtmr0: source(replay.checked[0]),
            rtmr1: source(replay.checked[1]),
            rtmr2: source(replay.checked[2]),
        }
    }

    /// `(name, source)` per register: `mr_td`, `rtmr0`..`rtmr2`.
    pub fn named(&self) -> [(&'static str, RegisterSource); 4] {
        [
            ("mr_td", self.mr_td),
            ("rtmr0", self.rtmr0),
            ("rtmr1", self.rtmr1),
            ("rtmr2", self.rtmr2),
        ]
    }
}

/// A boot-info value that the platform's hardware does not bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// Nitro: the `app-id` runtime event is carried beside the document, in no PCR; dstack trusts
    /// it through the enclave image (PCRs) only.
    AppId,
    /// Nitro: likewise the `instance-id` event.
    InstanceId,
    /// Nitro: likewise the `key-provider` event (mr_key_provider).
    KeyProvider,
    /// TDX: os_image_hash is the host's vm_config claim (legacy image, or lite not allowed).
    OsImageHash,
}

impl IdentityField {
    /// The report's spelling of the field: `"app_id"`, `"instance_id"`, `"key_provider"` or
    /// `"os_image_hash"`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::AppId => "app_id",
            IdentityField::InstanceId => "instance_id",
            IdentityField::KeyProvider => "key_provider",
            IdentityField::OsImageHash => "os_image_hash",
        }
    }
}

/// The identity dstack derives from evidence, and how much of it is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstackIdentity {
    /// The platform, as dstack names it.
    pub tee_variant: TeeVariant,
    /// The app identity read from the runtime events.
    pub app_info: AppInfo,
    /// The `AppBootInfo` the KMS would send to `DstackKms.isAppAllowed`.
    pub boot_info: BootInfo,
    /// Whether `boot_info.os_image_hash` is measured (Nitro PCRs, TDX-lite) rather than the host's
    /// vm_config claim.
    pub os_image_hash_bound: bool,
    /// The event-log replay (TDX only).
    pub replay: Option<ReplayOutcome>,
    /// The TDX os-image binding (TDX only).
    pub os_image: Option<OsImageBinding>,
    /// Where MRTD and RTMR0-2 were bound (TDX only).
    pub registers: Option<RegisterSources>,
    /// Boot-info values taken on trust, in [`IdentityField`] order.
    pub unbound: Vec<IdentityField>,
}

/// dstack identity of a TDX guest whose quote (`registers`) the caller has verified, with the
/// default [`OsImagePolicy`] (TDX-lite images are bound, as dstack's KMS does).
pub fn tdx_identity(
    registers: &TdRegisters,
    evidence: &TdxEvidence,
    tcb: TdxTcb,
    mode: MrMode,
) -> Result<DstackIdentity, DstackError> {
    tdx_identity_with_policy(registers, evidence, tcb, mode, OsImagePolicy::default())
}

/// [`tdx_identity`] with an explicit OS-image policy. Order: the event log replays (RTMR3 always,
/// a boot register when the log is complete for it), the attestation's report_data is the quote's,
/// the OS image binds (an `os_image_mismatch` is fatal), then app info and boot info.
pub fn tdx_identity_with_policy(
    registers: &TdRegisters,
    evidence: &TdxEvidence,
    tcb: TdxTcb,
    mode: MrMode,
    policy: OsImagePolicy,
) -> Result<DstackIdentity, DstackError> {
    let replay = evidence.event_log.verify(&registers.rtmr)?;
    if let Some(report_data) = &evidence.report_data {
        check_report_data(&registers.report_data, report_data)?;
    }
    let os_image = bind_tdx_os_image(
        evidence.vm_config.as_ref(),
        &evidence.event_log,
        &TdImageRegisters::from(registers),
        policy,
    )?;
    let app_info = AppInfo::from_events(
        evidence
            .event_log
            .runtime_events()
            .map(|event| (event.name.as_str(), event.payload.as_slice())),
    )?;
    let compose_hash = app_info.require_compose_hash()?;
    let (rtmr3, mr_key_provider) = match mode {
        MrMode::Runtime => (registers.rtmr[3], app_info.mr_key_provider()),
        MrMode::BootTime => (
            evidence.event_log.replay_rtmr3_through(BOOT_MR_DONE),
            [0; 32],
        ),
    };
    let boot_info = BootInfo {
        app_id: app_info.app_id,
        compose_hash,
        instance_id: app_info.instance_id.unwrap_or_default(),
        device_id: tdx_device_id(&tcb.ppid),
        mr_aggregated: mr_aggregated(registers, &rtmr3),
        mr_system: mr_system(registers, &mr_key_provider),
        os_image_hash: evidence
            .vm_config
            .as_ref()
            .and_then(|config| config.os_image_hash)
            .unwrap_or_default(),
        tcb_status: tcb.tcb_status,
        advisory_ids: tcb.advisory_ids,
    };
    Ok(DstackIdentity {
        tee_variant: TeeVariant::DstackTdx,
        app_info,
        boot_info,
        os_image_hash_bound: os_image.bound,
        replay: Some(replay),
        registers: Some(RegisterSources::of(&os_image, &replay)),
        os_image: Some(os_image),
        unbound: if os_image.bound {
            Vec::new()
        } else {
            vec![IdentityField::OsImageHash]
        },
    })
}

/// dstack identity of a Nitro enclave whose NSM document (`enclave`) the caller has verified. The
/// image hash stands for os_image_hash, compose_hash, mr_system and mr_aggregated; tcbStatus is
/// empty, so any app requiring an up-to-date TCB refuses Nitro, as upstream.
pub fn nitro_identity(
    enclave: &NitroEnclave,
    evidence: &NitroEvidence,
) -> Result<DstackIdentity, DstackError> {
    check_report_data(
        enclave.user_data.as_deref().unwrap_or_default(),
        &evidence.report_data,
    )?;
    let image_hash = enclave.image_hash()?;
    if let Some(claimed) = evidence
        .vm_config
        .as_ref()
        .and_then(|config| config.os_image_hash)
    {
        if claimed != image_hash {
            return Err(DstackError::OsImageHashMismatch {
                claimed: crate::encoding::hex(claimed),
                measured: crate::encoding::hex(image_hash),
            });
        }
    }
    let app_info = AppInfo::from_events(
        evidence
            .runtime_events
            .iter()
            .map(|event| (event.name.as_str(), event.payload.as_slice())),
    )?;
    let boot_info = BootInfo {
        app_id: app_info.app_id,
        compose_hash: image_hash,
        instance_id: app_info.instance_id.unwrap_or_default(),
        device_id: enclave.device_id(),
        mr_aggregated: image_hash,
        mr_system: image_hash,
        os_image_hash: image_hash,
        tcb_status: String::new(),
        advisory_ids: Vec::new(),
    };
    let unbound = [
        (IdentityField::AppId, true),
        (IdentityField::InstanceId, app_info.instance_id.is_some()),
        (
            IdentityField::KeyProvider,
            !app_info.key_provider_info.is_empty(),
        ),
    ]
    .into_iter()
    .filter_map(|(field, present)| present.then_some(field))
    .collect();
    Ok(DstackIdentity {
        tee_variant: TeeVariant::DstackNitroEnclave,
        app_info,
        boot_info,
        os_image_hash_bound: true,
        replay: None,
        os_image: None,
        registers: None,
        unbound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::event_log::{runtime, EventLog, RawEvent, RuntimeEvent};
    use crate::dstack::vm_config::VmConfig;
    use sha2::{Digest, Sha256};

    /// A consistent TD: registers replayed from the log.
    fn tdx_case() -> (TdRegisters, TdxEvidence) {
        let events = vec![
            RawEvent {
                imr: 0,
                event_type: 4,
                digest: vec![1; 48],
                ..Default::default()
            },
            runtime("system-preparing", b""),
            runtime("app-id", &[0xa1; 20]),
            runtime("compose-hash", &[0xc0; 32]),
            runtime("instance-id", &[0x1d; 20]),
            runtime("boot-mr-done", b""),
            runtime("key-provider", br#"{"name":"kms","id":"00"}"#),
            runtime("system-ready", b""),
            runtime("compose-hash", &[0xee; 32]),
        ];
        let event_log = EventLog::from_raw(events).unwrap();
        let registers = TdRegisters {
            mr_td: [9; 48],
            rtmr: event_log.replay(),
            report_data: [5; 64],
            ..Default::default()
        };
        let evidence = TdxEvidence {
            quote: vec![],
            event_log,
            report_data: Some([5; 64]),
            vm_config: Some(VmConfig {
                os_image_hash: Some([0x05; 32]),
                ..VmConfig::default()
            }),
        };
        (registers, evidence)
    }

    fn tcb() -> TdxTcb {
        TdxTcb {
            ppid: vec![0x42; 16],
            tcb_status: "UpToDate".into(),
            advisory_ids: vec!["INTEL-SA-1".into()],
        }
    }

    #[test]
    fn tdx_boot_info_as_the_kms_builds_it() {
        let (registers, evidence) = tdx_case();
        let identity = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap();
        let info = &identity.boot_info;
        assert_eq!(identity.tee_variant.as_str(), "dstack-tdx");
        assert_eq!(
            (info.app_id, info.compose_hash, info.instance_id),
            ([0xa1; 20], [0xc0; 32], [0x1d; 20])
        );
        assert_eq!(info.device_id, <[u8; 32]>::from(Sha256::digest([0x42; 16])));
        assert_eq!(
            info.mr_system,
            mr_system(&registers, &identity.app_info.mr_key_provider())
        );
        assert_ne!(identity.app_info.mr_key_provider(), [0; 32]);
        assert_eq!(
            info.mr_aggregated,
            mr_aggregated(&registers, &registers.rtmr[3])
        );
        assert_eq!(info.os_image_hash, [0x05; 32]);
        assert!(!identity.os_image_hash_bound);
        assert_eq!(
            (info.tcb_status.as_str(), info.advisory_ids.len()),
            ("UpToDate", 1)
        );
        assert_eq!(identity.replay.unwrap().checked, [true, false, false, true]);

        let boot_time = tdx_identity(&registers, &evidence, tcb(), MrMode::BootTime)
            .unwrap()
            .boot_info;
        assert_eq!(boot_time.mr_system, mr_system(&registers, &[0; 32]));
        let rtmr3_at_boot = evidence.event_log.replay_rtmr3_through(BOOT_MR_DONE);
        assert_ne!(rtmr3_at_boot, registers.rtmr[3]);
        assert_eq!(
            boot_time.mr_aggregated,
            mr_aggregated(&registers, &rtmr3_at_boot)
        );

        let no_claim = TdxEvidence {
            vm_config: None,
            report_data: None,
            ..evidence
        };
        assert_eq!(
            tdx_identity(&registers, &no_claim, tcb(), MrMode::Runtime)
                .unwrap()
                .boot_info
                .os_image_hash,
            [0; 32]
        );
    }

    #[test]
    fn tdx_rejections() {
        let (registers, evidence) = tdx_case();
        let mut other_rtmr3 = registers.clone();
        other_rtmr3.rtmr[3][0] ^= 1;
        let err = tdx_identity(&other_rtmr3, &evidence, tcb(), MrMode::Runtime).unwrap_err();
        assert!(matches!(err, DstackError::RtmrMismatch { register: 3, .. }));

        let other_report_data = TdRegisters {
            report_data: [6; 64],
            ..registers.clone()
        };
        let err = tdx_identity(&other_report_data, &evidence, tcb(), MrMode::Runtime).unwrap_err();
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        let log = EventLog::from_raw(vec![runtime("app-id", &[1; 20])]).unwrap();
        let registers = TdRegisters {
            rtmr: log.replay(),
            ..Default::default()
        };
        let no_compose = TdxEvidence {
            event_log: log,
            report_data: None,
            ..evidence
        };
        let err = tdx_identity(&registers, &no_compose, tcb(), MrMode::Runtime).unwrap_err();
        assert_eq!(err, DstackError::MissingEvent("compose-hash"));
    }

    fn nitro_case() -> (NitroEnclave, NitroEvidence) {
        let enclave = NitroEnclave {
            module_id: "i-0123-enc4567".into(),
            pcrs: (0..3u8).map(|index| (index, vec![index + 1; 48])).collect(),
            user_data: Some(vec![3; 64]),
        };
        let image_hash = enclave.image_hash().unwrap();
        let evidence = NitroEvidence {
            document: vec![],
            runtime_events: vec![RuntimeEvent {
                name: "app-id".into(),
                payload: vec![0xa1; 20],
            }],
            report_data: [3; 64],
            vm_config: Some(VmConfig {
                os_image_hash: Some(image_hash),
                ..VmConfig::default()
            }),
        };
        (enclave, evidence)
    }

    #[test]
    fn nitro_boot_info_uses_the_image_hash_everywhere() {
        let (enclave, evidence) = nitro_case();
        let image_hash = enclave.image_hash().unwrap();
        let identity = nitro_identity(&enclave, &evidence).unwrap();
        let info = &identity.boot_info;
        assert_eq!(identity.tee_variant.as_str(), "dstack-nitro-enclave");
        assert!(identity.os_image_hash_bound);
        assert_eq!(info.app_id, [0xa1; 20]);
        for value in [
            info.compose_hash,
            info.mr_system,
            info.mr_aggregated,
            info.os_image_hash,
        ] {
            assert_eq!(value, image_hash);
        }
        assert_eq!(info.device_id, <[u8; 32]>::from(Sha256::digest(b"i")));
        assert_eq!((info.instance_id, info.tcb_status.as_str()), ([0; 20], ""));

        let no_config = NitroEvidence {
            vm_config: None,
            ..evidence
        };
        assert!(nitro_identity(&enclave, &no_config).is_ok());
    }

    #[test]
    fn nitro_rejections() {
        let (enclave, evidence) = nitro_case();
        let wrong_claim = NitroEvidence {
            vm_config: Some(VmConfig {
                os_image_hash: Some([0; 32]),
                ..VmConfig::default()
            }),
            ..evidence.clone()
        };
        let err = nitro_identity(&enclave, &wrong_claim).unwrap_err();
        assert!(matches!(err, DstackError::OsImageHashMismatch { .. }));
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        for user_data in [None, Some(vec![3; 32]), Some(vec![4; 64])] {
            let other = NitroEnclave {
                user_data,
                ..enclave.clone()
            };
            assert_eq!(
                nitro_identity(&other, &evidence)
                    .unwrap_err()
                    .kind()
                    .as_str(),
                "binding_mismatch"
            );
        }

        let debug = NitroEnclave {
            pcrs: (0..3u8).map(|index| (index, vec![0; 48])).collect(),
            ..enclave.clone()
        };
        assert_eq!(
            nitro_identity(&debug, &evidence).unwrap_err(),
            DstackError::DebugEnclave
        );

        let no_app_id = NitroEvidence {
            runtime_events: vec![],
            ..evidence
        };
        assert_eq!(
            nitro_identity(&enclave, &no_app_id).unwrap_err(),
            DstackError::MissingEvent("app-id")
        );
    }

    #[test]
    fn nitro_flags_what_no_pcr_binds() {
        let (enclave, evidence) = nitro_case();
        let identity = nitro_identity(&enclave, &evidence).unwrap();
        assert_eq!(identity.unbound, [IdentityField::AppId]);
        assert_eq!((identity.os_image, identity.registers), (None, None));

        let more = NitroEvidence {
            runtime_events: vec![
                RuntimeEvent {
                    name: "app-id".into(),
                    payload: vec![0xa1; 20],
                },
                RuntimeEvent {
                    name: "instance-id".into(),
                    payload: vec![0x1d; 20],
                },
                RuntimeEvent {
                    name: "key-provider".into(),
                    payload: br#"{"name":"kms","id":"00"}"#.to_vec(),
                },
            ],
            ..evidence
        };
        let unbound: Vec<_> = nitro_identity(&enclave, &more)
            .unwrap()
            .unbound
            .iter()
            .map(|field| field.as_str())
            .collect();
        assert_eq!(unbound, ["app_id", "instance_id", "key_provider"]);
    }

    #[test]
    fn app_id_must_be_20_bytes_on_every_platform() {
        let (registers, evidence) = tdx_case();
        let mut events: Vec<RawEvent> = vec![runtime("app-id", &[1; 32])];
        events.push(runtime("compose-hash", &[2; 32]));
        let log = EventLog::from_raw(events).unwrap();
        let long_app_id = TdxEvidence {
            event_log: log.clone(),
            report_data: None,
            ..evidence
        };
        let registers = TdRegisters {
            rtmr: log.replay(),
            ..registers
        };
        let err = tdx_identity(&registers, &long_app_id, tcb(), MrMode::Runtime).unwrap_err();
        assert!(matches!(
            err,
            DstackError::Length {
                field: "app-id payload",
                len: 32,
                expected: 20
            }
        ));

        let (enclave, evidence) = nitro_case();
        let short = NitroEvidence {
            runtime_events: vec![RuntimeEvent {
                name: "app-id".into(),
                payload: vec![1; 19],
            }],
            ..evidence
        };
        assert_eq!(
            nitro_identity(&enclave, &short)
                .unwrap_err()
                .kind()
                .as_str(),
            "malformed"
        );
    }

    #[test]
    fn tcb_fields_per_platform() {
        let (registers, evidence) = tdx_case();
        let tdx = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap();
        assert_eq!(
            (
                tdx.boot_info.tcb_status.as_str(),
                tdx.boot_info.advisory_ids
            ),
            ("UpToDate", vec!["INTEL-SA-1".to_owned()])
        );
        let (enclave, evidence) = nitro_case();
        let nitro = nitro_identity(&enclave, &evidence).unwrap();
        assert_eq!(
            (
                nitro.boot_info.tcb_status.as_str(),
                nitro.boot_info.advisory_ids.len()
            ),
            ("", 0)
        );
    }

    mod samples {
        use super::*;
        use crate::dstack::test_support::{
            stripped_event_log, tdx_sample, LEGACY_SAMPLE, LITE_SAMPLE,
        };
        use crate::dstack::DstackError;
        use crate::dstack::OsImageCheck;

        fn sources(identity: &DstackIdentity) -> [&'static str; 4] {
            identity
                .registers
                .expect("TDX")
                .named()
                .map(|(_, source)| source.as_str())
        }

        #[test]
        fn a_lite_boot_is_bound_by_its_os_image() {
            let Some((evidence, registers, _)) = tdx_sample(LITE_SAMPLE) else {
                return;
            };
            let identity = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap();
            assert!(identity.os_image_hash_bound);
            assert_eq!(identity.os_image.unwrap().variant.as_str(), "lite");
            assert_eq!(sources(&identity), ["os_image"; 4]);
            assert!(identity.unbound.is_empty());
            assert_eq!(identity.replay.unwrap().checked, [true; 4]);
            assert_eq!(
                hex::encode(identity.boot_info.os_image_hash),
                "e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db"
            );

            let off = tdx_identity_with_policy(
                &registers,
                &evidence,
                tcb(),
                MrMode::Runtime,
                OsImagePolicy { allow_lite: false },
            )
            .unwrap();
            assert!(!off.os_image_hash_bound);
            assert_eq!(
                sources(&off),
                ["unbound", "event_log", "event_log", "event_log"]
            );
            assert_eq!(off.unbound, [IdentityField::OsImageHash]);
            assert_eq!(off.boot_info, identity.boot_info);
        }

        #[test]
        fn a_stripped_lite_boot_gets_the_same_answer() {
            let Some((evidence, registers, report)) = tdx_sample(LITE_SAMPLE) else {
                return;
            };
            let full = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap();
            let stripped = TdxEvidence {
                event_log: EventLog::from_json(&stripped_event_log(&report)).unwrap(),
                ..evidence
            };
            let identity = tdx_identity(&registers, &stripped, tcb(), MrMode::Runtime).unwrap();
            assert_eq!(
                identity.replay.unwrap().checked,
                [false, false, false, true]
            );
            assert_eq!(
                DstackIdentity {
                    replay: full.replay,
                    ..identity
                },
                full
            );
        }

        #[test]
        fn a_legacy_boot_is_bound_by_its_complete_log_only() {
            let Some((evidence, registers, report)) = tdx_sample(LEGACY_SAMPLE) else {
                return;
            };
            let identity = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap();
            assert_eq!(identity.os_image.unwrap().variant.as_str(), "legacy");
            assert!(!identity.os_image_hash_bound);
            assert_eq!(
                sources(&identity),
                ["unbound", "event_log", "event_log", "event_log"]
            );
            assert_eq!(identity.unbound, [IdentityField::OsImageHash]);

            let stripped = TdxEvidence {
                event_log: EventLog::from_json(&stripped_event_log(&report)).unwrap(),
                ..evidence
            };
            let identity = tdx_identity(&registers, &stripped, tcb(), MrMode::Runtime).unwrap();
            assert_eq!(sources(&identity), ["unbound"; 4]);
        }

        #[test]
        fn a_complete_log_must_replay_even_when_the_image_binds() {
            let Some((evidence, registers, report)) = tdx_sample(LITE_SAMPLE) else {
                return;
            };
            let mut log: Vec<serde_json::Value> =
                serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
            let rtmr1 = log.iter_mut().find(|event| event["imr"] == 1).unwrap();
            rtmr1["digest"] = "00".repeat(48).into();
            let tampered = TdxEvidence {
                event_log: EventLog::from_json(&serde_json::to_string(&log).unwrap()).unwrap(),
                ..evidence
            };
            let err = tdx_identity(&registers, &tampered, tcb(), MrMode::Runtime).unwrap_err();
            assert!(matches!(err, DstackError::RtmrMismatch { register: 1, .. }));
            assert_eq!(err.kind().as_str(), "event_log_mismatch");
        }

        #[test]
        fn an_image_that_does_not_match_is_fatal() {
            let Some((mut evidence, registers, _)) = tdx_sample(LITE_SAMPLE) else {
                return;
            };
            evidence.vm_config.as_mut().unwrap().memory_size = 0xC000_0000;
            let err = tdx_identity(&registers, &evidence, tcb(), MrMode::Runtime).unwrap_err();
            assert_eq!(err.kind().as_str(), "os_image_mismatch");
            assert!(matches!(
                err,
                DstackError::OsImageMismatch {
                    check: OsImageCheck::Rtmr(0),
                    ..
                }
            ));
        }
    }
}
