//! The lite computation on the real TDX-lite sample (whose MRTD and RTMR0-2 the Python reference
//! reproduces), and every way it can fail.

use super::lite::tests::check_of;
use super::*;
use crate::dstack::test_support::{stripped_event_log, tdx_sample, LEGACY_SAMPLE, LITE_SAMPLE};
use crate::dstack::TdxEvidence;

/// What `docs/reference/tdx_lite_measurement.py` computes for the sample (= its quote).
const REFERENCE: [(&str, &str); 4] = [
    ("mr_td", "fd685522ce791dfef67414614eb07d03fc07a32c5a66f36288b329dab92b724b1564c73d436ffb9ea84488c51ac5a1c5"),
    ("rtmr0", "f8438db36b96f85d8752ff7f24a89ec05c79ec9eda2ba732c897fb970ca429365b7471b1c054cb84f17b1c2b23ba6640"),
    ("rtmr1", "2023546e7f3b9d1228e274f70c44d481162540f8452544520a796a52f06879709b81a824a26792a7822327504b0d2aee"),
    ("rtmr2", "4c1b739ed451a637b0f82642e48a5ea83925d23633c72e7385c8e9aca4175e133ed1625b7d92eb39edf509c27ff392dc"),
];

fn lite() -> Option<(TdxEvidence, TdImageRegisters, serde_json::Value)> {
    let (evidence, registers, report) = tdx_sample(LITE_SAMPLE)?;
    Some((evidence, TdImageRegisters::from(&registers), report))
}

fn config_of(evidence: &TdxEvidence) -> VmConfig {
    evidence
        .vm_config
        .clone()
        .expect("the sample has a vm_config")
}

#[test]
fn the_lite_sample_reproduces_its_quote() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    let config = config_of(&evidence);
    assert_eq!(config.tdx_attestation_variant, TdxAttestationVariant::Lite);
    let computed = lite_registers(&config, &evidence.event_log).unwrap();
    assert_eq!(computed, quoted);
    for ((name, _, value), (reference_name, reference)) in
        computed.named().into_iter().zip(REFERENCE)
    {
        assert_eq!(
            (name, hex::encode(value)),
            (reference_name, reference.to_owned())
        );
    }
    check_lite(&config, &evidence.event_log, &quoted).unwrap();
    let binding = bind_tdx_os_image(
        Some(&config),
        &evidence.event_log,
        &quoted,
        OsImagePolicy::default(),
    )
    .unwrap();
    assert_eq!(
        binding,
        OsImageBinding {
            variant: TdxAttestationVariant::Lite,
            bound: true,
            acpi_tables_verified: false,
        }
    );
}

#[test]
fn a_stripped_log_binds_the_same_image() {
    let Some((evidence, quoted, report)) = lite() else {
        return;
    };
    let stripped = EventLog::from_json(&stripped_event_log(&report)).unwrap();
    assert!(stripped.events().len() < evidence.event_log.events().len());
    assert_eq!(
        lite_registers(&config_of(&evidence), &stripped).unwrap(),
        quoted
    );
}

#[test]
fn each_register_that_differs_is_named() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    let config = config_of(&evidence);
    let mut expected_checks = vec![];
    for register in 0..4 {
        let mut other = quoted;
        match register {
            0 => other.mrtd[0] ^= 1,
            n => other.rtmr[n - 1][47] ^= 1,
        }
        let err = check_lite(&config, &evidence.event_log, &other).unwrap_err();
        assert!(err.to_string().contains(&hex::encode(match register {
            0 => other.mrtd,
            n => other.rtmr[n - 1],
        })));
        expected_checks.push(check_of(err));
    }
    assert_eq!(
        expected_checks,
        [
            OsImageCheck::Mrtd,
            OsImageCheck::Rtmr(0),
            OsImageCheck::Rtmr(1),
            OsImageCheck::Rtmr(2)
        ]
    );
}

#[test]
fn the_inverted_page_add_override_selects_the_mrtd() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    // QEMU 8.2.2 adds pages in two passes; `qemu_single_pass_add_pages` is the two-pass flag.
    let config = config_of(&evidence);
    assert_eq!(config.qemu_version.as_deref(), Some("8.2.2"));
    let with = |flag| VmConfig {
        qemu_single_pass_add_pages: flag,
        ..config.clone()
    };
    check_lite(&with(Some(true)), &evidence.event_log, &quoted).unwrap();
    let err = check_lite(&with(Some(false)), &evidence.event_log, &quoted).unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::Mrtd);
    let qemu_9 = VmConfig {
        qemu_version: Some("9.1.0".into()),
        ..config
    };
    let err = check_lite(&qemu_9, &evidence.event_log, &quoted).unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::Mrtd);
}

