//! Every byte region of the real samples, mutated: each valid Nitro document, the dstack SCALE
//! attestation, the TDX quote and its collateral, and the dstack quote report with its collateral
//! are cut into the regions of their formats (COSE/CBOR items, SCALE fields, quote fields, each
//! certificate's and CRL's DER parts inside PEM or hex, JSON members, event-log fields), and bytes
//! of every region are flipped and verified at the sample's `now`.
//!
//! A mutation must be rejected unless its region is one the format leaves unsigned; those regions
//! are listed below with the reason ([`Rule::Unsigned`], [`Rule::Claim`]). A mutation accepted
//! there must leave the report as it was or, in a host's claim, leave everything the platform
//! signed as it was.
//!
//! Bounded to run in well under a minute in a debug build: in each region, every byte when it is
//! short and otherwise evenly spaced positions (first and last included, more for longer regions,
//! see [`positions`]), each flipped three ways ([`FLIPS`]).

use crate::support::samples;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use base64::Engine as _;
use tee_verifier::evidence::{EvidenceInput, EvidenceVerifier, Expectations, Platform, Report};

mod binary;
mod text;

use binary::{cose_regions, quote_regions, scale_nitro_regions};
use text::{collateral_regions, quote_report_regions};

/// The library's verification API, used only here (its names change with the crate's
/// restructuring): the evidence with its collateral, verified at `now`; an error is its kind.
fn verify(
    verifier: &EvidenceVerifier,
    evidence: &[u8],
    collateral: Option<&[u8]>,
    now: u64,
) -> Result<Report, &'static str> {
    let input = EvidenceInput {
        evidence,
        collateral,
        ..EvidenceInput::default()
    };
    verifier
        .verify(&input, now, &Expectations::default())
        .map(|verified| verified.report())
        .map_err(|error| error.kind().as_str())
}

/// What a mutation in a region may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Signed, or framing whose change breaks the parse: every mutation is rejected.
    Reject,
    /// Not covered by any signature or binding: a mutation may be accepted, with the same report.
    Unsigned(&'static str),
    /// A host's claim: a mutation may be accepted and change what dstack reads from it, never
    /// what the platform signed.
    Claim(&'static str),
}

const OUTER_DER: Rule = Rule::Unsigned(
    "a certificate's or CRL's outer DER (SEQUENCE header, signatureAlgorithm, signature BIT STRING \
     header) is outside the signed TBS; non-canonical encodings are accepted until strict DER \
     (issue 15, phase 2) refuses them",
);
const TDX_PADDING: Rule = Rule::Unsigned(
    "bytes after the quote's signature data: real quotes carry unsigned padding, parsed by the \
     declared lengths and never read",
);
const COSE_UNPROTECTED: Rule = Rule::Unsigned(
    "the COSE unprotected header is not in the Sig_structure (RFC 9052 §4.4); NSM sends it empty",
);
const BOOT_EVENT_DESCRIPTION: Rule = Rule::Unsigned(
    "a boot-time (IMR 0-2) event's type, name and payload: only its digest is extended into the \
     RTMR, the rest describes it",
);
const SIGNATURE_DATA_LENGTH: Rule = Rule::Unsigned(
    "the quote's signature-data length is not signed: it must hold the signature data, whose own \
     fields delimit it, and fit in the quote; the rest is padding",
);
const PCK_CHAIN_SIZE: Rule = Rule::Unsigned(
    "the PCK chain's declared size is not signed: the certificates are covered by their own \
     signatures, and a size that still holds the whole chain changes nothing",
);
const PEM_TEXT: Rule = Rule::Unsigned(
    "PEM text outside the BEGIN/END lines (RFC 7468 explanatory text) and whitespace inside a \
     base64 body encode nothing",
);
const UNREAD_PCK_CRL_CHAIN: Rule = Rule::Unsigned(
    "pck_crl_issuer_chain is not read: the PCK CRL is verified against the CA that issued the \
     quote's own PCK leaf",
);
const OPTIONAL_REPORT_DATA: Rule = Rule::Unsigned(
    "the report's report_data member is an optional copy of the quote's REPORTDATA, compared with \
     it when present: under a misspelled key it is absent",
);
const VM_CONFIG: Rule = Rule::Claim(
    "vm_config is the host's claim, never signed: a TDX report marks its os_image_hash unbound, \
     and a Nitro one must name the measured image",
);
const NITRO_RUNTIME_EVENTS: Rule = Rule::Claim(
    "a Nitro attestation's runtime events are not hardware-bound (docs/dstack.md §3.6): dstack \
     binds the app id only through the PCRs",
);

/// The byte flips tried at each position.
const FLIPS: [u8; 3] = [0x01, 0x10, 0x80];

/// Bytes of one role in a sample: one span, or several (a certificate's TBS is cut by the
/// line breaks of its PEM).
#[derive(Clone, Debug)]
struct Region {
    name: String,
    spans: Vec<Range<usize>>,
    rule: Rule,
}

fn region(name: impl Into<String>, span: Range<usize>, rule: Rule) -> Region {
    Region {
        name: name.into(),
        spans: vec![span],
        rule,
    }
}

impl Region {
    fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.spans.iter().flat_map(Clone::clone)
    }

    fn shifted(self, by: impl Fn(usize) -> usize, prefix: &str) -> Region {
        Region {
            name: format!("{prefix}{}", self.name),
            spans: self.spans.iter().map(|s| by(s.start)..by(s.end)).collect(),
            rule: self.rule,
        }
    }
}

