//! The one mapping between the library's types and the wire: proto messages, gRPC status codes,
//! and the webhook's JSON. Nothing here decides anything.

use super::proto;
use crate::boot_info::{BootInfo, BootInfoJson};
use crate::dstack::OsImagePolicy;
use crate::encoding::{parse_hex_padded, to_0x_hex};
use crate::error::ErrorKind;
use crate::evidence::{EvidenceError, Expectations, Platform, Verified};
use crate::registry::view::AppCode;
use crate::registry::{Decision, Entry, Lookup, RegistryChange, RegistryError, Snapshot};
use tonic::{Code, Status};

/// A Verify request taken apart into owned pieces (which can move onto a blocking thread).
#[derive(Debug)]
pub(super) struct VerifyJob {
    pub evidence: Vec<u8>,
    pub event_log: Option<Vec<u8>>,
    pub collateral: Option<Vec<u8>>,
    pub vm_config: Option<Vec<u8>>,
    pub app_compose: Option<Vec<u8>>,
    pub expectations: Expectations,
    pub authorize: proto::Authorize,
    pub accept_os_image_claim: bool,
    pub include_report_json: bool,
    pub kind: EvidenceKind,
}

/// Which field of the request's `evidence` oneof was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EvidenceKind {
    NitroDocument,
    Tdx,
    DstackAttestation,
    DstackQuoteReport,
    RatlsCertificate,
}

impl EvidenceKind {
    pub(super) fn field_name(self) -> &'static str {
        match self {
            EvidenceKind::NitroDocument => "nitro_document",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::DstackAttestation => "dstack_attestation",
            EvidenceKind::DstackQuoteReport => "dstack_quote_report",
            EvidenceKind::RatlsCertificate => "ratls_certificate",
        }
    }
}

impl VerifyJob {
    /// The bytes verification will read.
    pub(super) fn input_len(&self) -> usize {
        let input = self.input();
        [
            Some(input.evidence),
            input.event_log,
            input.collateral,
            input.vm_config,
            input.app_compose,
        ]
        .into_iter()
        .flatten()
        .map(<[u8]>::len)
        .sum()
    }

    pub(super) fn input(&self) -> crate::evidence::EvidenceInput<'_> {
        crate::evidence::EvidenceInput {
            evidence: &self.evidence,
            event_log: self.event_log.as_deref(),
            collateral: self.collateral.as_deref(),
            vm_config: self.vm_config.as_deref(),
            app_compose: self.app_compose.as_deref(),
        }
    }
}

impl TryFrom<proto::VerifyRequest> for VerifyJob {
    type Error = Status;

    fn try_from(request: proto::VerifyRequest) -> Result<Self, Status> {
        use proto::verify_request::Evidence;
        let authorize = proto::Authorize::try_from(request.authorize).map_err(|_| {
            Status::invalid_argument(format!("authorize: unknown value {}", request.authorize))
        })?;
        let (kind, evidence, event_log, collateral, vm_config) = match request.evidence {
            None => return Err(Status::invalid_argument("evidence: one of nitro_document, tdx, dstack_attestation, dstack_quote_report or ratls_certificate is required")),
            Some(Evidence::NitroDocument(document)) => {
                (EvidenceKind::NitroDocument, document, None, None, None)
            }
            Some(Evidence::Tdx(tdx)) => (
                EvidenceKind::Tdx,
                tdx.quote,
                // An empty event log means a bare quote (no dstack identity).
                (!tdx.event_log.is_empty()).then(|| tdx.event_log.into_bytes()),
                tdx.collateral.map(String::into_bytes),
                tdx.vm_config.map(String::into_bytes),
            ),
            Some(Evidence::DstackAttestation(attestation)) => (
                EvidenceKind::DstackAttestation,
                attestation.attestation,
                None,
                attestation.collateral.map(String::into_bytes),
                None,
            ),
            Some(Evidence::DstackQuoteReport(report)) => (
                EvidenceKind::DstackQuoteReport,
                report.json.into_bytes(),
                None,
                report.collateral.map(String::into_bytes),
                None,
            ),
            Some(Evidence::RatlsCertificate(certificate)) => (
                EvidenceKind::RatlsCertificate,
                certificate.certificate,
                None,
                certificate.collateral.map(String::into_bytes),
                None,
            ),
        };
        if evidence.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{}: empty",
                kind.field_name()
            )));
        }
        Ok(VerifyJob {
            evidence,
            event_log,
            collateral,
            vm_config,
            app_compose: request.app_compose,
            expectations: Expectations {
                nonce: request.expected_nonce,
                user_data: request.expected_user_data,
                public_key: request.expected_public_key,
                report_data: request.expected_report_data,
                max_age_secs: request.max_age_seconds,
                // The service never accepts debug enclaves or TDs.
                allow_debug: false,
                os_image: request
                    .allow_tdx_lite
                    .map(|allow_lite| OsImagePolicy { allow_lite }),
            },
            authorize,
            accept_os_image_claim: request.accept_os_image_claim,
            include_report_json: request.include_report_json,
            kind,
        })
    }
}

