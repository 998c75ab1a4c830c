//! A TPM quote as a guest sends it, and its verification against an attestation key
//! (as tpm-qvl's `verify_quote_with_ca` does, except the key's chain, which is the caller's).

use super::attest::TpmAttest;
use super::event_log::{replay_pcr, TpmEvent, MAX_EVENTS};
use super::signature::{AkPublicKey, SignatureScheme, TpmSignature};
use super::{TpmError, TPM_ALG_SHA256};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// A SHA-256 PCR value, as read from the TPM next to the quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PcrValue {
    /// The PCR index.
    pub index: u32,
    /// The PCR's SHA-256 value.
    pub value: [u8; 32],
}

impl PcrValue {
    /// A value as a quote carries it; it must be a SHA-256 one.
    pub fn new(index: u32, value: &[u8]) -> Result<PcrValue, TpmError> {
        let value = <[u8; 32]>::try_from(value).map_err(|_| TpmError::PcrValueLength {
            index,
            len: value.len(),
        })?;
        Ok(PcrValue { index, value })
    }
}

/// A quote and what comes with it, before anything is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmQuote {
    /// TPMS_ATTEST (the TPM2B_ATTEST contents).
    pub message: Vec<u8>,
    /// TPMT_SIGNATURE, possibly followed by bytes that are ignored.
    pub signature: Vec<u8>,
    /// The quoted PCRs, in selection order.
    pub pcr_values: Vec<PcrValue>,
    /// The measured events, in log order.
    pub event_log: Vec<TpmEvent>,
}

/// A quote whose signature, PCR selection, PCR digest, qualifying data and event-log replay
/// verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTpmQuote {
    /// The signed TPMS_ATTEST.
    pub attest: TpmAttest,
    /// The scheme the attestation key signed it with.
    pub signature_scheme: SignatureScheme,
    /// The quoted SHA-256 PCRs, in selection order.
    pub pcrs: Vec<PcrValue>,
    /// The quoted PCRs that have events in the log, each of which replayed to its quoted value.
    pub replayed: Vec<u32>,
    events: Vec<TpmEvent>,
}

impl VerifiedTpmQuote {
    /// The quoted value of PCR `index`.
    pub fn pcr(&self, index: u32) -> Option<&[u8; 32]> {
        self.pcrs
            .iter()
            .find(|pcr| pcr.index == index)
            .map(|pcr| &pcr.value)
    }

    /// The event digests of PCR `index`, in log order, when they are bound: the PCR was quoted
    /// and replayed from them. `None` for a PCR that is not quoted or has no events.
    pub fn replayed_events(&self, index: u32) -> Option<Vec<[u8; 32]>> {
        self.replayed.contains(&index).then(|| {
            self.events
                .iter()
                .filter(|event| event.pcr_index == index)
                .map(|event| event.digest)
                .collect()
        })
    }
}

