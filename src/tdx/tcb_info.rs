//! TDX TCB Info (Intel PCS `tcbInfo`, id "TDX", version 3): parsed from the exact signed text into
//! fixed-width facts, and the platform TCB appraisal: the FMSPC and PCE-ID must be the PCK
//! certificate's; the level is the first whose SGX components and PCESVN are at or below the
//! PCK's and whose TDX components are at or below TEE_TCB_SVN (indices 0 and 1 skipped when
//! TEE_TCB_SVN\[1\] > 0: that module is appraised through `tdxModuleIdentities` entry
//! `TDX_%02X` of the major version, its level matched by ISVSVN = TEE_TCB_SVN\[0\]);
//! MRSIGNERSEAM and SEAMATTRIBUTES must match the module identity under its mask.

use super::error::TdxError;
use super::json::{date, hex_array, isv_levels, IsvLevelJson};
use super::pck::PckInfo;
use super::quote::TdReport;
use super::status::{TcbStatus, TcbVerdict};
use serde::Deserialize;

const DOCUMENT: &str = "TCB Info";

/// Statuses Intel's QVL accepts on a platform TCB level and on a TDX module TCB level.
const PLATFORM_STATUSES: &[TcbStatus] = &[
    TcbStatus::UpToDate,
    TcbStatus::SWHardeningNeeded,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::ConfigurationAndSWHardeningNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::Revoked,
];
const MODULE_STATUSES: &[TcbStatus] = &[
    TcbStatus::UpToDate,
    TcbStatus::OutOfDate,
    TcbStatus::Revoked,
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u32,
    tcb_evaluation_data_number: u32,
    tdx_module: Option<ModuleSignerJson>,
    #[serde(default)]
    tdx_module_identities: Vec<ModuleIdentityJson>,
    tcb_levels: Vec<TcbLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleSignerJson {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleIdentityJson {
    id: String,
    #[serde(flatten)]
    signer: ModuleSignerJson,
    tcb_levels: Vec<IsvLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson {
    tcb: TcbJson,
    tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct TcbJson {
    sgxtcbcomponents: Vec<ComponentJson>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<ComponentJson>,
}

#[derive(Deserialize)]
struct ComponentJson {
    svn: u8,
}

/// What a TDX module's MRSIGNERSEAM and SEAMATTRIBUTES must be.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModuleSigner {
    mrsigner: [u8; 48],
    attributes: [u8; 8],
    attributes_mask: [u8; 8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModuleIdentity {
    /// `TDX_xx`, xx = the module major version (TEE_TCB_SVN[1]) in hex.
    id: String,
    signer: ModuleSigner,
    /// Highest ISVSVN first.
    levels: Vec<(u16, TcbVerdict)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct TcbLevel {
    sgx_components: [u8; 16],
    pce_svn: u16,
    tdx_components: [u8; 16],
    verdict: TcbVerdict,
}

/// A signature-checked TDX TCB Info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TcbInfo {
    pub(crate) issue_date: u64,
    pub(crate) next_update: u64,
    pub(crate) tcb_evaluation_data_number: u32,
    fmspc: [u8; 6],
    pce_id: [u8; 2],
    base_module: ModuleSigner,
    module_identities: Vec<ModuleIdentity>,
    /// In Intel QVL's order: highest SGX components, then PCESVN, then TDX components first.
    levels: Vec<TcbLevel>,
}

/// The platform part of a quote's TCB appraisal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlatformTcb {
    /// The level met by the launch TCB (TEE_TCB_SVN), converged with its TDX module level.
    pub(crate) launch: TcbVerdict,
    /// TD 1.5: the level met by the current TCB (TEE_TCB_SVN2).
    pub(crate) current: Option<TcbVerdict>,
}

impl TcbInfo {
    pub(crate) fn parse(text: &str) -> Result<TcbInfo, TdxError> {
        let json: TcbInfoJson = serde_json::from_str(text)
            .map_err(|e| TdxError::CollateralInvalid(format!("{DOCUMENT} JSON: {e}")))?;
        if json.id != "TDX" || json.version < 3 {
            return Err(TdxError::CollateralInvalid(format!(
                "{DOCUMENT} is {:?} version {}, a TDX quote needs \"TDX\" version 3 or later",
                json.id, json.version
            )));
        }
        // Type 0 is the only defined one: SVNs compare component by component.
        if json.tcb_type != 0 {
            return Err(TdxError::CollateralInvalid(format!(
                "{DOCUMENT} tcbType {} is not 0",
                json.tcb_type
            )));
        }
        let base_module = json
            .tdx_module
            .as_ref()
            .ok_or_else(|| TdxError::CollateralInvalid(format!("{DOCUMENT} has no tdxModule")))?;
        let mut levels = json
            .tcb_levels
            .iter()
            .map(TcbLevel::parse)
            .collect::<Result<Vec<_>, _>>()?;
        levels.sort_by(|a, b| {
            b.sgx_components
                .cmp(&a.sgx_components)
                .then(b.pce_svn.cmp(&a.pce_svn))
                .then(b.tdx_components.cmp(&a.tdx_components))
        });
        Ok(TcbInfo {
            issue_date: date(DOCUMENT, "issueDate", &json.issue_date)?,
            next_update: date(DOCUMENT, "nextUpdate", &json.next_update)?,
            tcb_evaluation_data_number: json.tcb_evaluation_data_number,
            fmspc: hex_array(DOCUMENT, "fmspc", &json.fmspc)?,
            pce_id: hex_array(DOCUMENT, "pceId", &json.pce_id)?,
            base_module: ModuleSigner::parse(base_module)?,
            module_identities: json
                .tdx_module_identities
                .iter()
                .map(ModuleIdentity::parse)
                .collect::<Result<_, _>>()?,
            levels,
        })
    }

    /// Appraises the platform (PCK certificate) and the TD's TDX module (TD report).
    pub(crate) fn appraise(&self, pck: &PckInfo, body: &TdReport) -> Result<PlatformTcb, TdxError> {
        if pck.fmspc != self.fmspc {
            return Err(TdxError::CollateralMismatch(format!(
                "PCK FMSPC {} but TCB Info FMSPC {}",
                crate::encoding::hex_upper(pck.fmspc),
                crate::encoding::hex_upper(self.fmspc)
            )));
        }
        if pck.pce_id != self.pce_id {
            return Err(TdxError::CollateralMismatch(format!(
                "PCK PCE-ID {} but TCB Info PCE-ID {}",
                crate::encoding::hex_upper(pck.pce_id),
                crate::encoding::hex_upper(self.pce_id)
            )));
        }
        let launch = self.appraise_tee_tcb(pck, &body.tee_tcb_svn)?;
        self.check_module_signer(body)?;
        // After a TD-preserving module update a TD 1.5's current TCB differs from its launch TCB;
        // like Intel's QVL it must be appraisable too.
        let current = body
            .tee_tcb_svn2
            .map(|svn2| self.appraise_tee_tcb(pck, &svn2))
            .transpose()?;
        Ok(PlatformTcb { launch, current })
    }

    /// The first level the platform meets for `tee_tcb_svn`, converged with the module's level.
    fn appraise_tee_tcb(
        &self,
        pck: &PckInfo,
        tee_tcb_svn: &[u8; 16],
    ) -> Result<TcbVerdict, TdxError> {
        let module_version = tee_tcb_svn[1];
        // With a module version, TEE_TCB_SVN[0..2] are appraised by the module identity instead.
        let skip = if module_version > 0 { 2 } else { 0 };
        let meets = |level: &&TcbLevel| {
            at_least(&pck.tcb_components, &level.sgx_components, 0)
                && pck.pce_svn >= level.pce_svn
                && at_least(tee_tcb_svn, &level.tdx_components, skip)
        };
        let level = self.levels.iter().find(meets).ok_or_else(|| {
            TdxError::TcbLevelNotFound(format!(
                "platform SVNs {} / PCESVN {} / TEE_TCB_SVN {} meet no TCB level",
                crate::encoding::hex(pck.tcb_components),
                pck.pce_svn,
                crate::encoding::hex(tee_tcb_svn)
            ))
        })?;
        let mut verdict = checked_status(&level.verdict, PLATFORM_STATUSES, "TCB level")?;
        if module_version > 0 {
            let identity = self.module_identity(module_version)?;
            let module_svn = tee_tcb_svn[0];
            let (_, module_verdict) = identity
                .levels
                .iter()
                .find(|(isvsvn, _)| u16::from(module_svn) >= *isvsvn)
                .ok_or_else(|| {
                    TdxError::TcbLevelNotFound(format!(
                        "TDX module ISVSVN {module_svn} is below every level of {}",
                        identity.id
                    ))
                })?;
            verdict.absorb(&checked_status(
                module_verdict,
                MODULE_STATUSES,
                "TDX module level",
            )?);
        }
        Ok(verdict)
    }

    fn module_identity(&self, module_version: u8) -> Result<&ModuleIdentity, TdxError> {
        let wanted = format!("TDX_{module_version:02X}");
        self.module_identities
            .iter()
            .find(|identity| identity.id.eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| {
                TdxError::TcbLevelNotFound(format!("TCB Info has no TDX module identity {wanted}"))
            })
    }

    /// MRSIGNERSEAM and SEAMATTRIBUTES against the module identity (or the base `tdxModule`).
    fn check_module_signer(&self, body: &TdReport) -> Result<(), TdxError> {
        let module_version = body.tee_tcb_svn[1];
        let expected = if module_version > 0 {
            &self.module_identity(module_version)?.signer
        } else {
            &self.base_module
        };
        if body.mr_signer_seam != expected.mrsigner {
            return Err(TdxError::TdxModuleMismatch(format!(
                "MRSIGNERSEAM {} is not {}",
                crate::encoding::hex(body.mr_signer_seam),
                crate::encoding::hex(expected.mrsigner)
            )));
        }
        let attributes = body.seam_attributes.iter().zip(&expected.attributes);
        for ((actual, wanted), mask) in attributes.zip(&expected.attributes_mask) {
            // Masked bits must match; bits outside the mask must be clear.
            if actual & mask != wanted & mask || actual & !mask != 0 {
                return Err(TdxError::TdxModuleMismatch(format!(
                    "SEAMATTRIBUTES {} do not match {} under mask {}",
                    crate::encoding::hex(body.seam_attributes),
                    crate::encoding::hex(expected.attributes),
                    crate::encoding::hex(expected.attributes_mask)
                )));
            }
        }
        Ok(())
    }
}

/// Whether every component of `have` from index `skip` on is at least the required one.
fn at_least(have: &[u8; 16], needs: &[u8; 16], skip: usize) -> bool {
    have.iter()
        .zip(needs)
        .skip(skip)
        .all(|(have, needs)| have >= needs)
}

fn checked_status(
    verdict: &TcbVerdict,
    allowed: &[TcbStatus],
    structure: &'static str,
) -> Result<TcbVerdict, TdxError> {
    if allowed.contains(&verdict.status) {
        Ok(verdict.clone())
    } else {
        Err(TdxError::CollateralInvalid(format!(
            "{structure} has status {}, which Intel does not define there",
            verdict.status
        )))
    }
}

impl ModuleSigner {
    fn parse(json: &ModuleSignerJson) -> Result<ModuleSigner, TdxError> {
        Ok(ModuleSigner {
            mrsigner: hex_array(DOCUMENT, "TDX module mrsigner", &json.mrsigner)?,
            attributes: hex_array(DOCUMENT, "TDX module attributes", &json.attributes)?,
            attributes_mask: hex_array(
                DOCUMENT,
                "TDX module attributesMask",
                &json.attributes_mask,
            )?,
        })
    }
}

impl ModuleIdentity {
    fn parse(json: &ModuleIdentityJson) -> Result<ModuleIdentity, TdxError> {
        let levels = isv_levels(&json.tcb_levels);
        Ok(ModuleIdentity {
            id: json.id.clone(),
            signer: ModuleSigner::parse(&json.signer)?,
            levels,
        })
    }
}

impl TcbLevel {
    fn parse(json: &TcbLevelJson) -> Result<TcbLevel, TdxError> {
        Ok(TcbLevel {
            sgx_components: components("sgxtcbcomponents", &json.tcb.sgxtcbcomponents)?,
            pce_svn: json.tcb.pcesvn,
            tdx_components: components("tdxtcbcomponents", &json.tcb.tdxtcbcomponents)?,
            verdict: TcbVerdict {
                status: json.tcb_status,
                advisory_ids: json.advisory_ids.clone(),
            },
        })
    }
}

fn components(field: &'static str, json: &[ComponentJson]) -> Result<[u8; 16], TdxError> {
    let svns: Vec<u8> = json.iter().map(|component| component.svn).collect();
    svns.try_into().map_err(|svns: Vec<u8>| {
        TdxError::CollateralInvalid(format!(
            "{DOCUMENT} {field} has {} entries, not 16",
            svns.len()
        ))
    })
}
