//! Verification against a generated Intel-like PKI: every acceptance path and every rejection of
//! tdx.md §2, each asserting its exact error kind, plus the cache's time semantics.

use crate::support::tdx as tdx_support;

use serde_json::Value;
use tdx_support::{Built, Keys, Spec, DAY, NOW, SEPT_VE_DISABLE};
use tee_verifier::tdx::{Collateral, TdxError, TdxPolicy, TdxVerifier, VerifiedQuote};

struct Bench {
    keys: Keys,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            keys: Keys::generate(),
        }
    }

    fn build(&self, edit: impl FnOnce(&mut Spec)) -> Built {
        let mut spec = Spec::default();
        edit(&mut spec);
        spec.build(&self.keys)
    }

    fn verify(&self, edit: impl FnOnce(&mut Spec)) -> Result<VerifiedQuote, TdxError> {
        verify_built(&self.build(edit), NOW, &TdxPolicy::default())
    }

    fn kind(&self, edit: impl FnOnce(&mut Spec)) -> &'static str {
        match self.verify(edit) {
            Ok(verified) => panic!("accepted with status {}", verified.tcb_status.as_str()),
            Err(err) => {
                eprintln!("{}: {err}", err.kind());
                err.kind().as_str()
            }
        }
    }
}

fn verify_built(built: &Built, now: u64, policy: &TdxPolicy) -> Result<VerifiedQuote, TdxError> {
    let collateral = Collateral::from_json(&built.collateral_json())?;
    TdxVerifier::with_root_der(&built.root_der).verify(&built.quote, &collateral, now, policy)
}

fn svn(prefix: &[u8]) -> [u8; 16] {
    let mut all = [0u8; 16];
    all[..prefix.len()].copy_from_slice(prefix);
    all
}

#[test]
fn verifier_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync>() {}
    assert_traits::<TdxVerifier>();
}

#[test]
fn the_default_fixture_verifies_up_to_date() {
    let bench = Bench::new();
    let verified = bench.verify(|_| {}).unwrap();
    assert_eq!(verified.tcb_status.as_str(), "UpToDate");
    assert!(verified.advisory_ids.is_empty());
    assert_eq!(verified.ppid, [0x81; 16]);
    assert_eq!(verified.fmspc, tdx_support::FMSPC);
    assert_eq!(verified.pck.pce_svn, 13);
    assert_eq!(verified.qe_tcb_status, "UpToDate");
    assert_eq!(verified.tcb_evaluation_data_number, 17);
    assert_eq!(verified.quote.body.report_data, [0x42; 64]);
    // The earliest bound: TCB Info / QE Identity nextUpdate at +29 days.
    assert_eq!(verified.valid_until, NOW + 29 * 86_400);
}

#[test]
fn v5_quotes_of_every_td_body_verify() {
    let bench = Bench::new();
    for body_type in [2, 3, 4] {
        let verified = bench
            .verify(|s| {
                s.td.version = 5;
                s.td.body_type = body_type;
            })
            .unwrap_or_else(|e| panic!("body type {body_type}: {} {e}", e.kind()));
        assert_eq!(verified.quote.version(), 5);
        assert_eq!(
            verified.tcb_status.as_str(),
            "UpToDate",
            "body type {body_type}"
        );
    }
}

