//! TCB statuses and how Intel's QVL combines them (`convergeTcbStatuses`, `checkForRelaunch`).

use serde::Deserialize;

/// A TCB status as Intel's collateral spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// Up to date, but software mitigations (listed in the advisories) are needed.
    SWHardeningNeeded,
    /// Up to date, but the platform configuration needs changing (see the advisories).
    ConfigurationNeeded,
    /// Both `ConfigurationNeeded` and `SWHardeningNeeded`.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is behind the latest; the platform needs a microcode or firmware update.
    OutOfDate,
    /// Both `OutOfDate` and `ConfigurationNeeded`.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked; verification refuses it with `TdxError::Revoked`.
    Revoked,
    /// TD 1.5: launched on an out-of-date TCB that a TD-preserving update has since fixed.
    TDRelaunchAdvised,
    /// `TDRelaunchAdvised`, and the current configuration also needs changing.
    TDRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// The spelling Intel's collateral and this crate's JSON output use (`"UpToDate"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
        }
    }

    /// Folds a QE or TDX-module status into a platform status: only an `OutOfDate` or `Revoked`
    /// component changes it.
    pub(crate) fn converge_with_component(self, component: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (component, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            _ => self,
        }
    }

    /// Combines a TD 1.5's launch status with the status of its current TCB (TEE_TCB_SVN2).
    pub(crate) fn check_for_relaunch(self, current: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        let needs_configuration = |status| {
            matches!(
                status,
                ConfigurationNeeded
                    | OutOfDateConfigurationNeeded
                    | ConfigurationAndSWHardeningNeeded
                    | TDRelaunchAdvisedConfigurationNeeded
            )
        };
        match (self, current) {
            (
                OutOfDate | OutOfDateConfigurationNeeded,
                UpToDate
                | SWHardeningNeeded
                | ConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded,
            ) => {
                if needs_configuration(self) || needs_configuration(current) {
                    TDRelaunchAdvisedConfigurationNeeded
                } else {
                    TDRelaunchAdvised
                }
            }
            _ => self,
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status with the advisories behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcbVerdict {
    /// The converged status.
    pub status: TcbStatus,
    /// Intel security advisory IDs (`INTEL-SA-…`) behind the status, without duplicates.
    pub advisory_ids: Vec<String>,
}

impl TcbVerdict {
    /// Converges `component` into `self` and appends its advisories not already listed.
    pub(crate) fn absorb(&mut self, component: &TcbVerdict) {
        self.status = self.status.converge_with_component(component.status);
        for id in &component.advisory_ids {
            if !self.advisory_ids.contains(id) {
                self.advisory_ids.push(id.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TcbStatus::*;
    use super::*;

    #[test]
    fn convergence_matches_intel() {
        for (platform, component, expected) in [
            (UpToDate, OutOfDate, OutOfDate),
            (SWHardeningNeeded, OutOfDate, OutOfDate),
            (ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded),
            (
                ConfigurationAndSWHardeningNeeded,
                OutOfDate,
                OutOfDateConfigurationNeeded,
            ),
            (
                OutOfDateConfigurationNeeded,
                OutOfDate,
                OutOfDateConfigurationNeeded,
            ),
            (ConfigurationNeeded, Revoked, Revoked),
            (UpToDate, ConfigurationNeeded, UpToDate),
            (UpToDate, OutOfDateConfigurationNeeded, UpToDate),
            (SWHardeningNeeded, UpToDate, SWHardeningNeeded),
        ] {
            assert_eq!(platform.converge_with_component(component), expected);
        }
    }

    #[test]
    fn relaunch_matches_intel() {
        for (launch, current, expected) in [
            (OutOfDate, UpToDate, TDRelaunchAdvised),
            (OutOfDate, SWHardeningNeeded, TDRelaunchAdvised),
            (
                OutOfDate,
                ConfigurationNeeded,
                TDRelaunchAdvisedConfigurationNeeded,
            ),
            (
                OutOfDateConfigurationNeeded,
                UpToDate,
                TDRelaunchAdvisedConfigurationNeeded,
            ),
            (OutOfDate, OutOfDate, OutOfDate),
            (OutOfDate, Revoked, OutOfDate),
            (UpToDate, UpToDate, UpToDate),
            (ConfigurationNeeded, UpToDate, ConfigurationNeeded),
        ] {
            assert_eq!(launch.check_for_relaunch(current), expected);
        }
    }

    #[test]
    fn absorb_merges_advisories_once() {
        let mut platform = TcbVerdict {
            status: UpToDate,
            advisory_ids: vec!["A".into()],
        };
        platform.absorb(&TcbVerdict {
            status: OutOfDate,
            advisory_ids: vec!["A".into(), "B".into()],
        });
        assert_eq!(platform.status, OutOfDate);
        assert_eq!(platform.advisory_ids, ["A", "B"]);
    }

    #[test]
    fn names_round_trip() {
        for status in [
            UpToDate,
            SWHardeningNeeded,
            ConfigurationNeeded,
            ConfigurationAndSWHardeningNeeded,
            OutOfDate,
            OutOfDateConfigurationNeeded,
            Revoked,
            TDRelaunchAdvised,
            TDRelaunchAdvisedConfigurationNeeded,
        ] {
            let json = format!("\"{status}\"");
            assert_eq!(serde_json::from_str::<TcbStatus>(&json).unwrap(), status);
        }
    }
}
