//! GCP TDX attestations verified end to end through the evidence pipeline: the real TDX quote with
//! its real collateral, a vTPM quote bound to it, an AK chained through a CA bundle to a pinned
//! root; V0 and V1, ECC and RSA AKs; and a negative for every GCP step with its exact kind.
//! Besides, the real Google AK chain and CRL through the same walker.

use crate::support::gcp::{pem, AkKey, GooglePki, Instance, DAY, INTERMEDIATE_SERIAL, NOW};
use crate::support::gcp_attestation::{Parts, RealTdx, Spec, TDX_COLLATERAL, TDX_NOW};
use crate::support::samples;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;
use tee_verifier::dstack::gcp_ak::{GcpAkVerifier, GcpCaBundle};
use tee_verifier::evidence::{EvidenceInput, EvidenceVerifier, Expectations, Platform, Verified};

/// One PKI for the whole file: RSA-4096 keys take a while to generate.
struct World {
    samples: PathBuf,
    pki: GooglePki,
    ecc: (AkKey, Vec<u8>),
    rsa: (AkKey, Vec<u8>),
    real: RealTdx,
    collateral: Vec<u8>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let samples = samples::samples_dir();
        let pki = GooglePki::generate();
        let ecc = AkKey::ecc();
        let ecc_cert = pki.ak_certificate(&ecc, &Instance::default(), 0x0ecc);
        let rsa = AkKey::rsa();
        let rsa_cert = pki.ak_certificate(&rsa, &Instance::default(), 0x02a5);
        World {
            real: RealTdx::load(&samples),
            collateral: std::fs::read(samples.join(TDX_COLLATERAL)).unwrap(),
            samples,
            pki,
            ecc: (ecc, ecc_cert),
            rsa: (rsa, rsa_cert),
        }
    })
}

impl World {
    fn parts(&self, spec: &Spec) -> Parts {
        Parts::build(&self.real, &self.ecc.0, &self.ecc.1, spec)
    }

    /// The intermediate and the root's and intermediate's CRLs, valid around `now`.
    fn bundle(&self, revoked: &[u64], crl_window: (i64, i64)) -> GcpCaBundle {
        self.bundle_with(&self.pki.intermediate_der, revoked, crl_window)
    }

    fn bundle_with(&self, intermediate: &[u8], revoked: &[u64], (a, b): (i64, i64)) -> GcpCaBundle {
        let text = pem("CERTIFICATE", &[intermediate])
            + &pem(
                "X509 CRL",
                &[
                    &self.pki.root_crl(revoked, a, b),
                    &self.pki.intermediate_crl(&[], a, b),
                ],
            );
        GcpCaBundle::from_pem(text.as_bytes()).unwrap()
    }

    fn good_bundle(&self) -> GcpCaBundle {
        self.bundle(&[], (-DAY, 6 * DAY))
    }

    fn verifier(&self, bundle: GcpCaBundle) -> EvidenceVerifier {
        EvidenceVerifier::default()
            .with_gcp(GcpAkVerifier::with_root_der(&self.pki.root_der), bundle)
    }

    fn verify_with(
        &self,
        verifier: &EvidenceVerifier,
        attestation: &[u8],
    ) -> Result<Verified, String> {
        verifier
            .verify(
                &EvidenceInput {
                    evidence: attestation,
                    collateral: Some(&self.collateral),
                    ..EvidenceInput::default()
                },
                TDX_NOW,
                &Expectations::default(),
            )
            .map_err(|error| format!("{}: {error}", error.kind().as_str()))
    }

    fn kind(&self, bundle: GcpCaBundle, attestation: &[u8]) -> String {
        let err = self
            .verify_with(&self.verifier(bundle), attestation)
            .unwrap_err();
        err.split(':').next().unwrap().to_owned()
    }
}

#[test]
fn the_fixture_time_is_the_real_collaterals() {
    assert_eq!(NOW, TDX_NOW);
}