#[test]
fn statuses_and_advisories_are_returned_as_data() {
    let bench = Bench::new();
    // Platform PCESVN 6 meets only the OutOfDate level.
    let verified = bench.verify(|s| s.sgx.pce_svn = 6).unwrap();
    assert_eq!(verified.tcb_status.as_str(), "OutOfDate");
    assert_eq!(verified.advisory_ids, ["INTEL-SA-00106", "INTEL-SA-00115"]);
    assert_eq!(verified.platform_tcb_status, "OutOfDate");

    // The QE level alone is OutOfDate: it converges into the platform status.
    let verified = bench.verify(|s| s.qe.isv_svn = 3).unwrap();
    assert_eq!(verified.tcb_status.as_str(), "OutOfDate");
    assert_eq!(verified.advisory_ids, ["INTEL-SA-00615"]);
    assert_eq!(
        (
            verified.platform_tcb_status.as_str(),
            verified.qe_tcb_status.as_str()
        ),
        ("UpToDate", "OutOfDate")
    );

    // The TDX module (TDX_01, ISVSVN 2) is OutOfDate.
    let verified = bench
        .verify(|s| s.td.tee_tcb_svn = svn(&[2, 1, 3]))
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "OutOfDate");
    assert_eq!(verified.advisory_ids, ["INTEL-SA-01036"]);

    // A status with advisories even when UpToDate must come through as is.
    let verified = bench
        .verify(|s| {
            s.tcb_info["tcbLevels"][0]["advisoryIDs"] = serde_json::json!(["INTEL-SA-09999"])
        })
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "UpToDate");
    assert_eq!(verified.advisory_ids, ["INTEL-SA-09999"]);

    for status in [
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
    ] {
        let verified = bench
            .verify(|s| s.tcb_info["tcbLevels"][0]["tcbStatus"] = status.into())
            .unwrap();
        assert_eq!(verified.tcb_status.as_str(), status);
    }
}

#[test]
fn td15_current_tcb_is_appraised() {
    let bench = Bench::new();
    let td15 = |s: &mut Spec| {
        s.td.version = 5;
        s.td.body_type = 3;
    };
    // Launched on an out-of-date module, updated since: relaunch advised.
    let verified = bench
        .verify(|s| {
            td15(s);
            s.td.tee_tcb_svn = svn(&[2, 1, 3]);
            s.td.tee_tcb_svn2 = svn(&[6, 1, 3]);
        })
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "TDRelaunchAdvised");
    assert_eq!(verified.advisory_ids, ["INTEL-SA-01036"]);
    // Both out of date: no relaunch helps.
    let verified = bench
        .verify(|s| {
            td15(s);
            s.td.tee_tcb_svn = svn(&[2, 1, 3]);
            s.td.tee_tcb_svn2 = svn(&[2, 1, 3]);
        })
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "OutOfDate");
    // A current TCB that meets no level fails even if the launch TCB does.
    assert_eq!(
        bench.kind(|s| {
            td15(s);
            s.td.tee_tcb_svn2 = svn(&[1, 1, 3]);
        }),
        "tcb_level_not_found"
    );
}

#[test]
fn revoked_levels_are_errors() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| {
            s.set_platform_svns(svn(&[1, 1, 1, 1, 1, 1, 0, 1]));
            s.sgx.pce_svn = 4;
        }),
        "revoked"
    );
    assert_eq!(
        bench.kind(|s| s.qe_identity["tcbLevels"][0]["tcbStatus"] = "Revoked".into()),
        "revoked"
    );
    assert_eq!(
        bench.kind(
            |s| s.tcb_info["tdxModuleIdentities"][1]["tcbLevels"][0]["tcbStatus"] =
                "Revoked".into()
        ),
        "revoked"
    );
}

#[test]
fn unmatched_tcb_levels_are_errors() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.set_platform_svns([0; 16])),
        "tcb_level_not_found"
    );
    assert_eq!(bench.kind(|s| s.sgx.pce_svn = 2), "tcb_level_not_found");
    // Module ISVSVN below every TDX_01 level.
    assert_eq!(
        bench.kind(|s| s.td.tee_tcb_svn = svn(&[1, 1, 3])),
        "tcb_level_not_found"
    );
    // No TDX_02 module identity.
    assert_eq!(
        bench.kind(|s| s.td.tee_tcb_svn = svn(&[6, 2, 3])),
        "tcb_level_not_found"
    );
    // Without a module version the TDX components 0 and 1 count: 0 < 5.
    assert_eq!(
        bench.kind(|s| s.td.tee_tcb_svn = svn(&[0, 0, 3])),
        "tcb_level_not_found"
    );
    // A TDX component the platform level requires.
    assert_eq!(
        bench.kind(|s| s.td.tee_tcb_svn = svn(&[6, 1, 0])),
        "tcb_level_not_found"
    );
    // QE ISVSVN below every QE Identity level.
    assert_eq!(bench.kind(|s| s.qe.isv_svn = 1), "tcb_level_not_found");
}