/// Positions mutated in a region: all of a short one, else evenly spaced ones (first and last
/// included), more for longer regions.
fn positions(region: &Region) -> Vec<usize> {
    let all: Vec<usize> = region.indices().collect();
    let len = all.len();
    let count = (6 + len / 128).min(len);
    if count <= 1 {
        return all.into_iter().take(count).collect();
    }
    (0..count)
        .map(|i| all[i * (len - 1) / (count - 1)])
        .collect()
}

/// Runs of the same name as one region each (in order of first appearance).
fn merged(runs: Vec<Region>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for run in runs {
        match out.iter_mut().find(|r| r.name == run.name) {
            Some(existing) => existing.spans.extend(run.spans),
            None => out.push(run),
        }
    }
    out
}

/// Verifies one mutation of a subject's bytes.
type VerifyFn = Box<dyn Fn(&[u8]) -> Result<Report, &'static str>>;

/// One sample's bytes and how to verify a mutation of them.
struct Subject {
    name: String,
    bytes: Vec<u8>,
    regions: Vec<Region>,
    verify: VerifyFn,
}

/// The valid samples of expected.json as mutation subjects.
fn subjects(dir: &std::path::Path, verifier: &EvidenceVerifier) -> Vec<Subject> {
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut out = Vec::new();
    for entry in samples::expected_entries(dir) {
        if entry["expect"] != "valid" {
            continue;
        }
        let file = entry["file"].as_str().expect("file").to_owned();
        let now = entry["now"].as_u64().expect("now");
        let collateral = entry["collateral"].as_str().map(&read);
        let mut raw = read(&file);
        let regions = match (entry["kind"].as_str(), entry["format"].as_str()) {
            (Some("nitro"), Some("base64")) => {
                raw = base64::engine::general_purpose::STANDARD
                    .decode(String::from_utf8(raw).unwrap().trim())
                    .expect("base64 sample");
                cose_regions(&raw, 0, "")
            }
            (Some("nitro"), _) => cose_regions(&raw, 0, ""),
            (Some("dstack-attestation-v0"), _) => scale_nitro_regions(&raw),
            (Some("tdx-quote"), _) => quote_regions(&raw),
            (Some("dstack-quote-report"), _) => {
                quote_report_regions(std::str::from_utf8(&raw).expect("UTF-8 report"))
            }
            other => panic!("{file}: no layout for {other:?}"),
        };
        let evidence = raw.clone();
        let fixed_collateral = collateral.clone();
        let v = verifier.clone();
        out.push(Subject {
            name: file.clone(),
            bytes: raw,
            regions,
            verify: Box::new(move |bytes| verify(&v, bytes, fixed_collateral.as_deref(), now)),
        });
        if let Some(collateral) = collateral {
            let text = String::from_utf8(collateral.clone()).expect("UTF-8 collateral");
            let v = verifier.clone();
            out.push(Subject {
                name: format!(
                    "{} (collateral of {file})",
                    entry["collateral"].as_str().unwrap()
                ),
                bytes: collateral,
                regions: collateral_regions(&text),
                verify: Box::new(move |bytes| verify(&v, &evidence, Some(bytes), now)),
            });
        }
    }
    out
}