#[test]
fn gcp_attestations_verify_in_v0_and_v1_with_ecc_and_rsa_aks() {
    let world = world();
    let verifier = world.verifier(world.good_bundle());
    // The TDX view of the same quote and events, for the fields both share.
    let report = std::fs::read(
        world
            .samples
            .join(crate::support::gcp_attestation::TDX_REPORT),
    )
    .unwrap();
    let tdx = serde_json::to_value(world.verify_with(&verifier, &report).unwrap()).unwrap();

    for (name, (ak, cert), scheme) in [
        ("ecc", &world.ecc, "ecdsa-p256-sha256"),
        ("rsa", &world.rsa, "rsassa-pkcs1v15-sha256"),
    ] {
        let parts = Parts::build(&world.real, ak, cert, &Spec::default());
        for (form, bytes) in [("v0", parts.v0()), ("v1", parts.v1())] {
            let verified = world
                .verify_with(&verifier, &bytes)
                .unwrap_or_else(|e| panic!("{name} {form}: {e}"));
            assert_eq!(verified.platform(), Platform::GcpTdx);
            assert!(verified.dstack().unwrap().os_image_hash_bound());
            let json = serde_json::to_value(&verified).unwrap();
            assert_eq!(json["platform"], "gcp-tdx", "{name} {form}");
            assert_eq!(json["verified"], true);
            assert_eq!(json["os_image_variant"], "gcp");
            assert_eq!(json["os_image_hash_bound"], true);
            assert_eq!(json["tpm"]["signature_algorithm"], scheme);
            assert_eq!(
                json["tpm"]["ak_subject"],
                "L=us-central1-a, O=Google Compute Engine, OU=dstack-kms, CN=6524697943022743941"
            );
            let pcrs = json["tpm"]["pcrs"].as_object().unwrap();
            assert_eq!(pcrs.keys().collect::<Vec<_>>(), ["0", "2", "14"]);
            // Everything TDX shows, from the same quote and events.
            for field in [
                "tcb_status",
                "advisory_ids",
                "ppid",
                "mr_td",
                "rtmr3",
                "report_data",
                "app_id",
                "compose_hash",
                "instance_id",
                "device_id",
                "quote_version",
            ] {
                assert_eq!(json[field], tdx[field], "{name} {form} {field}");
            }
            // mr_aggregated = SHA256(PCR0 ‖ PCR2 ‖ PCR14).
            let pcr = |index: &str| hex::decode(&pcrs[index].as_str().unwrap()[2..]).unwrap();
            let aggregated = Sha256::new()
                .chain_update(pcr("0"))
                .chain_update(pcr("2"))
                .chain_update(pcr("14"))
                .finalize();
            assert_eq!(
                json["mr_aggregated"],
                format!("0x{}", hex::encode(aggregated))
            );
            // The service authorizes it like TDX: a bound image needs no vouching.
            assert!(verified.authorizable_boot_info(false).is_ok());
        }
    }
}

#[test]
fn without_gcp_measurement_the_image_is_the_hosts_claim() {
    let world = world();
    let parts = world.parts(&Spec {
        measured: false,
        ..Spec::default()
    });
    let verified = world
        .verify_with(&world.verifier(world.good_bundle()), &parts.v0())
        .unwrap();
    let json = serde_json::to_value(&verified).unwrap();
    assert_eq!(json["os_image_hash_bound"], false);
    assert_eq!(json["os_image_variant"], Value::Null);
    assert!(verified.authorizable_boot_info(false).is_err());
    assert!(verified.authorizable_boot_info(true).is_ok());
}