#[test]
fn tdx_module_identity_is_enforced() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.td.mr_signer_seam = [1; 48]),
        "tdx_module_mismatch"
    );
    assert_eq!(
        bench.kind(|s| s.td.seam_attributes = [0, 0, 0, 0, 0, 0, 0, 0x80]),
        "tdx_module_mismatch"
    );
    // Module version 0: the base tdxModule applies.
    assert_eq!(
        bench.kind(|s| {
            s.td.tee_tcb_svn = svn(&[5, 0, 3]);
            s.td.mr_signer_seam = [1; 48];
        }),
        "tdx_module_mismatch"
    );
    bench
        .verify(|s| s.td.tee_tcb_svn = svn(&[5, 0, 3]))
        .unwrap();
}

#[test]
fn td_attribute_policy() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.td.td_attributes = SEPT_VE_DISABLE | 1),
        "td_attributes"
    );
    let debug = bench.build(|s| s.td.td_attributes = SEPT_VE_DISABLE | 1);
    let verified = verify_built(&debug, NOW, &TdxPolicy { allow_debug: true }).unwrap();
    assert_eq!(verified.tcb_status.as_str(), "UpToDate");
    assert_eq!(bench.kind(|s| s.td.td_attributes = 0), "td_attributes");
    assert_eq!(
        bench.kind(|s| s.td.td_attributes = SEPT_VE_DISABLE | 1 << 29),
        "td_attributes"
    );
    assert_eq!(
        bench.kind(|s| s.td.td_attributes = SEPT_VE_DISABLE | 1 << 40),
        "td_attributes"
    );
    assert_eq!(
        bench.kind(|s| {
            s.td.version = 5;
            s.td.body_type = 4;
            s.td.mr_service_td = [9; 48];
        }),
        "td_attributes"
    );
}

#[test]
fn signatures_are_checked() {
    let bench = Bench::new();
    // Quote signature: a REPORTDATA byte changed after signing.
    let mut built = bench.build(|_| {});
    built.quote[600] ^= 1;
    assert_eq!(
        verify_built(&built, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "signature"
    );
    // QE report signature: MRENCLAVE changed after signing (QE report starts at 770).
    let mut built = bench.build(|_| {});
    built.quote[770 + 64] ^= 1;
    assert_eq!(
        verify_built(&built, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "signature"
    );
    // The TCB Info / QE Identity text changed after signing, even by one space.
    for field in ["tcb_info", "qe_identity"] {
        let mut built = bench.build(|_| {});
        let text = built.collateral[field]
            .as_str()
            .unwrap()
            .replacen(',', ", ", 1);
        built.collateral[field] = Value::String(text);
        assert_eq!(
            verify_built(&built, NOW, &TdxPolicy::default())
                .unwrap_err()
                .kind()
                .as_str(),
            "signature",
            "{field}"
        );
    }
    // A signature of the wrong length.
    let mut built = bench.build(|_| {});
    built.collateral["tcb_info_signature"] = Value::String("00".repeat(63));
    assert_eq!(
        verify_built(&built, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "signature"
    );
}

#[test]
fn qe_report_must_bind_the_attestation_key() {
    let bench = Bench::new();
    let mut wrong = [0u8; 64];
    wrong[0] = 1;
    assert_eq!(
        bench.kind(|s| s.qe.report_data = Some(wrong)),
        "binding_mismatch"
    );
    // Correct hash but a non-zero upper half.
    let mut built = bench.build(|_| {});
    let quote = tee_verifier::tdx::Quote::parse(&built.quote).unwrap();
    let mut data = quote.signature_data.qe_report.report_data;
    data[40] = 1;
    built = bench.build(|s| s.qe.report_data = Some(data));
    assert_eq!(
        verify_built(&built, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "binding_mismatch"
    );
}

#[test]
fn qe_identity_is_matched() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.qe.mr_signer = [1; 32]),
        "qe_identity_mismatch"
    );
    assert_eq!(bench.kind(|s| s.qe.isv_prod_id = 1), "qe_identity_mismatch");
    assert_eq!(bench.kind(|s| s.qe.misc_select = 1), "qe_identity_mismatch");
    assert_eq!(
        bench.kind(|s| s.qe.attributes[1] = 1),
        "qe_identity_mismatch"
    );
    assert_eq!(
        bench.kind(|s| s.qe.attributes[0] = 0x13),
        "qe_identity_mismatch"
    );
    assert_eq!(
        bench.kind(|s| s.td.qe_vendor_id = [0; 16]),
        "qe_identity_mismatch"
    );
    // Masked-out bits do not count.
    bench.verify(|s| s.qe.attributes[9] = 0xff).unwrap();
    bench.verify(|s| s.qe.attributes[0] = 0x15).unwrap();
}

#[test]
fn certificates_are_checked_with_both_crls() {
    let bench = Bench::new();
    assert_eq!(bench.kind(|s| s.pck_crl.revoked.push(0x1234)), "revoked");
    assert_eq!(bench.kind(|s| s.root_crl.revoked.push(2)), "revoked");
    assert_eq!(bench.kind(|s| s.root_crl.revoked.push(3)), "revoked");
    assert_eq!(bench.kind(|s| s.pck_leaf.not_after = -1), "expired");
    assert_eq!(bench.kind(|s| s.pck_leaf.not_before = 1), "not_yet_valid");
    assert_eq!(bench.kind(|s| s.pck_ca.not_after = -1), "expired");
    assert_eq!(bench.kind(|s| s.tcb_signer.not_after = -1), "expired");
    assert_eq!(bench.kind(|s| s.tcb_signer.not_before = 1), "not_yet_valid");
    assert_eq!(
        bench.kind(|s| s.tcb_signer_under_pck_ca = true),
        "certificate_invalid"
    );
}

#[test]
fn crl_windows_are_checked() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.root_crl.next_update = -1),
        "collateral_expired"
    );
    assert_eq!(
        bench.kind(|s| s.pck_crl.next_update = -1),
        "collateral_expired"
    );
    assert_eq!(
        bench.kind(|s| s.root_crl.this_update = 1),
        "collateral_not_yet_valid"
    );
    assert_eq!(
        bench.kind(|s| s.pck_crl.this_update = 1),
        "collateral_not_yet_valid"
    );
}

