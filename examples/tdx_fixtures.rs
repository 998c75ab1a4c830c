//! Regenerates `fixtures/tdx/`: an Intel-like test PKI (root, PCK Platform CA, PCK leaf with the
//! SGX extension, TCB signing certificate, both CRLs), its signed collateral in the
//! `QuoteCollateralV3` JSON shape, and quotes v4/v5 with their expected verdicts.
//!
//! `cargo run --example tdx_fixtures` (keys are fresh each run, so every file changes).

#[path = "../tests/it/support/tdx.rs"]
mod tdx_support;

use serde_json::json;
use std::path::Path;
use tdx_support::{Keys, Spec, NOW, SEPT_VE_DISABLE};

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
    std::fs::create_dir_all(&dir)?;
    let keys = Keys::generate();
    let base = Spec::default().build(&keys);
    std::fs::write(dir.join("root_ca.der"), &base.root_der)?;
    std::fs::write(
        dir.join("collateral.json"),
        serde_json::to_string_pretty(&base.collateral)?,
    )?;

    let svn = |prefix: &[u8]| {
        let mut all = [0u8; 16];
        all[..prefix.len()].copy_from_slice(prefix);
        all
    };
    type Edit = Box<dyn Fn(&mut Spec)>;
    // (file, spec edit, expected status or rejection kind, advisories, why)
    let quotes: Vec<(&str, Edit, &str, Vec<&str>, &str)> = vec![
        (
            "quote_v4.bin",
            Box::new(|_| {}),
            "UpToDate",
            vec![],
            "v4, TD 1.0 body",
        ),
        (
            "quote_v5_td10.bin",
            Box::new(|s| (s.td.version, s.td.body_type) = (5, 2)),
            "UpToDate",
            vec![],
            "v5, body type 2",
        ),
        (
            "quote_v5_td15.bin",
            Box::new(|s| (s.td.version, s.td.body_type) = (5, 3)),
            "UpToDate",
            vec![],
            "v5, body type 3",
        ),
        (
            "quote_v5_td15ex.bin",
            Box::new(|s| (s.td.version, s.td.body_type) = (5, 4)),
            "UpToDate",
            vec![],
            "v5, body type 4 (885-byte body)",
        ),
        (
            "quote_v5_td15_relaunch.bin",
            Box::new(move |s| {
                (s.td.version, s.td.body_type) = (5, 3);
                s.td.tee_tcb_svn = svn(&[2, 1, 3]);
            }),
            "TDRelaunchAdvised",
            vec!["INTEL-SA-01036"],
            "launched on TDX module ISVSVN 2 (OutOfDate), updated to 6",
        ),
        (
            "quote_module_out_of_date.bin",
            Box::new(move |s| s.td.tee_tcb_svn = svn(&[2, 1, 3])),
            "OutOfDate",
            vec!["INTEL-SA-01036"],
            "TDX module ISVSVN 2 meets only the OutOfDate TDX_01 level",
        ),
        (
            "quote_debug_td.bin",
            Box::new(|s| s.td.td_attributes = SEPT_VE_DISABLE | 1),
            "td_attributes",
            vec![],
            "DEBUG attribute set: refused unless allow_debug",
        ),
        (
            "quote_module_unknown.bin",
            Box::new(move |s| s.td.tee_tcb_svn = svn(&[6, 2, 3])),
            "tcb_level_not_found",
            vec![],
            "TDX module major version 2: the TCB Info has no TDX_02 identity",
        ),
    ];
    let mut manifest = Vec::new();
    for (file, edit, outcome, advisories, why) in quotes {
        let mut spec = Spec::default();
        edit(&mut spec);
        std::fs::write(dir.join(file), spec.quote(&keys, &base.pck_chain))?;
        let valid = outcome.chars().next().is_some_and(char::is_uppercase);
        manifest.push(if valid {
            json!({ "file": file, "now": NOW, "expect": "valid", "tcb_status": outcome,
                    "advisory_ids": advisories, "why": why })
        } else {
            json!({ "file": file, "now": NOW, "expect": "reject", "reject_kind": outcome, "why": why })
        });
    }
    let manifest = json!({
        "root": "root_ca.der",
        "collateral": "collateral.json",
        "quotes": manifest,
    });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