#[test]
fn every_gcp_step_has_its_negative_and_kind() {
    let world = world();
    let good = World::good_bundle;
    let cases: [(&str, Spec, &str); 5] = [
        (
            "qualified_data of another quote",
            Spec {
                qualified_data_of_another_quote: true,
                ..Spec::default()
            },
            "binding_mismatch",
        ),
        (
            "PCR14 off by one event",
            Spec {
                pcr14_one_event_short: true,
                ..Spec::default()
            },
            "event_log_mismatch",
        ),
        (
            "a wrong PCR0",
            Spec {
                pcr0: Some([0x50; 32]),
                ..Spec::default()
            },
            "os_image_mismatch",
        ),
        (
            "uki_auth mismatch",
            Spec {
                uki_auth: Some([0x9b; 32]),
                ..Spec::default()
            },
            "os_image_mismatch",
        ),
        (
            "checksum-file mismatch",
            Spec {
                wrong_os_image_hash: true,
                ..Spec::default()
            },
            "os_image_mismatch",
        ),
    ];
    for (what, spec, kind) in cases {
        let parts = world.parts(&spec);
        for bytes in [parts.v0(), parts.v1()] {
            assert_eq!(world.kind(good(world), &bytes), kind, "{what}");
        }
    }

    let attestation = world.parts(&Spec::default()).v0();
    // A signature over other bytes: the message changed after signing (its clock).
    let mut tampered = world.parts(&Spec::default());
    let clock = tampered.message.len() - 70;
    tampered.message[clock] ^= 1;
    assert_eq!(world.kind(good(world), &tampered.v0()), "signature");

    // The chain: to another root, an expired intermediate, a stale CRL, a revoked intermediate,
    // no intermediate at all, and a CRL required but absent.
    let google_pinned = EvidenceVerifier::default().with_gcp(GcpAkVerifier::new(), good(world));
    let err = world.verify_with(&google_pinned, &attestation).unwrap_err();
    assert!(err.starts_with("untrusted_root"), "{err}");
    let expired = world.pki.intermediate_with_window(-3 * 365 * DAY, -DAY);
    assert_eq!(
        world.kind(
            world.bundle_with(&expired, &[], (-DAY, 6 * DAY)),
            &attestation
        ),
        "expired"
    );
    assert_eq!(
        world.kind(world.bundle(&[], (-8 * DAY, -DAY)), &attestation),
        "collateral_expired"
    );
    assert_eq!(
        world.kind(
            world.bundle(&[INTERMEDIATE_SERIAL], (-DAY, 6 * DAY)),
            &attestation
        ),
        "revoked"
    );
    // An intermediate whose EKU lacks tcg-kp-EKCertificate (upstream's required_if_present).
    let other_eku = world
        .pki
        .intermediate_with_eku(&[1, 3, 6, 1, 5, 5, 7, 3, 1]);
    assert_eq!(
        world.kind(
            world.bundle_with(&other_eku, &[], (-DAY, 6 * DAY)),
            &attestation
        ),
        "certificate_invalid"
    );
    let err = world
        .verify_with(&world.verifier(GcpCaBundle::default()), &attestation)
        .unwrap_err();
    assert!(
        err.starts_with("collateral_missing") && err.contains("EK/AK CA Intermediate"),
        "{err}"
    );
    // Without CRLs the chain verifies, unless they are required.
    let mut no_crls = good(world);
    no_crls.crls.clear();
    world
        .verify_with(&world.verifier(no_crls.clone()), &attestation)
        .unwrap();
    no_crls.require_crl = true;
    assert_eq!(world.kind(no_crls, &attestation), "collateral_missing");
}

fn sample_der(world: &World, name: &str) -> Vec<u8> {
    let pem = std::fs::read(world.samples.join("gcp").join(name)).unwrap();
    x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
}

/// The real Google AK certificate, its intermediate and the intermediate's CRL (DER).
fn real_google_chain(world: &World) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let crl = std::fs::read(world.samples.join("gcp/salrashid_intermediate.crl")).unwrap();
    let crl = match x509_parser::pem::parse_x509_pem(&crl) {
        Ok((_, pem)) => pem.contents,
        Err(_) => crl,
    };
    (
        sample_der(world, "salrashid_akcert.pem"),
        sample_der(world, "salrashid_ak_intermediate.pem"),
        crl,
    )
}

/// 2024-05-10, inside the real CRL's week (2024-05-07..2024-05-14).
const REAL_CRL_INSIDE: u64 = 1_715_299_200;