/// A rejected attestation: an answer, not a transport error.
pub(super) fn verification_error(error: &EvidenceError) -> proto::VerificationError {
    proto::VerificationError {
        kind: error.kind().as_str().to_owned(),
        message: error.to_string(),
    }
}

/// What verification established, in the response's shape: field for field its
/// [`Report`](crate::evidence::Report), so both spell every value alike.
pub(super) fn attested(verified: &Verified, include_report_json: bool) -> proto::Attested {
    let report = verified.report();
    // A struct of strings, numbers and maps with integer keys always serializes.
    let report_json = if include_report_json {
        serde_json::to_string(&report).unwrap_or_default()
    } else {
        String::new()
    };
    let platform = match report.platform {
        Platform::Nitro => proto::Platform::Nitro,
        Platform::Tdx => proto::Platform::Tdx,
        Platform::GcpTdx => proto::Platform::GcpTdx,
    };
    let report_data = report.report_data;
    proto::Attested {
        platform: platform.into(),
        os_image_hash: report.os_image_hash,
        nitro: report.nitro.map(|nitro| proto::NitroClaims {
            module_id: nitro.module_id,
            timestamp_ms: nitro.timestamp_ms,
            pcrs: nitro
                .pcrs
                .into_iter()
                .map(|(index, value)| (u32::from(index), value))
                .collect(),
            user_data: nitro.user_data,
            nonce: nitro.nonce,
            public_key: nitro.public_key,
        }),
        tdx: report.tdx.map(|tdx| proto::TdxClaims {
            quote_version: u32::from(tdx.quote_version),
            tcb_status: tdx.tcb_status.unwrap_or_default(),
            advisory_ids: tdx.advisory_ids,
            ppid: tdx.ppid.unwrap_or_default(),
            report_data: report_data.unwrap_or_default(),
            mr_td: tdx.mr_td,
            rtmrs: vec![tdx.rtmr0, tdx.rtmr1, tdx.rtmr2, tdx.rtmr3],
        }),
        dstack: report.dstack.map(|dstack| proto::DstackClaims {
            boot_info: Some(boot_info_to_proto(dstack.boot_info)),
            os_image_hash_bound: dstack.os_image_hash_bound,
            key_provider: dstack.key_provider,
            os_image_variant: dstack.os_image_variant,
            acpi_tables_verified: dstack.acpi_tables_verified,
            register_sources: dstack
                .register_sources
                .unwrap_or_default()
                .into_iter()
                .map(|(name, source)| (name.to_owned(), source.to_owned()))
                .collect(),
            unbound_fields: dstack
                .unbound_fields
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }),
        report_json,
        ratls_public_key: report.ratls_public_key,
    }
}

/// Whether the verified evidence is what the request's oneof said it was (detection is by
/// content; this keeps the field names honest).
pub(super) fn matches_declared_kind(kind: EvidenceKind, verified: &Verified) -> bool {
    let dstack = verified.dstack().is_some();
    let certificate = verified.certificate_key().is_some();
    (kind == EvidenceKind::RatlsCertificate) == certificate
        && match kind {
            EvidenceKind::NitroDocument => verified.platform() == Platform::Nitro && !dstack,
            EvidenceKind::Tdx => verified.platform() == Platform::Tdx,
            // A GCP attestation comes only as a dstack attestation (V0 or V1).
            EvidenceKind::DstackAttestation | EvidenceKind::RatlsCertificate => dstack,
            EvidenceKind::DstackQuoteReport => verified.platform() == Platform::Tdx && dstack,
        }
}

/// A boot info from a request, with the webhook's parsing rules (hex with or without 0x,
/// left-padded; absent = zeros). A missing message is a malformed request.
pub(super) fn boot_info_from_proto(boot_info: Option<proto::BootInfo>) -> Result<BootInfo, Status> {
    let boot_info = boot_info.ok_or_else(|| Status::invalid_argument("boot_info is required"))?;
    let json = boot_info_json(boot_info);
    BootInfo::try_from(&json).map_err(|e| Status::invalid_argument(format!("boot_info.{e}")))
}

