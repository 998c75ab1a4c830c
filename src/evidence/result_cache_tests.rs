//! The result cache ([`EvidenceVerifier::with_result_cache`]) and the parsed-collateral cache on
//! the committed fixtures: a hit only for the exact same bytes and expectations, and only inside
//! the window of everything the result relied on; everywhere else the answer is the one a
//! verifier without caches gives.

use super::verify::tests::{fixture, fixture_verifier};
use super::{EvidenceError, EvidenceInput, EvidenceVerifier, Expectations, Verified};
use crate::cache::CacheCounts;
use crate::dstack::OsImagePolicy;

const TDX_NOW: u64 = 1_750_000_000;
const NITRO_NOW: u64 = 1_750_000_060;
/// `valid_bindings.cbor`'s signed timestamp, in ms.
const NITRO_TIMESTAMP_MS: u64 = 1_750_000_000_123;

fn cached() -> EvidenceVerifier {
    fixture_verifier().with_result_cache(16, 1 << 20)
}

fn counts(verifier: &EvidenceVerifier, name: &str) -> CacheCounts {
    verifier
        .cache_stats()
        .into_iter()
        .find(|(cache, _)| *cache == name)
        .map(|(_, counts)| counts)
        .unwrap()
}

fn results(verifier: &EvidenceVerifier) -> (u64, u64) {
    let counts = counts(verifier, "evidence_results");
    (counts.hits, counts.misses)
}

fn tdx_input<'a>(quote: &'a [u8], collateral: &'a [u8]) -> EvidenceInput<'a> {
    EvidenceInput {
        evidence: quote,
        collateral: Some(collateral),
        ..EvidenceInput::default()
    }
}

fn nitro_input(document: &[u8]) -> EvidenceInput<'_> {
    EvidenceInput {
        evidence: document,
        ..EvidenceInput::default()
    }
}

/// What a verifier without any warm cache says: the reference for every answer of a cached one.
fn fresh(input: &EvidenceInput<'_>, now: u64, expect: &Expectations) -> Result<Verified, String> {
    fixture_verifier()
        .verify(input, now, expect)
        .map_err(describe)
}

fn describe(error: EvidenceError) -> String {
    format!("{}: {error}", error.kind().as_str())
}

fn check(
    verifier: &EvidenceVerifier,
    input: &EvidenceInput<'_>,
    now: u64,
    expect: &Expectations,
) -> Result<Verified, String> {
    verifier.verify(input, now, expect).map_err(describe)
}

/// The last second the fixture TDX quote verifies with the fixture collateral.
fn tdx_valid_until(quote: &[u8], collateral: &[u8]) -> u64 {
    let (_, valid_until) = fixture_verifier()
        .verify_in_full(
            &tdx_input(quote, collateral),
            TDX_NOW,
            &Expectations::default(),
        )
        .unwrap();
    valid_until.expect("TDX results are cacheable")
}

#[test]
fn off_by_default_and_a_repeat_is_a_hit_equal_to_the_full_verification() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let input = tdx_input(&quote, &collateral);
    let expect = Expectations::default();

    let plain = fixture_verifier();
    for _ in 0..2 {
        plain.verify(&input, TDX_NOW, &expect).unwrap();
    }
    assert_eq!(results(&plain), (0, 0), "off unless asked for");

    let verifier = cached();
    let first = verifier.verify(&input, TDX_NOW, &expect).unwrap();
    let qe_lookups = counts(&verifier, "tdx_qe");
    let second = verifier.verify(&input, TDX_NOW + 60, &expect).unwrap();
    assert_eq!(first, second);
    assert_eq!(Ok(second), fresh(&input, TDX_NOW + 60, &expect));
    assert_eq!(results(&verifier), (1, 1));
    // The hit did no TDX work at all.
    assert_eq!(counts(&verifier, "tdx_qe"), qe_lookups);
    // Clones share the cache.
    verifier.clone().verify(&input, TDX_NOW, &expect).unwrap();
    assert_eq!(results(&verifier), (2, 1));
}

