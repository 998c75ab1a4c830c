//! Conformance on the real samples: every `expected.json` entry with TDX collateral verifies at its
//! `now` with the expected TCB status, advisories and PPID, fails at the documented times, and
//! fails the quote signature when any REPORTDATA byte flips.

use crate::support::samples;
use crate::support::tdx as tdx_support;

use tdx_support::{sample_quote, tdx_entries};
use tee_verifier::tdx::{Collateral, TdxPolicy, TdxVerifier};

/// REPORTDATA in a v4 quote.
const REPORT_DATA: std::ops::Range<usize> = 568..632;

struct Case {
    file: String,
    quote: Vec<u8>,
    collateral: Collateral,
    now: u64,
    entry: serde_json::Value,
}

fn cases() -> Vec<Case> {
    let dir = samples::samples_dir();
    let entries = samples::expected_entries(&dir);
    let cases: Vec<Case> = tdx_entries(&entries)
        .into_iter()
        .filter(|e| e["collateral"].is_string())
        .map(|e| {
            let collateral = std::fs::read(dir.join(e["collateral"].as_str().unwrap())).unwrap();
            Case {
                file: e["file"].as_str().unwrap().to_owned(),
                quote: sample_quote(&dir, e),
                collateral: Collateral::from_json(&collateral).unwrap(),
                now: e["now"].as_u64().expect("now"),
                entry: e.clone(),
            }
        })
        .collect();
    assert!(
        cases.len() >= 2,
        "expected.json lost its TDX entries with collateral"
    );
    cases
}

/// `now=<secs> must fail (<reason>)` clauses of an entry's `why`.
fn documented_failures(why: &str) -> Vec<(u64, String)> {
    why.split("now=")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let reason = rest.split_once("must fail (")?.1.split_once(')')?.0;
            Some((digits.parse().ok()?, reason.to_owned()))
        })
        .collect()
}

#[test]
fn samples_verify_with_expected_appraisal() {
    let verifier = TdxVerifier::new();
    for case in cases() {
        assert_eq!(case.entry["expect"], "valid", "{}", case.file);
        // Cold, then warm from the caches: the same answer.
        for pass in ["cold", "warm"] {
            let verified = verifier
                .verify(
                    &case.quote,
                    &case.collateral,
                    case.now,
                    &TdxPolicy::default(),
                )
                .unwrap_or_else(|e| panic!("{} ({pass}): {} [{e}]", case.file, e.kind()));
            assert_eq!(
                verified.tcb_status.as_str(),
                case.entry["tcb_status"],
                "{}",
                case.file
            );
            let advisories: Vec<String> =
                serde_json::from_value(case.entry["advisory_ids"].clone()).unwrap();
            assert_eq!(verified.advisory_ids, advisories, "{}", case.file);
            assert_eq!(
                hex::encode(&verified.ppid),
                case.entry["ppid"],
                "{}",
                case.file
            );
            assert!(verified.valid_until >= case.now, "{}", case.file);
        }
    }
}

#[test]
fn samples_fail_at_the_documented_times() {
    let verifier = TdxVerifier::new();
    let mut checked = 0;
    for case in cases() {
        let why = case.entry["why"].as_str().unwrap_or_default();
        for (now, reason) in documented_failures(why) {
            let err = verifier
                .verify(&case.quote, &case.collateral, now, &TdxPolicy::default())
                .expect_err(&format!("{} must fail at {now} ({reason})", case.file));
            let expected_kind = if reason.contains("not yet valid") {
                "collateral_not_yet_valid"
            } else {
                assert!(
                    reason.contains("expired"),
                    "unknown documented reason {reason:?}"
                );
                "collateral_expired"
            };
            assert_eq!(
                err.kind().as_str(),
                expected_kind,
                "{} at {now}: {err}",
                case.file
            );
            checked += 1;
        }
    }
    if !cases().is_empty() {
        assert!(
            checked >= 2,
            "expected.json documents no failing times any more"
        );
    }
}

#[test]
fn the_sample_collateral_window_is_exact() {
    // dcap-qvl's sample: "collateral window 1750329147..1752919235".
    let verifier = TdxVerifier::new();
    for case in cases()
        .into_iter()
        .filter(|c| c.file.ends_with("dcap-qvl_tdx_quote.bin"))
    {
        let verify =
            |now| verifier.verify(&case.quote, &case.collateral, now, &TdxPolicy::default());
        verify(1_750_329_147).unwrap();
        verify(1_752_919_235).unwrap();
        assert_eq!(
            verify(1_750_329_146).unwrap_err().kind().as_str(),
            "collateral_not_yet_valid"
        );
        assert_eq!(
            verify(1_752_919_236).unwrap_err().kind().as_str(),
            "collateral_expired"
        );
        assert_eq!(verify(1_752_919_235).unwrap().valid_until, 1_752_919_235);
    }
}

#[test]
fn flipping_any_report_data_byte_fails_the_quote_signature() {
    let verifier = TdxVerifier::new();
    for case in cases() {
        for index in REPORT_DATA {
            let mut quote = case.quote.clone();
            quote[index] ^= 0x01;
            let err = verifier
                .verify(&quote, &case.collateral, case.now, &TdxPolicy::default())
                .expect_err(&format!("{}: REPORTDATA byte {index} flipped", case.file));
            assert_eq!(err.kind().as_str(), "signature", "{}: {err}", case.file);
        }
    }
}

#[test]
fn the_other_samples_collateral_does_not_fit() {
    let cases = cases();
    let verifier = TdxVerifier::new();
    for case in &cases {
        for other in cases.iter().filter(|o| o.file != case.file) {
            let result = verifier.verify(
                &case.quote,
                &other.collateral,
                case.now,
                &TdxPolicy::default(),
            );
            assert!(
                result.is_err(),
                "{} verified with {}'s collateral",
                case.file,
                other.file
            );
        }
    }
}

#[test]
fn a_quote_under_another_root_is_untrusted_with_genuine_collateral() {
    let verifier = TdxVerifier::new();
    let keys = tdx_support::Keys::generate();
    for case in cases() {
        let foreign = tdx_support::Spec::default().build(&keys);
        let err = verifier
            .verify(
                &foreign.quote,
                &case.collateral,
                case.now,
                &TdxPolicy::default(),
            )
            .unwrap_err();
        assert_eq!(
            err.kind().as_str(),
            "untrusted_root",
            "{}: {err}",
            case.file
        );
    }
}
