//! TD attribute policy (TDX Module ABI 348551-008US table 3.23), as dcap-qvl applies it: DEBUG
//! (bit 0) and the profiling bits (4..6) are refused unless `allow_debug`; reserved must-be-zero
//! bits, MIGRATABLE, SERVTD_EXT and a non-zero MRSERVICETD are always refused; SEPT_VE_DISABLE
//! (bit 28) is required.

use super::error::TdxError;
use super::quote::TdReport;

/// What the relying party accepts beyond a genuine, non-revoked quote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdxPolicy {
    /// Accept a TD in debug mode or with profiling enabled (its memory is readable by the host).
    pub allow_debug: bool,
}

const fn bits(low: u32, high: u32) -> u64 {
    (u64::MAX << low) & (u64::MAX >> (63 - high))
}

const DEBUG: u64 = bits(0, 0);
/// TUD bits 4..6: performance-monitoring and profiling of the TD by the host.
const PROFILING: u64 = bits(4, 6);
const SERVTD_EXT: u64 = bits(17, 17);
const SEPT_VE_DISABLE: u64 = bits(28, 28);
const MIGRATABLE: u64 = bits(29, 29);
/// Must-be-zero bits of TDATTRIBUTES in the TDX 1.5 ABI.
const RESERVED: u64 = bits(1, 3) | bits(7, 15) | bits(23, 26) | bits(32, 61);

/// Refuses debug, profiled, migratable and service-TD-bound TDs, set reserved bits, and TDs that
/// can be sent #VE on pending pages (SEPT_VE_DISABLE clear).
pub(crate) fn check_td_attributes(body: &TdReport, policy: &TdxPolicy) -> Result<(), TdxError> {
    let attributes = u64::from_le_bytes(body.td_attributes);
    let refuse = |reason| Err(TdxError::TdAttributes(reason));
    if attributes & DEBUG != 0 && !policy.allow_debug {
        return refuse("the TD runs in debug mode");
    }
    if attributes & PROFILING != 0 && !policy.allow_debug {
        return refuse("the TD allows host profiling");
    }
    if attributes & RESERVED != 0 {
        return refuse("reserved TD attribute bits are set");
    }
    if attributes & MIGRATABLE != 0 {
        return refuse("the TD is migratable");
    }
    if attributes & SERVTD_EXT != 0 {
        return refuse("the TD is bound to service TDs (SERVTD_EXT)");
    }
    if body.mr_service_td.is_some_and(|hash| hash != [0; 48]) {
        return refuse("the TD is bound to service TDs (MRSERVICETD)");
    }
    if attributes & SEPT_VE_DISABLE == 0 {
        return refuse("SEPT_VE_DISABLE is not set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::quote::TdReportKind;

    fn body(attributes: u64) -> TdReport {
        TdReport {
            kind: TdReportKind::Td10,
            tee_tcb_svn: [0; 16],
            mr_seam: [0; 48],
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: attributes.to_le_bytes(),
            xfam: [0; 8],
            mr_td: [0; 48],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [[0; 48]; 4],
            report_data: [0; 64],
            tee_tcb_svn2: None,
            mr_service_td: None,
            td15_ex: None,
        }
    }

    fn verdict(attributes: u64, allow_debug: bool) -> Result<(), TdxError> {
        check_td_attributes(&body(attributes), &TdxPolicy { allow_debug })
    }

    #[test]
    fn masks_are_the_abi_bits() {
        assert_eq!(RESERVED, 0x3fff_ffff_0780_ff8e);
        assert_eq!(PROFILING, 0x70);
        assert_eq!(SEPT_VE_DISABLE, 0x1000_0000);
    }

    #[test]
    fn production_td_passes() {
        // The dcap-qvl and dstack samples: only SEPT_VE_DISABLE.
        verdict(SEPT_VE_DISABLE, false).unwrap();
        // Defined, harmless bits: ICSSD, LASS, PKS, KL, TPA, PERFMON and bits 18..22.
        let defined = bits(16, 16) | bits(18, 22) | bits(27, 27) | bits(30, 31) | bits(62, 63);
        verdict(SEPT_VE_DISABLE | defined, false).unwrap();
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let refused = |attributes, allow_debug| {
            let err = verdict(attributes, allow_debug).unwrap_err();
            assert_eq!(err.kind().as_str(), "td_attributes");
            err.to_string()
        };
        assert!(refused(SEPT_VE_DISABLE | DEBUG, false).contains("debug"));
        assert!(refused(SEPT_VE_DISABLE | bits(5, 5), false).contains("profiling"));
        assert!(refused(0, false).contains("SEPT_VE_DISABLE"));
        assert!(refused(SEPT_VE_DISABLE | MIGRATABLE, true).contains("migratable"));
        assert!(refused(SEPT_VE_DISABLE | SERVTD_EXT, true).contains("SERVTD_EXT"));
        for bit in [1, 3, 7, 15, 23, 26, 32, 61] {
            assert!(
                refused(SEPT_VE_DISABLE | bits(bit, bit), true).contains("reserved"),
                "{bit}"
            );
        }
    }

    #[test]
    fn allow_debug_admits_debug_and_profiling_only() {
        verdict(SEPT_VE_DISABLE | DEBUG | PROFILING, true).unwrap();
        assert!(verdict(DEBUG, true).is_err());
    }

    #[test]
    fn td15_service_td_hash_must_be_zero() {
        let mut td15 = body(SEPT_VE_DISABLE);
        td15.kind = TdReportKind::Td15;
        td15.mr_service_td = Some([0; 48]);
        check_td_attributes(&td15, &TdxPolicy::default()).unwrap();
        td15.mr_service_td = Some([1; 48]);
        let err = check_td_attributes(&td15, &TdxPolicy { allow_debug: true }).unwrap_err();
        assert!(err.to_string().contains("MRSERVICETD"));
    }
}