#[test]
fn a_hit_past_the_collateral_window_gives_the_exact_expired_error() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let input = tdx_input(&quote, &collateral);
    let expect = Expectations::default();
    let until = tdx_valid_until(&quote, &collateral);
    let verifier = cached();
    verifier.verify(&input, TDX_NOW, &expect).unwrap();

    // The last second of the window is still a hit.
    verifier.verify(&input, until, &expect).unwrap();
    assert_eq!(results(&verifier), (1, 1));

    // One second later the cached result is not used: the full verification's own error.
    let expired = check(&verifier, &input, until + 1, &expect).unwrap_err();
    assert_eq!(Err(expired.clone()), fresh(&input, until + 1, &expect));
    assert!(expired.starts_with("collateral_expired: "), "{expired}");
    assert_eq!(results(&verifier), (1, 2));
    // And it stays an error, however often it is asked.
    assert_eq!(check(&verifier, &input, until + 1, &expect), Err(expired));
    assert_eq!(results(&verifier), (1, 3));
}

#[test]
fn a_hit_is_never_used_before_the_instant_it_was_verified_at() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let input = tdx_input(&quote, &collateral);
    let expect = Expectations::default();
    let verifier = cached();
    verifier.verify(&input, TDX_NOW, &expect).unwrap();
    // A second earlier: verified in full again (and valid then too).
    verifier.verify(&input, TDX_NOW - 1, &expect).unwrap();
    assert_eq!(results(&verifier), (0, 2));
    // Long before the CRLs were issued: verified in full, and refused as not yet valid.
    let early = check(&verifier, &input, 1_000_000_000, &expect).unwrap_err();
    assert_eq!(Err(early.clone()), fresh(&input, 1_000_000_000, &expect));
    assert!(early.starts_with("not_yet_valid: "), "{early}");
    assert_eq!(results(&verifier), (0, 3));
}

#[test]
fn a_different_nonce_misses_and_is_a_nonce_mismatch() {
    let document = fixture("nitro/valid_bindings.cbor");
    let input = nitro_input(&document);
    let bound = Expectations {
        nonce: Some(b"fixture-nonce".to_vec()),
        ..Expectations::default()
    };
    let verifier = cached();
    verifier.verify(&input, NITRO_NOW, &bound).unwrap();
    verifier.verify(&input, NITRO_NOW, &bound).unwrap();
    assert_eq!(results(&verifier), (1, 1));

    let other = Expectations {
        nonce: Some(b"fixture-noncf".to_vec()),
        ..Expectations::default()
    };
    let mismatch = check(&verifier, &input, NITRO_NOW, &other).unwrap_err();
    assert_eq!(Err(mismatch.clone()), fresh(&input, NITRO_NOW, &other));
    assert!(mismatch.starts_with("binding_mismatch: "), "{mismatch}");
    assert!(mismatch.contains("nonce"), "{mismatch}");
    assert_eq!(results(&verifier), (1, 2));
}