/// A boot info as the request spells it (the webhook's strings, unparsed).
pub(super) fn boot_info_json(boot_info: proto::BootInfo) -> BootInfoJson {
    BootInfoJson {
        app_id: boot_info.app_id,
        compose_hash: boot_info.compose_hash,
        instance_id: boot_info.instance_id,
        device_id: boot_info.device_id,
        mr_aggregated: boot_info.mr_aggregated,
        mr_system: boot_info.mr_system,
        os_image_hash: boot_info.os_image_hash,
        tcb_status: boot_info.tcb_status,
        advisory_ids: boot_info.advisory_ids,
    }
}

/// A boot info on the wire, from its webhook spelling.
pub(super) fn boot_info_to_proto(json: BootInfoJson) -> proto::BootInfo {
    proto::BootInfo {
        app_id: json.app_id,
        compose_hash: json.compose_hash,
        instance_id: json.instance_id,
        device_id: json.device_id,
        mr_aggregated: json.mr_aggregated,
        mr_system: json.mr_system,
        os_image_hash: json.os_image_hash,
        tcb_status: json.tcb_status,
        advisory_ids: json.advisory_ids,
    }
}

pub(super) fn decision_to_proto(decision: Decision) -> proto::Decision {
    proto::Decision {
        is_allowed: decision.allowed,
        reason: decision.reason,
        block: decision.block,
        gateway_app_id: decision.gateway_app_id,
    }
}

/// The outcome name of a decision, for metrics.
pub(super) fn decision_outcome(decision: &Decision) -> &'static str {
    if decision.allowed {
        "allowed"
    } else {
        "denied"
    }
}

/// A registry failure as a gRPC status: whatever keeps the view from answering is UNAVAILABLE
/// (fail closed; the client should retry or deny), a question the view cannot answer is
/// FAILED_PRECONDITION.
pub(super) fn registry_status(error: RegistryError) -> Status {
    let code = match &error {
        RegistryError::Unavailable(_)
        | RegistryError::Rpc { .. }
        | RegistryError::ChainChanged(_)
        | RegistryError::InvalidFile { .. }
        | RegistryError::Io { .. } => Code::Unavailable,
        RegistryError::ContractReverted(_)
        | RegistryError::UnknownAppCode(_)
        | RegistryError::UnknownKmsCode(_) => Code::FailedPrecondition,
        RegistryError::InvalidConfig(_) => Code::Internal,
    };
    with_kind(Status::new(code, error.to_string()), error.kind())
}

/// Attaches a stable error kind as `tee-verifier-error-kind` metadata.
pub(super) fn with_kind(mut status: Status, kind: ErrorKind) -> Status {
    status.metadata_mut().insert(
        "tee-verifier-error-kind",
        tonic::metadata::MetadataValue::from_static(kind.as_str()),
    );
    status
}

/// A gRPC status code's snake_case name, the outcome label of a failed request.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

pub(super) fn lookup_from_proto(request: proto::CheckMeasurementRequest) -> Result<Lookup, Status> {
    use proto::check_measurement_request::Measurement;
    fn hex<const N: usize>(field: &str, text: &str) -> Result<[u8; N], Status> {
        parse_hex_padded(text).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
    }
    Ok(match request.measurement {
        None => {
            return Err(Status::invalid_argument(
                "measurement: one of os_image_hash, app_compose_hash, kms_aggregated_mr or kms_device_id is required",
            ))
        }
        Some(Measurement::OsImageHash(hash)) => Lookup::OsImageHash(hex("os_image_hash", &hash)?),
        Some(Measurement::AppComposeHash(app)) => Lookup::ComposeHash {
            app_id: hex("app_compose_hash.app_id", &app.app_id)?,
            compose_hash: hex("app_compose_hash.compose_hash", &app.compose_hash)?,
        },
        Some(Measurement::KmsAggregatedMr(mr)) => Lookup::KmsAggregatedMr(hex("kms_aggregated_mr", &mr)?),
        Some(Measurement::KmsDeviceId(id)) => Lookup::KmsDeviceId(hex("kms_device_id", &id)?),
    })
}

/// Parses the app-id filter of GetRegistry.
pub(super) fn app_filter(app_ids: &[String]) -> Result<Vec<[u8; 20]>, Status> {
    app_ids
        .iter()
        .map(|id| {
            parse_hex_padded::<20>(id)
                .map_err(|e| Status::invalid_argument(format!("app_ids: {e}")))
        })
        .collect()
}