#[test]
fn the_real_google_ak_chain_verifies_to_the_pinned_root_with_its_real_crl() {
    let world = world();
    let (ak, intermediate, crl) = real_google_chain(world);
    let verifier = GcpAkVerifier::new();
    let bundle = GcpCaBundle {
        intermediates: vec![intermediate.clone()],
        crls: vec![],
        require_crl: false,
    };
    let verified = verifier.verify(&ak, &bundle, TDX_NOW).unwrap();
    assert_eq!(
        verified.subject,
        "L=us-central1-a, O=Google Compute Engine, OU=core-eso, CN=6524697943022743941"
    );
    assert_eq!(verified.chain_sha256.len(), 3);
    assert_eq!(
        verified.chain_sha256[2],
        "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2"
    );
    // Its real CRL (by the root, over the intermediates): applied inside its window, stale after.
    let with_crl = GcpCaBundle {
        crls: vec![crl],
        ..bundle
    };
    let inside = verifier.verify(&ak, &with_crl, REAL_CRL_INSIDE).unwrap();
    assert_eq!(inside.crls_applied, 1);
    let err = verifier.verify(&ak, &with_crl, TDX_NOW).unwrap_err();
    assert_eq!(err.kind().as_str(), "collateral_expired", "{err}");
    // --gcp-require-crl: the intermediate names a CRL distribution point, the root's CRL covers
    // it; without the CRL it is missing.
    let required = GcpCaBundle {
        require_crl: true,
        ..with_crl.clone()
    };
    verifier.verify(&ak, &required, REAL_CRL_INSIDE).unwrap();
    let err = verifier
        .verify(
            &ak,
            &GcpCaBundle {
                crls: vec![],
                ..required
            },
            REAL_CRL_INSIDE,
        )
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "collateral_missing", "{err}");
    // Pinned to another root of the same name, the real chain is refused.
    let other = GcpAkVerifier::with_root_der(&world.pki.root_der);
    let err = other.verify(&ak, &with_crl, REAL_CRL_INSIDE).unwrap_err();
    assert_eq!(err.kind().as_str(), "untrusted_root", "{err}");
}

/// A preview reads a GCP attestation without verifying it: TDX registers and the PCRs the vTPM
/// quote claims, marked unverified, with no identity (it needs the verified PCRs).
#[test]
fn a_gcp_preview_is_unverified() {
    let world = world();
    let attestation = world.parts(&Spec::default()).v1();
    let preview = tee_verifier::evidence::preview(&EvidenceInput {
        evidence: &attestation,
        ..EvidenceInput::default()
    })
    .unwrap();
    let json = serde_json::to_value(preview.report()).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["platform"], "gcp-tdx");
    assert_eq!(json["tpm"]["signature_algorithm"], "ecdsa-p256-sha256");
    assert_eq!(json["tpm"]["pcrs"].as_object().unwrap().len(), 3);
    assert_eq!(json["os_image_variant"], Value::Null);
    assert_eq!(json["tcb_status"], Value::Null);
    assert!(json.get("app_id").is_none());
}

/// What a bundle lacks, as the real Google chain tells it: with nothing, the AK's issuer (and
/// its AIA caIssuers URL is on the default fetch allowlist); with the intermediate, the root's
/// CRL over it (the intermediate names a CRL distribution point; the AK names none); with both,
/// nothing.
#[test]
fn the_gaps_of_the_real_google_chain_name_what_to_fetch() {
    use tee_verifier::collateral::{ca_issuers_urls, crl_distribution_points, UrlAllowlist};
    let world = world();
    let (ak, intermediate, crl) = real_google_chain(world);
    let verifier = GcpAkVerifier::new();
    let allow = UrlAllowlist::google_private_ca();

    let gaps = verifier.gaps(&ak, &GcpCaBundle::default()).unwrap();
    assert_eq!(gaps.issuer_of.as_deref(), Some(ak.as_slice()));
    assert!(
        gaps.crl_of.is_empty(),
        "the AK names no CRL distribution point"
    );
    let aia = ca_issuers_urls(&ak);
    assert!(aia.iter().any(|url| allow.allows_str(url)), "{aia:?}");

    let mut bundle = GcpCaBundle {
        intermediates: vec![intermediate.clone()],
        ..GcpCaBundle::default()
    };
    let gaps = verifier.gaps(&ak, &bundle).unwrap();
    assert_eq!(gaps.issuer_of, None);
    assert_eq!(gaps.crl_of, std::slice::from_ref(&intermediate));
    let points = crl_distribution_points(&intermediate);
    assert!(points.iter().any(|url| allow.allows_str(url)), "{points:?}");

    bundle.crls.push(crl);
    let gaps = verifier.gaps(&ak, &bundle).unwrap();
    assert_eq!(gaps, Default::default());
    // An intermediate that is not the issuer leaves the gap where it was.
    let unrelated = GcpCaBundle {
        intermediates: vec![world.pki.intermediate_der.clone()],
        ..GcpCaBundle::default()
    };
    let gaps = verifier.gaps(&ak, &unrelated).unwrap();
    assert_eq!(gaps.issuer_of.as_deref(), Some(ak.as_slice()));
}