/// Every expectation is part of the key: a result cached under one set of expectations never
/// answers another; the answer is the full verification's.
#[test]
fn every_expectation_is_keyed() {
    let document = fixture("nitro/valid_bindings.cbor");
    let input = nitro_input(&document);
    let base = Expectations {
        nonce: Some(b"fixture-nonce".to_vec()),
        user_data: Some(vec![0xab; 64]),
        public_key: Some(vec![0x04; 65]),
        ..Expectations::default()
    };
    let variants = [
        Expectations {
            nonce: None,
            ..base.clone()
        },
        Expectations {
            user_data: Some(vec![0xab; 63]),
            ..base.clone()
        },
        Expectations {
            public_key: Some(vec![0x05; 65]),
            ..base.clone()
        },
        Expectations {
            report_data: Some(vec![0xab; 64]),
            ..base.clone()
        },
        Expectations {
            report_data: Some(vec![0xac; 64]),
            ..base.clone()
        },
        Expectations {
            max_age_secs: Some(3600),
            ..base.clone()
        },
        Expectations {
            max_age_secs: Some(1),
            ..base.clone()
        },
        Expectations {
            allow_debug: true,
            ..base.clone()
        },
        Expectations {
            os_image: Some(OsImagePolicy { allow_lite: false }),
            ..base.clone()
        },
    ];
    let verifier = cached();
    verifier.verify(&input, NITRO_NOW, &base).unwrap();
    for (index, variant) in variants.iter().enumerate() {
        let (hits, misses) = results(&verifier);
        assert_eq!(
            check(&verifier, &input, NITRO_NOW, variant),
            fresh(&input, NITRO_NOW, variant),
            "variant {index}: {variant:?}"
        );
        assert_eq!(results(&verifier), (hits, misses + 1), "variant {index}");
    }
    // The mismatching ones failed as the full verification does.
    assert!(check(&verifier, &input, NITRO_NOW, &variants[1])
        .unwrap_err()
        .starts_with("binding_mismatch: "));
    assert!(check(&verifier, &input, NITRO_NOW, &variants[6])
        .unwrap_err()
        .starts_with("stale_document: "));
}

#[test]
fn a_hit_past_the_maximum_age_is_a_stale_document() {
    let document = fixture("nitro/valid_bindings.cbor");
    let input = nitro_input(&document);
    let expect = Expectations {
        max_age_secs: Some(120),
        ..Expectations::default()
    };
    let last_fresh = (NITRO_TIMESTAMP_MS + 120_000) / 1000;
    let verifier = cached();
    verifier.verify(&input, NITRO_NOW, &expect).unwrap();
    verifier.verify(&input, last_fresh, &expect).unwrap();
    assert_eq!(results(&verifier), (1, 1));
    let stale = check(&verifier, &input, last_fresh + 1, &expect).unwrap_err();
    assert_eq!(Err(stale.clone()), fresh(&input, last_fresh + 1, &expect));
    assert!(stale.starts_with("stale_document: "), "{stale}");
    assert_eq!(results(&verifier), (1, 2));
}

#[test]
fn a_hit_past_the_nitro_chain_is_the_chain_error() {
    let document = fixture("nitro/valid.cbor");
    let input = nitro_input(&document);
    let expect = Expectations::default();
    let (_, until) = fixture_verifier()
        .verify_in_full(&input, NITRO_NOW, &expect)
        .unwrap();
    let until = until.unwrap();
    let verifier = cached();
    verifier.verify(&input, NITRO_NOW, &expect).unwrap();
    verifier.verify(&input, until, &expect).unwrap();
    let expired = check(&verifier, &input, until + 1, &expect).unwrap_err();
    assert_eq!(Err(expired.clone()), fresh(&input, until + 1, &expect));
    assert!(expired.starts_with("expired: "), "{expired}");
    assert_eq!(results(&verifier), (1, 2));
}

/// One flipped byte anywhere in the evidence or its collateral is a miss, answered by the full
/// verification, even where the byte is not signed.
#[test]
fn one_flipped_byte_in_evidence_or_collateral_misses() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let expect = Expectations::default();
    let verifier = cached();
    verifier
        .verify(&tdx_input(&quote, &collateral), TDX_NOW, &expect)
        .unwrap();
    let mut misses = 1;
    for position in [0, 48, 200, quote.len() / 2, quote.len() - 1] {
        let mut flipped = quote.clone();
        flipped[position] ^= 1;
        let input = tdx_input(&flipped, &collateral);
        assert_eq!(
            check(&verifier, &input, TDX_NOW, &expect),
            fresh(&input, TDX_NOW, &expect),
            "quote byte {position}"
        );
        misses += 1;
        assert_eq!(results(&verifier), (0, misses), "quote byte {position}");
    }
    // The collateral: a byte inside the TCB Info text (a signature failure) and trailing
    // whitespace (the same collateral, still a miss).
    let tcb_info = collateral
        .windows(9)
        .position(|window| window == b"issueDate")
        .unwrap();
    let mut changed = collateral.clone();
    changed[tcb_info] ^= 0x20;
    let mut padded = collateral.clone();
    padded.push(b' ');
    for other in [changed, padded] {
        let input = tdx_input(&quote, &other);
        assert_eq!(
            check(&verifier, &input, TDX_NOW, &expect),
            fresh(&input, TDX_NOW, &expect)
        );
        misses += 1;
        assert_eq!(results(&verifier), (0, misses));
    }
    // A companion given or not is part of the key too: an empty event log is not no event log.
    let with_log = EvidenceInput {
        event_log: Some(b"[]"),
        ..tdx_input(&quote, &collateral)
    };
    assert_eq!(
        check(&verifier, &with_log, TDX_NOW, &expect).is_ok(),
        fresh(&with_log, TDX_NOW, &expect).is_ok()
    );
    assert_eq!(results(&verifier), (0, misses + 1));
}

