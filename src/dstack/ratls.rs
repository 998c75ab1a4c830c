//! dstack attestations inside RA-TLS certificates, as the KMS receives them from its clients,
//! read as upstream ra-tls reads them (`attestation::from_ext_getter`,
//! `cert::decompress_ext_value`, `oids.rs`).
//!
//! Where the attestation sits, in upstream's order of preference:
//! - extension `1.3.6.1.4.1.62397.1.8`: a DER OCTET STRING holding a VersionedAttestation (V0 or V1,
//!   usually stripped);
//! - legacy: `…62397.1.1` the raw TDX quote and `…62397.1.2` its event-log JSON, each a DER OCTET
//!   STRING; the event log may be `ELGZv1` followed by gzip, inflated to at most 16 KiB. The
//!   attestation is then rebuilt as upstream's `from_tdx_quote` does: runtime events from the log,
//!   report_data from the quote, no vm_config.
//!
//! The binding is mandatory: the attestation's report_data must be
//! `sha512("ratls-cert:" ‖ SubjectPublicKeyInfo DER)`, else `binding_mismatch`. That is checked
//! here against the report_data the attestation declares; [`super::tdx_identity`] and
//! [`super::nitro_identity`] then require it of the verified quote or document. The certificate's
//! own signature and validity are the TLS layer's business (it proves possession of the key) and
//! are not checked here.

use super::evidence::{Evidence, MAX_EVIDENCE_LEN};
use super::measurements::{content_report_data, REPORT_DATA_LEN};
use super::{DstackError, EventLog, TdxEvidence};
use x509_parser::der_parser::{der::parse_der_octetstring, oid, oid::Oid};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The VersionedAttestation extension.
pub static ATTESTATION_OID: Oid<'static> = oid!(1.3.6 .1 .4 .1 .62397 .1 .8);
/// The legacy raw TDX quote extension.
pub static LEGACY_QUOTE_OID: Oid<'static> = oid!(1.3.6 .1 .4 .1 .62397 .1 .1);
/// The legacy event-log extension.
pub static LEGACY_EVENT_LOG_OID: Oid<'static> = oid!(1.3.6 .1 .4 .1 .62397 .1 .2);
/// Marks a gzip-compressed legacy event log.
pub const EVENT_LOG_GZIP_MAGIC: &[u8] = b"ELGZv1";
/// Most bytes a compressed event log may inflate to (upstream's `MAX_EVENTLOG_EXT_SIZE`).
pub const MAX_INFLATED_EVENT_LOG: usize = 16 * 1024;
/// The report_data tag of an RA-TLS certificate key.
pub const RATLS_CERT_TAG: &str = "ratls-cert";

/// Which extensions carried the attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaTlsForm {
    /// `…62397.1.8`, a VersionedAttestation.
    Attestation,
    /// `…62397.1.1` + `…62397.1.2`, a TDX quote and its event log.
    LegacyQuote,
}

/// The evidence an RA-TLS certificate carries, bound to its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaTlsEvidence {
    /// The certificate's SubjectPublicKeyInfo, DER: the key the attestation vouches for.
    pub public_key: Vec<u8>,
    /// Which extensions carried the attestation.
    pub form: RaTlsForm,
    /// Not verified yet; its declared report_data is the binding above.
    pub evidence: Evidence,
}

fn invalid(reason: impl Into<String>) -> DstackError {
    DstackError::Certificate(reason.into())
}