#[test]
fn crls_must_come_from_the_right_issuer() {
    let bench = Bench::new();
    // The root CA CRL and the PCK CRL swapped: each is signed by the wrong CA.
    let mut built = bench.build(|_| {});
    let root_crl = built.collateral["root_ca_crl"].clone();
    built.collateral["root_ca_crl"] = built.collateral["pck_crl"].clone();
    built.collateral["pck_crl"] = root_crl;
    assert_eq!(
        verify_built(&built, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "collateral_invalid"
    );
}

fn document_of<'a>(spec: &'a mut Spec, name: &str) -> &'a mut Value {
    if name == "tcb_info" {
        &mut spec.tcb_info
    } else {
        &mut spec.qe_identity
    }
}

#[test]
fn collateral_document_windows_are_checked() {
    let bench = Bench::new();
    for document in ["tcb_info", "qe_identity"] {
        assert_eq!(
            bench.kind(|s| document_of(s, document)["issueDate"] = tdx_support::date(1).into()),
            "collateral_not_yet_valid",
            "{document}"
        );
        assert_eq!(
            bench.kind(|s| document_of(s, document)["nextUpdate"] = tdx_support::date(-1).into()),
            "collateral_expired",
            "{document}"
        );
        assert_eq!(
            bench.kind(|s| document_of(s, document)["issueDate"] = "19 June 2025".into()),
            "collateral_invalid",
            "{document}"
        );
    }
}

#[test]
fn the_root_is_pinned() {
    let bench = Bench::new();
    let built = bench.build(|_| {});
    let collateral = Collateral::from_json(&built.collateral_json()).unwrap();
    let err = TdxVerifier::new()
        .verify(&built.quote, &collateral, NOW, &TdxPolicy::default())
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "untrusted_root");
    let other = Bench::new().build(|_| {});
    let err = TdxVerifier::with_root_der(&other.root_der)
        .verify(&built.quote, &collateral, NOW, &TdxPolicy::default())
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "untrusted_root");
}