fn app_code(code: AppCode) -> proto::AppCode {
    match code {
        AppCode::Known => proto::AppCode::Known,
        AppCode::Unknown => proto::AppCode::Unknown,
        AppCode::Absent => proto::AppCode::Absent,
    }
}

/// A snapshot on the wire; `apps` limited to `only` unless it is empty.
pub(super) fn snapshot_to_proto(
    snapshot: Snapshot,
    source: &str,
    only: &[[u8; 20]],
) -> proto::RegistrySnapshot {
    let hexes = |values: Vec<crate::registry::Hex<32>>| -> Vec<String> {
        values.iter().map(|value| to_0x_hex(&value.0)).collect()
    };
    let apps = snapshot
        .apps
        .into_iter()
        .filter(|app| only.is_empty() || only.contains(&app.app_id.0))
        .map(|app| proto::RegistryApp {
            app_id: to_0x_hex(&app.app_id.0),
            code: app_code(app.code).into(),
            allow_any_device: app.allow_any_device,
            require_tcb_up_to_date: app.require_tcb_up_to_date,
            implementation: app
                .implementation
                .map(|address| to_0x_hex(&address.0))
                .unwrap_or_default(),
            compose_hashes: hexes(app.compose_hashes),
            device_ids: hexes(app.device_ids),
        })
        .collect();
    proto::RegistrySnapshot {
        head: Some(proto::RegistryHead {
            block: snapshot.block,
            source: source.to_owned(),
        }),
        gateway_app_id: snapshot.gateway_app_id,
        app_implementation: snapshot
            .app_implementation
            .map(|address| to_0x_hex(&address.0))
            .unwrap_or_default(),
        os_image_hashes: hexes(snapshot.os_images),
        kms_aggregated_mrs: hexes(snapshot.kms_aggregated_mrs),
        kms_device_ids: hexes(snapshot.kms_device_ids),
        apps,
        // Filled by the caller, which reads the timelock changes of the same block.
        pending: Vec::new(),
        pending_error: String::new(),
    }
}