#[test]
fn failures_are_never_cached_and_a_new_configuration_starts_empty() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let input = tdx_input(&quote, &collateral);
    let expect = Expectations::default();
    let verifier = cached();
    let late = 4_000_000_000;
    for _ in 0..2 {
        assert!(verifier.verify(&input, late, &expect).is_err());
    }
    assert_eq!(results(&verifier), (0, 2));
    verifier.verify(&input, TDX_NOW, &expect).unwrap();
    let reconfigured = verifier
        .clone()
        .with_os_image_policy(OsImagePolicy { allow_lite: false });
    reconfigured.verify(&input, TDX_NOW, &expect).unwrap();
    assert_eq!(results(&reconfigured), (0, 1));
    assert_eq!(results(&verifier), (0, 3), "the original kept its own");
    // Zero entries or bytes: off.
    for off in [
        fixture_verifier().with_result_cache(0, 1 << 20),
        fixture_verifier().with_result_cache(16, 0),
    ] {
        off.verify(&input, TDX_NOW, &expect).unwrap();
        assert_eq!(results(&off), (0, 0));
    }
}

/// Collateral JSON seen before is not parsed again; a changed byte is parsed (and verified) anew.
#[test]
fn collateral_json_is_parsed_once_per_distinct_bytes() {
    let (quote, collateral) = (fixture("tdx/quote_v4.bin"), fixture("tdx/collateral.json"));
    let expect = Expectations::default();
    let verifier = fixture_verifier();
    let parsed = |verifier: &EvidenceVerifier| {
        let counts = counts(verifier, "tdx_collateral_json");
        (counts.hits, counts.misses)
    };
    for _ in 0..3 {
        verifier
            .verify(&tdx_input(&quote, &collateral), TDX_NOW, &expect)
            .unwrap();
    }
    assert_eq!(parsed(&verifier), (2, 1));

    // The signature hex of the QE Identity, one digit changed: parsed anew, and refused.
    let signature = collateral
        .windows(23)
        .position(|window| window == b"\"qe_identity_signature\"")
        .unwrap();
    let digit = signature
        + collateral[signature + 23..]
            .iter()
            .position(u8::is_ascii_hexdigit)
            .unwrap()
        + 23;
    let mut changed = collateral.clone();
    changed[digit] = if changed[digit] == b'0' { b'1' } else { b'0' };
    let input = tdx_input(&quote, &changed);
    let refused = check(&verifier, &input, TDX_NOW, &expect).unwrap_err();
    assert_eq!(Err(refused.clone()), fresh(&input, TDX_NOW, &expect));
    assert!(refused.starts_with("signature: "), "{refused}");
    assert_eq!(parsed(&verifier), (2, 2));
    // Collateral that does not parse is not kept: parsed (and refused) each time.
    for _ in 0..2 {
        let err = check(&verifier, &tdx_input(&quote, b"{}"), TDX_NOW, &expect).unwrap_err();
        assert!(err.starts_with("collateral_invalid: "), "{err}");
    }
    assert_eq!(parsed(&verifier), (2, 4));
}
