//! Printing results: one JSON object for machines (`--json`), a short summary for people.

use serde::Serialize;

/// Prints `value` as one line of JSON on stdout.
pub(super) fn print_json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => print_line(&text),
        // Our report types serialize infallibly; say so loudly rather than print nothing.
        Err(e) => eprintln!("tee-verifier: cannot serialize output: {e}"),
    }
}

/// Writes one line to stdout. A reader that went away (`| head`) is not our failure: the exit
/// code still tells the verdict, where `println!` would panic.
pub(super) fn print_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// A source that could not answer (exit 2): `{field: absent, "error":{"kind","message"}}` for
/// machines, `NO ANSWER (kind): …` for people.
pub(super) fn print_no_answer(
    json: bool,
    field: &str,
    absent: serde_json::Value,
    error: &crate::registry::RegistryError,
) -> std::process::ExitCode {
    if json {
        print_json(&serde_json::json!({
            field: absent,
            "error": { "kind": error.kind(), "message": error.to_string() },
        }));
    } else {
        print_line(&format!("NO ANSWER ({}): {error}", error.kind()));
    }
    std::process::ExitCode::from(2)
}

/// The JSON of a rejection: `{"verified":false,"error":{"kind":…,"message":…}}`.
pub(super) fn rejection_json(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "verified": false, "error": { "kind": kind, "message": message } })
}

/// A readable summary of a report: the headline, then one aligned line per known field.
pub(super) fn print_report(report: &crate::evidence::Report) {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            lines.push((name.to_owned(), value));
        }
    };
    add("os_image_hash", report.os_image_hash.clone());
    add("report_data", report.report_data.clone());
    if let Some(nitro) = &report.nitro {
        add("module_id", Some(nitro.module_id.clone()));
        add("timestamp_ms", Some(nitro.timestamp_ms.to_string()));
        for (index, value) in nitro.pcrs.iter().filter(|(index, _)| **index <= 2) {
            add(&format!("pcr{index}"), Some(value.clone()));
        }
        add("user_data", nitro.user_data.clone());
        add("nonce", nitro.nonce.clone());
        add("public_key", nitro.public_key.clone());
    }
    if let Some(tdx) = &report.tdx {
        add("quote_version", Some(tdx.quote_version.to_string()));
        add("tcb_status", tdx.tcb_status.clone());
        add(
            "advisory_ids",
            (!tdx.advisory_ids.is_empty()).then(|| tdx.advisory_ids.join(", ")),
        );
        add("ppid", tdx.ppid.clone());
        add("mr_td", Some(tdx.mr_td.clone()));
        for (name, value) in [
            ("rtmr0", &tdx.rtmr0),
            ("rtmr1", &tdx.rtmr1),
            ("rtmr2", &tdx.rtmr2),
            ("rtmr3", &tdx.rtmr3),
        ] {
            add(name, Some(value.clone()));
        }
    }
    if let Some(gcp) = &report.gcp {
        for (index, value) in &gcp.tpm.pcrs {
            add(&format!("tpm_pcr{index}"), Some(value.clone()));
        }
        add("ak_subject", Some(gcp.tpm.ak_subject.clone()));
        add("ak_signature", Some(gcp.tpm.signature_algorithm.clone()));
    }
    if let Some(dstack) = &report.dstack {
        add("app_id", Some(dstack.app_id.clone()));
        add("compose_hash", Some(dstack.compose_hash.clone()));
        add("instance_id", dstack.instance_id.clone());
        add("key_provider", dstack.key_provider.clone());
        add("mr_system", Some(dstack.mr_system.clone()));
        add("mr_aggregated", Some(dstack.mr_aggregated.clone()));
        add("device_id", Some(dstack.device_id.clone()));
        add("os_image", dstack.os_image_variant.clone());
        add(
            "bound_by",
            dstack.register_sources.as_ref().map(|sources| {
                let named: Vec<_> = sources.iter().map(|(r, s)| format!("{r}={s}")).collect();
                named.join(" ")
            }),
        );
        add(
            "unbound",
            (!dstack.unbound_fields.is_empty()).then(|| dstack.unbound_fields.join(", ")),
        );
        if !dstack.os_image_hash_bound && report.os_image_hash.is_some() {
            add(
                "note",
                Some(
                    "os_image_hash is the host's claim (vm_config), not bound to the hardware"
                        .into(),
                ),
            );
        }
    }
    add("ratls_key", report.ratls_public_key.clone());
    for (name, value) in lines {
        print_line(&format!("  {name:<14} {value}"));
    }
}