#[test]
fn memory_size_rules_and_the_td_hob() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    let with_memory = |memory_size| VmConfig {
        memory_size,
        ..config_of(&evidence)
    };
    for unmeasurable in [0, 0x4000_0000, 0xA000_0000] {
        let err = check_lite(&with_memory(unmeasurable), &evidence.event_log, &quoted).unwrap_err();
        assert_eq!(check_of(err), OsImageCheck::MemorySize);
    }
    // Measurable, but another TD HOB than the one this TD measured.
    let err = check_lite(&with_memory(0xC000_0000), &evidence.event_log, &quoted).unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::Rtmr(0));
}

#[test]
fn the_acpi_digests_come_from_the_log() {
    let Some((evidence, quoted, report)) = lite() else {
        return;
    };
    let config = config_of(&evidence);
    let log: Vec<serde_json::Value> =
        serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut log = log.clone();
        log.iter_mut().for_each(edit);
        EventLog::from_json(&serde_json::to_string(&log).unwrap()).unwrap()
    };
    let unlabelled = edited(&|event| {
        if event["event_type"] == 10 {
            event["event"] = "".into();
        }
    });
    let err = check_lite(&config, &unlabelled, &quoted).unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::AcpiEvents);
    let other_tables = edited(&|event| {
        if event["event"] == "acpi-tables" {
            event["digest"] = "00".repeat(48).into();
        }
    });
    let err = check_lite(&config, &other_tables, &quoted).unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::Rtmr(0));
}

#[test]
fn material_failures_are_os_image_mismatches() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    let config = config_of(&evidence);
    let mut other_hash = config.clone();
    other_hash.os_image_hash.as_mut().unwrap()[0] ^= 1;
    let mut other_measurement = config.clone();
    other_measurement
        .tdx_measurement
        .as_mut()
        .unwrap()
        .measurement
        .push(0);
    for (bad, check) in [
        (other_hash, OsImageCheck::ChecksumFile),
        (other_measurement, OsImageCheck::MeasurementHash),
    ] {
        let err = bind_tdx_os_image(
            Some(&bad),
            &evidence.event_log,
            &quoted,
            OsImagePolicy::default(),
        )
        .unwrap_err();
        assert_eq!(check_of(err), check);
    }
}

#[test]
fn legacy_and_disallowed_lite_images_stay_unbound() {
    let Some((legacy, legacy_registers, _)) = tdx_sample(LEGACY_SAMPLE) else {
        return;
    };
    let legacy_config = legacy.vm_config.clone();
    assert_eq!(
        legacy_config.as_ref().unwrap().tdx_attestation_variant,
        TdxAttestationVariant::Legacy
    );
    let quoted = TdImageRegisters::from(&legacy_registers);
    for config in [legacy_config.as_ref(), None] {
        let binding =
            bind_tdx_os_image(config, &legacy.event_log, &quoted, OsImagePolicy::default())
                .unwrap();
        assert_eq!(binding.variant, TdxAttestationVariant::Legacy);
        assert!(!binding.bound);
        assert_eq!(
            preview_tdx_os_image(config, &legacy.event_log, &quoted).computed,
            None
        );
    }

    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    // Off, a lite image is not computed, so even broken material leaves it merely unbound.
    let mut broken = config_of(&evidence);
    broken.tdx_measurement = None;
    let off = OsImagePolicy { allow_lite: false };
    let binding = bind_tdx_os_image(Some(&broken), &evidence.event_log, &quoted, off).unwrap();
    assert_eq!(
        (binding.variant, binding.bound),
        (TdxAttestationVariant::Lite, false)
    );
    let err = bind_tdx_os_image(
        Some(&broken),
        &evidence.event_log,
        &quoted,
        OsImagePolicy::default(),
    )
    .unwrap_err();
    assert_eq!(check_of(err), OsImageCheck::ChecksumFile);
}

#[test]
fn the_preview_shows_computed_and_quoted_side_by_side() {
    let Some((evidence, quoted, _)) = lite() else {
        return;
    };
    let config = config_of(&evidence);
    let preview = preview_tdx_os_image(Some(&config), &evidence.event_log, &quoted);
    assert_eq!(preview.variant, TdxAttestationVariant::Lite);
    assert_eq!(preview.computed, Some(Ok(quoted)));
    assert_eq!(
        preview.matches().unwrap(),
        [
            ("mr_td", true),
            ("rtmr0", true),
            ("rtmr1", true),
            ("rtmr2", true)
        ]
    );

    let single_pass = VmConfig {
        qemu_single_pass_add_pages: Some(false),
        ..config.clone()
    };
    let preview = preview_tdx_os_image(Some(&single_pass), &evidence.event_log, &quoted);
    assert_eq!(
        preview.matches().unwrap(),
        [
            ("mr_td", false),
            ("rtmr0", true),
            ("rtmr1", true),
            ("rtmr2", true)
        ]
    );

    let small = VmConfig {
        memory_size: 0x4000_0000,
        ..config
    };
    let preview = preview_tdx_os_image(Some(&small), &evidence.event_log, &quoted);
    assert_eq!(
        preview.computed.unwrap().map_err(check_of),
        Err(OsImageCheck::MemorySize)
    );
}