/// Reads the attestation of an RA-TLS certificate (PEM or DER) and checks its key binding.
pub fn from_certificate(bytes: &[u8]) -> Result<RaTlsEvidence, DstackError> {
    DstackError::check_len("certificate", bytes.len(), MAX_EVIDENCE_LEN)?;
    let pem;
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|e| invalid(format!("not PEM: {e}")))?;
        if parsed.label != "CERTIFICATE" {
            return Err(invalid(format!(
                "PEM block {:?} is not a CERTIFICATE",
                parsed.label
            )));
        }
        pem = parsed;
        pem.contents.as_slice()
    } else {
        bytes
    };
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|e| invalid(format!("not X.509 DER: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid("bytes after the certificate"));
    }
    let public_key = certificate.public_key().raw.to_vec();
    let (form, evidence) = match extension(&certificate, &ATTESTATION_OID)? {
        Some(attestation) => (
            RaTlsForm::Attestation,
            Evidence::from_versioned_attestation(attestation)?,
        ),
        None => (RaTlsForm::LegacyQuote, legacy_evidence(&certificate)?),
    };
    let expected = content_report_data(RATLS_CERT_TAG, &public_key);
    let declared = match &evidence {
        Evidence::Tdx(tdx) => tdx.report_data,
        Evidence::Nitro(nitro) => Some(nitro.report_data),
        Evidence::GcpTdx(gcp) => gcp.tdx.report_data,
    };
    if declared != Some(expected) {
        return Err(DstackError::CertificateKeyMismatch {
            attested: declared.map(crate::encoding::hex).unwrap_or_default(),
            expected: crate::encoding::hex(expected),
        });
    }
    Ok(RaTlsEvidence {
        public_key,
        form,
        evidence,
    })
}

/// The content of the DER OCTET STRING in extension `oid`, if present (once at most).
fn extension<'a>(
    certificate: &'a X509Certificate<'_>,
    oid: &Oid<'_>,
) -> Result<Option<&'a [u8]>, DstackError> {
    let Some(extension) = certificate
        .get_extension_unique(oid)
        .map_err(|e| invalid(format!("extension {oid}: {e}")))?
    else {
        return Ok(None);
    };
    let (rest, octets) = parse_der_octetstring(extension.value)
        .map_err(|_| invalid(format!("extension {oid} is not a DER OCTET STRING")))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "extension {oid} has bytes after its OCTET STRING"
        )));
    }
    octets
        .as_slice()
        .map(Some)
        .map_err(|_| invalid(format!("extension {oid} is not a DER OCTET STRING")))
}

/// The legacy quote + event-log form, as upstream's `Attestation::from_tdx_quote` rebuilds it.
fn legacy_evidence(certificate: &X509Certificate<'_>) -> Result<Evidence, DstackError> {
    let quote = extension(certificate, &LEGACY_QUOTE_OID)?
        .ok_or_else(|| invalid("no dstack attestation extension"))?;
    let event_log = extension(certificate, &LEGACY_EVENT_LOG_OID)?.ok_or_else(|| {
        invalid("the legacy quote extension has no event-log extension beside it")
    })?;
    let event_log = match event_log.strip_prefix(EVENT_LOG_GZIP_MAGIC) {
        Some(compressed) => inflate(compressed)?,
        None => event_log.to_vec(),
    };
    let event_log = std::str::from_utf8(&event_log)
        .map_err(|_| invalid("the legacy event log is not UTF-8"))?;
    let report_data: [u8; REPORT_DATA_LEN] = crate::tdx::Quote::parse(quote)
        .map_err(|e| {
            invalid(format!(
                "the legacy quote extension is not a TDX quote: {e}"
            ))
        })?
        .body
        .report_data;
    Ok(Evidence::Tdx(TdxEvidence {
        quote: quote.to_vec(),
        event_log: EventLog::from_json(event_log)?,
        report_data: Some(report_data),
        vm_config: None,
    }))
}

/// Inflates the gzip member, refusing more than [`MAX_INFLATED_EVENT_LOG`] bytes before they
/// are kept.
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, DstackError> {
    gzip::inflate(compressed, MAX_INFLATED_EVENT_LOG).map_err(|e| match e {
        gzip::GzipError::TooLarge => DstackError::TooLarge {
            what: "inflated RA-TLS event log",
            len: MAX_INFLATED_EVENT_LOG + 1,
            max: MAX_INFLATED_EVENT_LOG,
        },
        gzip::GzipError::Invalid(reason) => {
            invalid(format!("the ELGZv1 event log does not inflate: {reason}"))
        }
    })
}

mod gzip;
#[cfg(test)]
mod tests;