#[test]
fn collateral_must_belong_to_the_platform() {
    let bench = Bench::new();
    assert_eq!(
        bench.kind(|s| s.tcb_info["fmspc"] = "00606A000000".into()),
        "collateral_invalid"
    );
    assert_eq!(bench.kind(|s| s.sgx.pce_id = [0, 1]), "collateral_invalid");
    assert_eq!(
        bench.kind(|s| s.tcb_info["id"] = "SGX".into()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| s.tcb_info["version"] = 2.into()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| s.qe_identity["id"] = "QE".into()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| s.tcb_info["tcbLevels"][0]["tcbStatus"] = "Unknown".into()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| s.tcb_info["tcbLevels"][0]["tcbStatus"] = "TDRelaunchAdvised".into()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| s
            .tcb_info
            .as_object_mut()
            .unwrap()
            .remove("tdxModule")
            .map(|_| ())
            .unwrap()),
        "collateral_invalid"
    );
    assert_eq!(
        bench.kind(|s| {
            let levels = &mut s.tcb_info["tcbLevels"][0]["tcb"]["sgxtcbcomponents"];
            levels.as_array_mut().unwrap().pop();
        }),
        "collateral_invalid"
    );
}

#[test]
fn collateral_json_is_checked() {
    let bench = Bench::new();
    let built = bench.build(|_| {});
    let decode = |edit: &dyn Fn(&mut Value)| {
        let mut collateral = built.collateral.clone();
        edit(&mut collateral);
        Collateral::from_json(&serde_json::to_vec(&collateral).unwrap()).map(|_| ())
    };
    let kind = |edit: &dyn Fn(&mut Value)| decode(edit).unwrap_err().kind().as_str();
    assert_eq!(kind(&|c| c["pck_crl"] = "zz".into()), "collateral_invalid");
    assert_eq!(
        kind(&|c| drop(c.as_object_mut().unwrap().remove("tcb_info"))),
        "collateral_invalid"
    );
    assert_eq!(
        kind(&|c| c["tcb_info_issuer_chain"] = "no PEM here".into()),
        "collateral_invalid"
    );
    assert_eq!(
        kind(&|c| c["qe_identity_issuer_chain"] =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
        "collateral_invalid"
    );
    decode(&|c| c["pck_crl"] = format!("0x{}", c["pck_crl"].as_str().unwrap()).into()).unwrap();
    assert_eq!(
        Collateral::from_json(b"[]").unwrap_err().kind().as_str(),
        "collateral_invalid"
    );
    let huge = vec![b' '; tee_verifier::tdx::MAX_COLLATERAL_LEN + 1];
    assert_eq!(
        Collateral::from_json(&huge).unwrap_err().kind().as_str(),
        "malformed"
    );
}

#[test]
fn pck_chain_from_the_collateral() {
    let bench = Bench::new();
    // Encrypted-PPID quotes carry no chain: it must come from the collateral.
    assert_eq!(bench.kind(|s| s.cert_data_type = 3), "collateral_missing");
    let verified = bench
        .verify(|s| {
            s.cert_data_type = 3;
            s.pck_chain_in_collateral = true;
        })
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "UpToDate");
    bench.verify(|s| s.pck_chain_in_collateral = true).unwrap();
    // A collateral chain for another platform key fails the QE report signature.
    let mut built = bench.build(|s| s.pck_chain_in_collateral = true);
    let other = Bench::new().build(|_| {});
    built.collateral["pck_certificate_chain"] = tdx_support::pem(&other.pck_chain).into();
    let err = verify_built(&built, NOW, &TdxPolicy::default()).unwrap_err();
    assert_eq!(err.kind().as_str(), "untrusted_root");
}

#[test]
fn malformed_quotes_are_rejected() {
    let bench = Bench::new();
    let built = bench.build(|_| {});
    let collateral = Collateral::from_json(&built.collateral_json()).unwrap();
    let verifier = TdxVerifier::with_root_der(&built.root_der);
    for len in [0, 100, 700, 2000] {
        let err = verifier
            .verify(&built.quote[..len], &collateral, NOW, &TdxPolicy::default())
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "malformed", "{len}");
    }
    let mut bad_chain = bench.build(|_| {}).quote;
    let start = bad_chain.windows(5).position(|w| w == b"-----").unwrap();
    bad_chain[start + 40] = b'!';
    assert_eq!(
        verifier
            .verify(&bad_chain, &collateral, NOW, &TdxPolicy::default())
            .unwrap_err()
            .kind()
            .as_str(),
        "malformed"
    );
}