/// A verified AK chain is cached per (leaf, bundle) with the window its verification holds in:
/// inside it the chain is not walked again; outside it the walk runs and names what is out of
/// time, and another bundle for the same leaf is verified on its own.
#[test]
fn a_cached_ak_chain_is_rechecked_at_every_now_and_per_bundle() {
    let world = world();
    let verifier = GcpAkVerifier::with_root_der(&world.pki.root_der);
    // Shares the walker's caches, to read their lookup counts.
    let stats = EvidenceVerifier::default().with_gcp(verifier.clone(), GcpCaBundle::default());
    let walks = || {
        stats
            .cache_stats()
            .into_iter()
            .find(|(name, _)| *name == "gcp_x509_certificates")
            .map(|(_, counts)| counts.hits + counts.misses)
            .unwrap()
    };
    let ak = &world.ecc.1;
    let kind = |bundle: &GcpCaBundle, now: u64| {
        verifier
            .verify(ak, bundle, now)
            .unwrap_err()
            .kind()
            .as_str()
    };
    let at = |offset: i64| NOW.checked_add_signed(offset).unwrap();
    let bundle = world.good_bundle(); // CRLs from NOW - 1 day to NOW + 6 days

    let first = verifier.verify(ak, &bundle, NOW).unwrap();
    assert_eq!(first.crls_applied, 2);
    let walked = walks();
    assert_eq!(verifier.verify(ak, &bundle, at(5 * DAY)).unwrap(), first);
    assert_eq!(
        walks(),
        walked,
        "inside its window the chain comes from the cache"
    );
    // Past the CRLs' nextUpdate, and before their thisUpdate.
    assert_eq!(kind(&bundle, at(7 * DAY)), "collateral_expired");
    assert_eq!(kind(&bundle, at(-2 * DAY)), "collateral_not_yet_valid");
    assert!(
        walks() > walked,
        "outside its window the chain is walked again"
    );
    assert_eq!(verifier.verify(ak, &bundle, NOW).unwrap(), first);

    // Without CRLs the window is the certificates': the AK's 30 years from NOW - 1 year.
    let no_crls = GcpCaBundle {
        crls: vec![],
        ..bundle.clone()
    };
    assert_eq!(verifier.verify(ak, &no_crls, NOW).unwrap().crls_applied, 0);
    assert_eq!(kind(&no_crls, at(30 * 365 * DAY)), "expired");
    assert_eq!(kind(&no_crls, at(-2 * 365 * DAY)), "not_yet_valid");
    // The same leaf through other bundles: a CRL that revokes, a CRL required but absent, an
    // expired intermediate.
    let revoked = world.bundle(&[INTERMEDIATE_SERIAL], (-DAY, 6 * DAY));
    assert_eq!(kind(&revoked, NOW), "revoked");
    let required = GcpCaBundle {
        require_crl: true,
        ..no_crls.clone()
    };
    assert_eq!(kind(&required, NOW), "collateral_missing");
    let expired = world.pki.intermediate_with_window(-3 * 365 * DAY, -DAY);
    assert_eq!(
        kind(&world.bundle_with(&expired, &[], (-DAY, 6 * DAY)), NOW),
        "expired"
    );
    assert_eq!(verifier.verify(ak, &bundle, NOW).unwrap(), first);
}