/// One announced change on the wire. `Rebuilt` has no event of its own: the stream answers it
/// with a fresh snapshot.
pub(super) fn change_to_event(change: RegistryChange) -> Option<proto::RegistryEvent> {
    use proto::registry_event::Event;
    use proto::{ChangeAction, RegistryList};
    let entry_change = |action: ChangeAction, entry: Entry| {
        let (list, app_id, value) = match entry {
            Entry::OsImageHash(hash) => (RegistryList::OsImage, None, to_0x_hex(&hash)),
            Entry::KmsAggregatedMr(mr) => (RegistryList::KmsAggregatedMr, None, to_0x_hex(&mr)),
            Entry::KmsDeviceId(id) => (RegistryList::KmsDevice, None, to_0x_hex(&id)),
            Entry::App(app_id) => (
                RegistryList::AppRegistered,
                Some(app_id),
                to_0x_hex(&app_id),
            ),
            Entry::ComposeHash {
                app_id,
                compose_hash,
            } => (
                RegistryList::AppComposeHash,
                Some(app_id),
                to_0x_hex(&compose_hash),
            ),
            Entry::AppDevice { app_id, device_id } => {
                (RegistryList::AppDevice, Some(app_id), to_0x_hex(&device_id))
            }
        };
        Event::Change(proto::RegistryChange {
            action: action.into(),
            list: list.into(),
            app_id: app_id.map(|id| to_0x_hex(&id)).unwrap_or_default(),
            value,
        })
    };
    let event = match change {
        RegistryChange::Added(entry) => entry_change(ChangeAction::Added, entry),
        RegistryChange::Removed(entry) => entry_change(ChangeAction::Removed, entry),
        RegistryChange::AppPolicyChanged { app_id } => Event::Change(proto::RegistryChange {
            action: ChangeAction::Set.into(),
            list: RegistryList::AppPolicy.into(),
            app_id: to_0x_hex(&app_id),
            value: String::new(),
        }),
        RegistryChange::GatewayAppIdChanged(gateway_app_id) => {
            Event::Change(proto::RegistryChange {
                action: ChangeAction::Set.into(),
                list: RegistryList::GatewayAppId.into(),
                app_id: String::new(),
                value: gateway_app_id,
            })
        }
        RegistryChange::Advanced { block } => Event::BlockAdvanced(proto::BlockAdvanced { block }),
        RegistryChange::Unavailable { reason } => Event::Unavailable(proto::Unavailable { reason }),
        RegistryChange::Rebuilt { .. } => return None,
    };
    Some(proto::RegistryEvent { event: Some(event) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_parses_like_the_webhook() {
        let boot = boot_info_from_proto(Some(proto::BootInfo {
            app_id: "ABCD".into(),
            compose_hash: String::new(),
            device_id: "0x01".into(),
            tcb_status: "UpToDate".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(boot.app_id[18..], [0xab, 0xcd]);
        assert_eq!(boot.compose_hash, [0; 32]);
        assert_eq!(boot.device_id[31], 1);
        let back = boot_info_to_proto(BootInfoJson::from(&boot));
        assert_eq!(back.app_id, "0x000000000000000000000000000000000000abcd");
        assert_eq!(boot_info_from_proto(Some(back)).unwrap(), boot);
    }

    #[test]
    fn malformed_boot_info_is_invalid_argument() {
        let missing = boot_info_from_proto(None).unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument);
        let wide = boot_info_from_proto(Some(proto::BootInfo {
            app_id: "11".repeat(21),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(wide.code(), Code::InvalidArgument);
        assert!(wide.message().contains("appId"), "{}", wide.message());
        let long_status = boot_info_from_proto(Some(proto::BootInfo {
            tcb_status: "x".repeat(129),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(long_status.code(), Code::InvalidArgument);
    }

    #[test]
    fn verify_requests_without_evidence_or_with_unknown_authorize_are_invalid() {
        let empty = VerifyJob::try_from(proto::VerifyRequest::default()).unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument);
        let empty_bytes = VerifyJob::try_from(proto::VerifyRequest {
            evidence: Some(proto::verify_request::Evidence::NitroDocument(Vec::new())),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(empty_bytes.code(), Code::InvalidArgument);
        let unknown = VerifyJob::try_from(proto::VerifyRequest {
            evidence: Some(proto::verify_request::Evidence::NitroDocument(vec![0x84])),
            authorize: 7,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(unknown.code(), Code::InvalidArgument);
        assert!(unknown.message().contains("authorize"));
    }

    #[test]
    fn tdx_evidence_carries_its_companions() {
        let job = VerifyJob::try_from(proto::VerifyRequest {
            evidence: Some(proto::verify_request::Evidence::Tdx(proto::TdxEvidence {
                quote: vec![4, 0],
                event_log: "[]".into(),
                collateral: Some("{}".into()),
                vm_config: None,
            })),
            expected_report_data: Some(vec![7; 64]),
            authorize: proto::Authorize::App.into(),
            ..Default::default()
        })
        .unwrap();
        let input = job.input();
        assert_eq!(input.evidence, [4, 0]);
        assert_eq!(input.event_log, Some(&b"[]"[..]));
        assert_eq!(input.collateral, Some(&b"{}"[..]));
        assert_eq!(input.vm_config, None);
        assert_eq!(job.expectations.report_data, Some(vec![7; 64]));
        assert!(!job.expectations.allow_debug);
        assert_eq!(job.authorize, proto::Authorize::App);
    }

    #[test]
    fn registry_errors_fail_closed() {
        let stale = registry_status(RegistryError::Unavailable("stale".into()));
        assert_eq!(stale.code(), Code::Unavailable);
        assert_eq!(
            stale.metadata().get("tee-verifier-error-kind").unwrap(),
            "unavailable"
        );
        let rpc = registry_status(RegistryError::Rpc {
            call: "eth_call",
            message: "down".into(),
        });
        assert_eq!(rpc.code(), Code::Unavailable);
        let unknown = registry_status(RegistryError::UnknownAppCode("0x..".into()));
        assert_eq!(unknown.code(), Code::FailedPrecondition);
    }

    #[test]
    fn measurements_parse_with_webhook_padding() {
        let lookup = lookup_from_proto(proto::CheckMeasurementRequest {
            measurement: Some(proto::check_measurement_request::Measurement::OsImageHash(
                "0x01".into(),
            )),
        })
        .unwrap();
        let mut expected = [0; 32];
        expected[31] = 1;
        assert_eq!(lookup, Lookup::OsImageHash(expected));
        let bad = lookup_from_proto(proto::CheckMeasurementRequest {
            measurement: Some(proto::check_measurement_request::Measurement::KmsDeviceId(
                "zz".into(),
            )),
        })
        .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        let none =
            lookup_from_proto(proto::CheckMeasurementRequest { measurement: None }).unwrap_err();
        assert_eq!(none.code(), Code::InvalidArgument);
    }
}