/// Verifies `quote` under `ak` with `qualified_data` as the expected extraData. The signature is
/// checked first, so every later failure describes what the TPM really signed.
pub fn verify_quote(
    quote: &TpmQuote,
    ak: &AkPublicKey,
    qualified_data: &[u8],
) -> Result<VerifiedTpmQuote, TpmError> {
    if quote.event_log.len() > MAX_EVENTS {
        return Err(TpmError::TooLarge {
            what: "TPM event count",
            len: quote.event_log.len(),
            max: MAX_EVENTS,
        });
    }
    let attest = TpmAttest::parse(&quote.message)?;
    let signature = TpmSignature::parse(&quote.signature)?;
    ak.verify(&quote.message, &signature)?;

    if let Some(selection) = attest
        .pcr_selections
        .iter()
        .find(|selection| selection.hash_alg != TPM_ALG_SHA256)
    {
        return Err(TpmError::PcrBank(selection.hash_alg));
    }
    let attested = attest.selected_pcrs();
    let mut seen = HashSet::new();
    if let Some(index) = attested.iter().find(|index| !seen.insert(**index)) {
        return Err(TpmError::DuplicatePcr(*index));
    }
    let provided: Vec<u32> = quote.pcr_values.iter().map(|pcr| pcr.index).collect();
    if attested != provided {
        return Err(TpmError::PcrSelectionMismatch { attested, provided });
    }
    let mut hasher = Sha256::new();
    quote
        .pcr_values
        .iter()
        .for_each(|pcr| hasher.update(pcr.value));
    let computed: [u8; 32] = hasher.finalize().into();
    if attest.pcr_digest != computed {
        return Err(TpmError::PcrDigestMismatch {
            attested: crate::encoding::hex(&attest.pcr_digest),
            computed: crate::encoding::hex(computed),
        });
    }
    if attest.extra_data != qualified_data {
        return Err(TpmError::QualifiedDataMismatch {
            attested: crate::encoding::hex(&attest.extra_data),
            expected: crate::encoding::hex(qualified_data),
        });
    }

    let mut replayed = Vec::new();
    for pcr in &quote.pcr_values {
        if !quote
            .event_log
            .iter()
            .any(|event| event.pcr_index == pcr.index)
        {
            continue;
        }
        let value = replay_pcr(&quote.event_log, pcr.index);
        if value != pcr.value {
            return Err(TpmError::PcrReplayMismatch {
                index: pcr.index,
                replayed: crate::encoding::hex(value),
                quoted: crate::encoding::hex(pcr.value),
            });
        }
        replayed.push(pcr.index);
    }
    Ok(VerifiedTpmQuote {
        attest,
        signature_scheme: signature.scheme(),
        pcrs: quote.pcr_values.clone(),
        replayed,
        events: quote.event_log.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::{tpmt_ecdsa, AkKey, AttestSpec, RESPONSE_AUTH_AREA};
    use crate::tpm::TPM_ALG_SHA1;

    const QUALIFYING: [u8; 32] = [0x5a; 32];

    fn events() -> Vec<TpmEvent> {
        [(0, 1u8), (0, 2), (2, 3), (2, 4), (2, 5), (7, 6)]
            .iter()
            .map(|(pcr_index, byte)| TpmEvent {
                pcr_index: *pcr_index,
                digest: [*byte; 32],
            })
            .collect()
    }

    /// PCR0 and PCR2 replayed from [`events`], PCR14 without events, as a GCP guest quotes them.
    fn pcr_values() -> Vec<PcrValue> {
        let log = events();
        [0, 2]
            .into_iter()
            .map(|index| PcrValue {
                index,
                value: replay_pcr(&log, index),
            })
            .chain([PcrValue {
                index: 14,
                value: [0xe1; 32],
            }])
            .collect()
    }

    fn pairs(pcrs: &[PcrValue]) -> Vec<(u32, [u8; 32])> {
        pcrs.iter().map(|pcr| (pcr.index, pcr.value)).collect()
    }

    /// A quote of [`pcr_values`] signed by `ak`, its TPMS_ATTEST edited by `edit` first.
    fn quote_with(ak: &AkKey, edit: impl FnOnce(&mut AttestSpec)) -> TpmQuote {
        let pcr_values = pcr_values();
        let mut spec = AttestSpec::quote(&QUALIFYING, &pairs(&pcr_values));
        edit(&mut spec);
        let message = spec.encode();
        TpmQuote {
            signature: [ak.sign(&message), RESPONSE_AUTH_AREA.to_vec()].concat(),
            message,
            pcr_values,
            event_log: events(),
        }
    }

    fn public(ak: &AkKey) -> AkPublicKey {
        AkPublicKey::from_certificate(&ak.bare_certificate()).unwrap()
    }

    fn kind(result: Result<VerifiedTpmQuote, TpmError>) -> &'static str {
        result.unwrap_err().kind().as_str()
    }

    #[test]
    fn ecc_and_rsa_quotes_verify() {
        for (ak, scheme) in [
            (AkKey::ecc(), SignatureScheme::EcdsaP256Sha256),
            (AkKey::rsa(), SignatureScheme::RsassaSha256),
        ] {
            let quote = quote_with(&ak, |_| {});
            let verified = verify_quote(&quote, &public(&ak), &QUALIFYING).unwrap();
            assert_eq!(verified.signature_scheme, scheme);
            assert_eq!(verified.pcrs, pcr_values());
            assert_eq!(verified.replayed, [0, 2]);
            assert_eq!(verified.pcr(14), Some(&[0xe1; 32]));
            assert_eq!(verified.pcr(7), None);
            assert_eq!(
                verified.replayed_events(2),
                Some(vec![[3; 32], [4; 32], [5; 32]])
            );
            // PCR7 has events but is not quoted; PCR14 is quoted but has none: neither is bound.
            assert_eq!(verified.replayed_events(7), None);
            assert_eq!(verified.replayed_events(14), None);
            assert_eq!(verified.attest.extra_data, QUALIFYING);
        }
    }

    #[test]
    fn a_signature_over_other_bytes_or_by_another_key_is_refused() {
        for ak in [AkKey::ecc(), AkKey::rsa()] {
            let mut quote = quote_with(&ak, |_| {});
            let other = quote_with(&ak, |spec| spec.extra_data = vec![0; 32]);
            quote.signature = other.signature;
            let err = verify_quote(&quote, &public(&ak), &QUALIFYING).unwrap_err();
            assert!(matches!(err, TpmError::Signature(_)), "{err}");
            assert_eq!(err.kind().as_str(), "signature");

            let same_kind = if ak.is_rsa() {
                AkKey::rsa()
            } else {
                AkKey::ecc()
            };
            let quote = quote_with(&ak, |_| {});
            assert_eq!(
                kind(verify_quote(&quote, &public(&same_kind), &QUALIFYING)),
                "signature"
            );
        }
        let quote = quote_with(&AkKey::ecc(), |_| {});
        let err = verify_quote(&quote, &public(&AkKey::rsa()), &QUALIFYING).unwrap_err();
        assert_eq!(
            err,
            TpmError::KeyMismatch {
                key: "RSA",
                signature: "ECDSA"
            }
        );
        assert_eq!(err.kind().as_str(), "algorithm");
    }

    #[test]
    fn a_33_byte_ecdsa_scalar_is_refused() {
        let ak = AkKey::ecc();
        let mut quote = quote_with(&ak, |_| {});
        let TpmSignature::Ecdsa { r, s } = TpmSignature::parse(&quote.signature).unwrap() else {
            panic!("not ECDSA");
        };
        // The same integer with a leading zero byte.
        let padded = [&[0u8][..], &r].concat();
        quote.signature = tpmt_ecdsa(&padded, &s);
        let err = verify_quote(&quote, &public(&ak), &QUALIFYING).unwrap_err();
        assert_eq!(
            err,
            TpmError::EcdsaScalarLength {
                which: "r",
                len: 33
            }
        );
        assert_eq!(err.kind().as_str(), "signature");
    }

    #[test]
    fn the_selection_must_be_the_pcr_values_in_order_in_the_sha256_bank() {
        let ak = AkKey::ecc();
        let key = public(&ak);

        let mut reordered = quote_with(&ak, |_| {});
        reordered.pcr_values.swap(0, 1);
        let err = verify_quote(&reordered, &key, &QUALIFYING).unwrap_err();
        assert_eq!(
            err,
            TpmError::PcrSelectionMismatch {
                attested: vec![0, 2, 14],
                provided: vec![2, 0, 14]
            }
        );
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        let mut missing = quote_with(&ak, |_| {});
        missing.pcr_values.pop();
        assert_eq!(
            kind(verify_quote(&missing, &key, &QUALIFYING)),
            "binding_mismatch"
        );

        let sha1 = quote_with(&ak, |spec| spec.selections[0].0 = TPM_ALG_SHA1);
        let err = verify_quote(&sha1, &key, &QUALIFYING).unwrap_err();
        assert_eq!(err, TpmError::PcrBank(TPM_ALG_SHA1));
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        // The same PCRs, but PCR14 also in a SHA-1 selection: one bank only.
        let mixed = quote_with(&ak, |spec| {
            spec.selections = vec![(0x000b, vec![0, 2, 14]), (TPM_ALG_SHA1, vec![14])];
        });
        assert_eq!(
            verify_quote(&mixed, &key, &QUALIFYING).unwrap_err(),
            TpmError::PcrBank(TPM_ALG_SHA1)
        );

        let twice = quote_with(&ak, |spec| {
            spec.selections = vec![(0x000b, vec![0, 2]), (0x000b, vec![2, 14])];
        });
        let err = verify_quote(&twice, &key, &QUALIFYING).unwrap_err();
        assert_eq!(
            (err.clone(), err.kind().as_str()),
            (TpmError::DuplicatePcr(2), "malformed")
        );
    }

    #[test]
    fn the_pcr_digest_and_the_qualifying_data_bind_the_quote() {
        let ak = AkKey::rsa();
        let key = public(&ak);
        let mut other_value = quote_with(&ak, |_| {});
        other_value.pcr_values[2].value[0] ^= 1;
        let err = verify_quote(&other_value, &key, &QUALIFYING).unwrap_err();
        assert!(matches!(err, TpmError::PcrDigestMismatch { .. }), "{err}");
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        let quote = quote_with(&ak, |_| {});
        let err = verify_quote(&quote, &key, &[0x5b; 32]).unwrap_err();
        assert!(
            matches!(err, TpmError::QualifiedDataMismatch { .. }),
            "{err}"
        );
        assert_eq!(err.kind().as_str(), "binding_mismatch");
    }

    #[test]
    fn every_quoted_pcr_with_events_must_replay() {
        let ak = AkKey::ecc();
        let key = public(&ak);
        let mut extra = quote_with(&ak, |_| {});
        extra.event_log.push(TpmEvent {
            pcr_index: 2,
            digest: [9; 32],
        });
        let mut dropped = quote_with(&ak, |_| {});
        dropped.event_log.remove(0);
        let mut reordered = quote_with(&ak, |_| {});
        reordered.event_log.swap(2, 3);
        for (quote, index) in [(extra, 2), (dropped, 0), (reordered, 2)] {
            let err = verify_quote(&quote, &key, &QUALIFYING).unwrap_err();
            assert!(
                matches!(err, TpmError::PcrReplayMismatch { index: i, .. } if i == index),
                "{err}"
            );
            assert_eq!(err.kind().as_str(), "event_log_mismatch");
        }
        // Events of PCRs outside the quote are not replayed, so they cannot fail it.
        let mut unquoted = quote_with(&ak, |_| {});
        unquoted.event_log.push(TpmEvent {
            pcr_index: 4,
            digest: [9; 32],
        });
        verify_quote(&unquoted, &key, &QUALIFYING).unwrap();

        let mut flood = quote_with(&ak, |_| {});
        flood.event_log = vec![events()[0]; MAX_EVENTS + 1];
        assert_eq!(kind(verify_quote(&flood, &key, &QUALIFYING)), "malformed");
    }

    #[test]
    fn quoted_pcrs_carry_sha256_values() {
        assert_eq!(PcrValue::new(0, &[1; 32]).unwrap().value, [1; 32]);
        let err = PcrValue::new(0, &[1; 20]).unwrap_err();
        assert_eq!(err, TpmError::PcrValueLength { index: 0, len: 20 });
        assert_eq!(err.kind().as_str(), "malformed");
    }
}