#[test]
fn cached_results_never_outlive_their_window() {
    let bench = Bench::new();
    let built = bench.build(|s| {
        s.pck_crl.next_update = 2 * DAY;
        s.pck_leaf.not_before = -DAY;
    });
    let collateral = Collateral::from_json(&built.collateral_json()).unwrap();
    let verifier = TdxVerifier::with_root_der(&built.root_der);
    let policy = TdxPolicy::default();
    let verify = |now: u64| verifier.verify(&built.quote, &collateral, now, &policy);
    verify(NOW).unwrap();
    verify(NOW).unwrap();
    assert_eq!(
        verify(NOW + 2 * DAY as u64).unwrap().valid_until,
        NOW + 2 * DAY as u64
    );
    assert_eq!(
        verify(NOW + 2 * DAY as u64 + 1)
            .unwrap_err()
            .kind()
            .as_str(),
        "collateral_expired"
    );
    verify(NOW).unwrap();
    // Before the TCB Info issue date and the PCK leaf's notBefore.
    assert_eq!(
        verify(NOW - DAY as u64 - 1).unwrap_err().kind().as_str(),
        "collateral_not_yet_valid"
    );
    verify(NOW - DAY as u64).unwrap();
    verify(NOW).unwrap();
}

#[test]
fn caches_are_keyed_by_everything_they_vouch_for() {
    let bench = Bench::new();
    let built = bench.build(|_| {});
    let verifier = TdxVerifier::with_root_der(&built.root_der);
    let policy = TdxPolicy::default();
    let good = Collateral::from_json(&built.collateral_json()).unwrap();
    verifier.verify(&built.quote, &good, NOW, &policy).unwrap();

    // Same quote, collateral with a tampered TCB Info: must not reuse the cached verification.
    let mut tampered = built.collateral.clone();
    tampered["tcb_info"] = tampered["tcb_info"]
        .as_str()
        .unwrap()
        .replace("UpToDate", "OutOfDate")
        .into();
    let tampered = Collateral::from_json(&serde_json::to_vec(&tampered).unwrap()).unwrap();
    assert_eq!(
        verifier
            .verify(&built.quote, &tampered, NOW, &policy)
            .unwrap_err()
            .kind()
            .as_str(),
        "signature"
    );

    // Same platform, a different QE report signature: not the cached one.
    let mut quote = built.quote.clone();
    quote[1154 + 10] ^= 1;
    assert_eq!(
        verifier
            .verify(&quote, &good, NOW, &policy)
            .unwrap_err()
            .kind()
            .as_str(),
        "signature"
    );

    // Another quote from the same platform and QE reuses the cached QE and verifies.
    let second = bench.build(|s| s.td.report_data = [7; 64]);
    let verified = verifier.verify(&second.quote, &good, NOW, &policy);
    // The PKI was re-issued for `second`, so its certificates differ: cold again, still valid
    // only under its own collateral.
    assert!(verified.is_err());
    let second_collateral = Collateral::from_json(&second.collateral_json()).unwrap();
    let verifier = TdxVerifier::with_root_der(&second.root_der);
    verifier
        .verify(&second.quote, &second_collateral, NOW, &policy)
        .unwrap();
}

#[test]
fn level_order_in_the_json_does_not_matter() {
    let bench = Bench::new();
    let reversed = |levels: &mut Value| levels.as_array_mut().unwrap().reverse();
    for pce_svn in [13, 6] {
        let expected = bench.verify(|s| s.sgx.pce_svn = pce_svn).unwrap();
        let shuffled = bench
            .verify(|s| {
                s.sgx.pce_svn = pce_svn;
                reversed(&mut s.tcb_info["tcbLevels"]);
                reversed(&mut s.tcb_info["tdxModuleIdentities"][1]["tcbLevels"]);
                reversed(&mut s.qe_identity["tcbLevels"]);
            })
            .unwrap();
        assert_eq!(
            (shuffled.tcb_status, shuffled.advisory_ids),
            (expected.tcb_status, expected.advisory_ids)
        );
    }
}
