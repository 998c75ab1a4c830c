//! TD QE Identity (Intel PCS `enclaveIdentity`, id "TD_QE"): parsed from the exact signed text,
//! and the QE report appraisal: MRSIGNER and ISVPRODID equal, MISCSELECT and ATTRIBUTES equal
//! under their masks, and the QE's TCB level the first whose ISVSVN is at or below the QE's.

use super::error::TdxError;
use super::json::{date, hex_array, isv_levels, IsvLevelJson};
use super::quote::QeReport;
use super::status::{TcbStatus, TcbVerdict};
use serde::Deserialize;

const DOCUMENT: &str = "QE Identity";

/// Statuses Intel's QVL accepts on a QE Identity TCB level.
const QE_STATUSES: &[TcbStatus] = &[
    TcbStatus::UpToDate,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::Revoked,
];

/// SGX ATTRIBUTES.DEBUG (byte 0, bit 1).
const SGX_ATTRIBUTE_DEBUG: u8 = 0x02;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<IsvLevelJson>,
}

/// A signature-checked TD QE Identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QeIdentity {
    pub(crate) issue_date: u64,
    pub(crate) next_update: u64,
    pub(crate) tcb_evaluation_data_number: u32,
    /// MISCSELECT and its mask, read little-endian like the report field (as dcap-qvl does).
    miscselect: u32,
    miscselect_mask: u32,
    attributes: [u8; 16],
    attributes_mask: [u8; 16],
    mrsigner: [u8; 32],
    isv_prod_id: u16,
    /// Highest ISVSVN first.
    levels: Vec<(u16, TcbVerdict)>,
}

impl QeIdentity {
    pub(crate) fn parse(text: &str) -> Result<QeIdentity, TdxError> {
        let json: QeIdentityJson = serde_json::from_str(text)
            .map_err(|e| TdxError::CollateralInvalid(format!("{DOCUMENT} JSON: {e}")))?;
        if json.id != "TD_QE" || !(2..=3).contains(&json.version) {
            return Err(TdxError::CollateralInvalid(format!(
                "{DOCUMENT} is {:?} version {}, a TDX quote needs \"TD_QE\" version 2 or 3",
                json.id, json.version
            )));
        }
        let levels = isv_levels(&json.tcb_levels);
        Ok(QeIdentity {
            issue_date: date(DOCUMENT, "issueDate", &json.issue_date)?,
            next_update: date(DOCUMENT, "nextUpdate", &json.next_update)?,
            tcb_evaluation_data_number: json.tcb_evaluation_data_number,
            miscselect: u32::from_le_bytes(hex_array(DOCUMENT, "miscselect", &json.miscselect)?),
            miscselect_mask: u32::from_le_bytes(hex_array(
                DOCUMENT,
                "miscselectMask",
                &json.miscselect_mask,
            )?),
            attributes: hex_array(DOCUMENT, "attributes", &json.attributes)?,
            attributes_mask: hex_array(DOCUMENT, "attributesMask", &json.attributes_mask)?,
            mrsigner: hex_array(DOCUMENT, "mrsigner", &json.mrsigner)?,
            isv_prod_id: json.isvprodid,
            levels,
        })
    }

    /// Checks the QE report against the identity and returns the QE's TCB level.
    pub(crate) fn appraise(&self, qe: &QeReport) -> Result<TcbVerdict, TdxError> {
        let mismatch = |what: String| Err(TdxError::QeIdentityMismatch(what));
        if qe.mr_signer != self.mrsigner {
            return mismatch(format!(
                "MRSIGNER {} is not {}",
                crate::encoding::hex(qe.mr_signer),
                crate::encoding::hex(self.mrsigner)
            ));
        }
        if qe.attributes[0] & SGX_ATTRIBUTE_DEBUG != 0 {
            return mismatch("the QE runs in debug mode".into());
        }
        if qe.isv_prod_id != self.isv_prod_id {
            return mismatch(format!(
                "ISVPRODID {} is not {}",
                qe.isv_prod_id, self.isv_prod_id
            ));
        }
        if qe.misc_select & self.miscselect_mask != self.miscselect & self.miscselect_mask {
            return mismatch(format!(
                "MISCSELECT {:08x} does not match {:08x} under mask {:08x}",
                qe.misc_select, self.miscselect, self.miscselect_mask
            ));
        }
        let masked_equal = qe
            .attributes
            .iter()
            .zip(&self.attributes)
            .zip(&self.attributes_mask)
            .all(|((actual, wanted), mask)| actual & mask == wanted & mask);
        if !masked_equal {
            return mismatch(format!(
                "ATTRIBUTES {} do not match {} under mask {}",
                crate::encoding::hex(qe.attributes),
                crate::encoding::hex(self.attributes),
                crate::encoding::hex(self.attributes_mask)
            ));
        }
        let (_, verdict) = self
            .levels
            .iter()
            .find(|(isvsvn, _)| qe.isv_svn >= *isvsvn)
            .ok_or_else(|| {
                TdxError::TcbLevelNotFound(format!(
                    "QE ISVSVN {} is below every QE Identity TCB level",
                    qe.isv_svn
                ))
            })?;
        if !QE_STATUSES.contains(&verdict.status) {
            return Err(TdxError::CollateralInvalid(format!(
                "QE Identity level has status {}, which Intel does not define there",
                verdict.status
            )));
        }
        Ok(verdict.clone())
    }
}
