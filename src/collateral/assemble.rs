//! Four items into one `QuoteCollateralV3` document (dcap-qvl's JSON, the one `--collateral`
//! reads), decoded by the verifier's own [`Collateral::from_json`].

use super::item::{Content, Item};
use crate::tdx::{Collateral, TdxError};
use serde::Serialize;

#[derive(Serialize)]
struct QuoteCollateralV3<'a> {
    pck_crl_issuer_chain: &'a str,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: &'a str,
    tcb_info: &'a str,
    tcb_info_signature: &'a str,
    qe_identity_issuer_chain: &'a str,
    qe_identity: &'a str,
    qe_identity_signature: &'a str,
}

/// The items of one set, by role.
pub(crate) struct Parts<'a> {
    pub(crate) tcb_info: &'a Item,
    pub(crate) qe_identity: &'a Item,
    pub(crate) pck_crl: &'a Item,
    pub(crate) root_ca_crl: &'a Item,
}

/// The JSON document and its decoding.
pub(crate) fn assemble(parts: &Parts<'_>) -> Result<(Vec<u8>, Collateral), TdxError> {
    let (tcb_info, tcb_info_signature) = signed(parts.tcb_info)?;
    let (qe_identity, qe_identity_signature) = signed(parts.qe_identity)?;
    let document = QuoteCollateralV3 {
        pck_crl_issuer_chain: parts.pck_crl.issuer_chain(),
        root_ca_crl: crate::encoding::hex(crl(parts.root_ca_crl)?),
        pck_crl: crate::encoding::hex(crl(parts.pck_crl)?),
        tcb_info_issuer_chain: parts.tcb_info.issuer_chain(),
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: parts.qe_identity.issuer_chain(),
        qe_identity,
        qe_identity_signature,
    };
    let json = serde_json::to_vec_pretty(&document).expect("collateral serializes");
    let collateral = Collateral::from_json(&json)?;
    Ok((json, collateral))
}

fn signed(item: &Item) -> Result<(&str, &str), TdxError> {
    match &item.content {
        Content::Signed {
            text,
            signature_hex,
        } => Ok((text, signature_hex)),
        Content::Crl { .. } => Err(misplaced(item)),
    }
}

fn crl(item: &Item) -> Result<&[u8], TdxError> {
    match &item.content {
        Content::Crl { der } => Ok(der),
        Content::Signed { .. } => Err(misplaced(item)),
    }
}

fn misplaced(item: &Item) -> TdxError {
    TdxError::CollateralInvalid(format!("{} is not in its place", item.key.kind()))
}