/// What the platform signed, as reported: without dstack's reading of host-supplied data and,
/// for TDX, without the os_image_hash (the host's vm_config claim).
fn signed_part(report: &Report) -> Report {
    let mut report = report.clone();
    report.dstack = None;
    if report.platform == Platform::Tdx {
        report.os_image_hash = None;
    }
    report
}

#[derive(Default)]
struct Tally {
    mutations: usize,
    accepted_unsigned: BTreeMap<String, (usize, &'static str)>,
    violations: Vec<String>,
}

fn run(subject: &Subject, tally: &mut Tally) {
    let original = (subject.verify)(&subject.bytes)
        .unwrap_or_else(|kind| panic!("{}: the unmutated sample fails ({kind})", subject.name));
    // The regions cover every byte exactly once.
    let mut covered = vec![0u8; subject.bytes.len()];
    for r in &subject.regions {
        for i in r.indices() {
            covered[i] += 1;
        }
    }
    if let Some(i) = covered.iter().position(|c| *c != 1) {
        let names: Vec<&str> = subject
            .regions
            .iter()
            .filter(|r| r.indices().any(|j| j == i))
            .map(|r| r.name.as_str())
            .collect();
        panic!(
            "{}: byte {i} is in {} regions {names:?}",
            subject.name, covered[i]
        );
    }
    let mut mutated = subject.bytes.clone();
    for r in &subject.regions {
        for at in positions(r) {
            for flip in FLIPS {
                mutated[at] ^= flip;
                let outcome = (subject.verify)(&mutated);
                mutated[at] ^= flip;
                tally.mutations += 1;
                let Ok(report) = outcome else { continue };
                let what = format!("{}: {} byte {at} ^ {flip:#04x}", subject.name, r.name);
                let allowed = match r.rule {
                    Rule::Reject => {
                        tally.violations.push(format!("{what}: accepted"));
                        continue;
                    }
                    Rule::Unsigned(reason) => (report == original).then_some(reason),
                    Rule::Claim(reason) => {
                        (signed_part(&report) == signed_part(&original)).then_some(reason)
                    }
                };
                match allowed {
                    Some(reason) => {
                        tally
                            .accepted_unsigned
                            .entry(format!("{}: {}", subject.name, r.name))
                            .or_insert((0, reason))
                            .0 += 1;
                    }
                    None => tally
                        .violations
                        .push(format!("{what}: accepted with another report")),
                }
            }
        }
    }
}

#[test]
fn no_mutation_of_a_signed_byte_is_accepted() {
    let dir = samples::samples_dir();
    let verifier = EvidenceVerifier::default();
    let start = Instant::now();
    let subjects = subjects(&dir, &verifier);
    assert!(subjects.len() >= 9, "expected.json lost valid samples");
    let mut tally = Tally::default();
    for subject in &subjects {
        let before = tally.mutations;
        let timer = Instant::now();
        run(subject, &mut tally);
        println!(
            "{}: {} regions, {} mutations, {:?}",
            subject.name,
            subject.regions.len(),
            tally.mutations - before,
            timer.elapsed()
        );
    }
    println!("{} mutations in {:?}", tally.mutations, start.elapsed());
    for (region, (count, reason)) in &tally.accepted_unsigned {
        println!("accepted {count}× in {region} (unsigned: {reason})");
    }
    assert!(
        tally.violations.is_empty(),
        "{} accepted mutations:\n{}",
        tally.violations.len(),
        tally.violations.join("\n")
    );
}
