//! What `propose` warns about (and `--strict` refuses) when it can see the registry: a proposal
//! that would change nothing, repeat a scheduled change, or target something that cannot take
//! it. Pure: the view, its timelock changes and what is known about code at the targets.

use serde::Serialize;

use super::call::{AllowlistCall, Contract};
use super::pending::PendingChange;
use super::Proposal;
use crate::encoding::to_0x_hex;
use crate::registry::view::{Address, AppCode, AppList, KmsList, RegistryView};

/// The class of a warning; its snake_case JSON spelling is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// An add of a value already on its list.
    AlreadyRegistered,
    /// The same change is already scheduled in a timelock (waiting or ready).
    AlreadyPending,
    /// A removal of a value that is not on its list.
    NotRegistered,
    /// An app call to an app the KMS has not registered.
    AppNotRegistered,
    /// A target (the KMS, an app, the timelock) without contract code.
    NotAContract,
}

/// Something a proposal would get wrong on the current view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The class of the warning.
    pub kind: WarningKind,
    /// What is wrong, naming the value and the target, for people.
    pub message: String,
}

/// Reviews `proposal` against `view` (which is of the KMS `kms`), the view's timelock
/// `changes`, and `has_code`: whether an address has contract code (`None`: unknown).
pub fn review(
    proposal: &Proposal,
    kms: Address,
    view: &RegistryView,
    changes: &[PendingChange],
    has_code: &dyn Fn(&Address) -> Option<bool>,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut warn = |kind, message| warnings.push(Warning { kind, message });
    let mut targets: Vec<(Address, &str)> = vec![(kms, "the KMS contract")];
    if let Some(op) = proposal.timelock() {
        targets.push((op.timelock, "the timelock"));
    }
    for call in proposal.calls() {
        if call.function.contract() == Contract::App
            && !targets.iter().any(|t| t.0 == call.contract)
        {
            targets.push((call.contract, "the app"));
        }
    }
    for (address, what) in targets {
        if has_code(&address) == Some(false) {
            warn(
                WarningKind::NotAContract,
                format!("{what} {} has no contract code", to_0x_hex(&address)),
            );
        }
    }
    for call in proposal.calls() {
        let described = describe(call);
        let listed = match call.function.contract() {
            Contract::Kms => Some(view.contains(kms_list(call), &call.value)),
            Contract::App => match view.app(&call.contract) {
                None => {
                    warn(
                        WarningKind::AppNotRegistered,
                        format!(
                            "{described}: app {} is not registered with the KMS",
                            to_0x_hex(&call.contract)
                        ),
                    );
                    None
                }
                // Lists of apps the view cannot read are not known.
                Some(app) if app.policy().code != AppCode::Known => None,
                Some(app) => Some(match app_list(call) {
                    AppList::ComposeHashes => app.allows_compose_hash(&call.value),
                    AppList::DeviceIds => app.allows_device(&call.value),
                }),
            },
        };
        match (listed, call.function.adds()) {
            (Some(true), true) => warn(
                WarningKind::AlreadyRegistered,
                format!("{described}: already registered"),
            ),
            (Some(false), false) => warn(
                WarningKind::NotRegistered,
                format!("{described}: not registered, nothing to remove"),
            ),
            _ => {}
        }
        for change in changes
            .iter()
            .filter(|c| c.state.is_pending() && c.call == *call)
        {
            warn(
                WarningKind::AlreadyPending,
                format!(
                    "{described}: already scheduled in timelock {} (operation {}, {:?}, ETA {})",
                    to_0x_hex(&change.timelock),
                    to_0x_hex(&change.operation_id),
                    change.state,
                    change.eta
                ),
            );
        }
    }
    warnings
}

fn describe(call: &AllowlistCall) -> String {
    format!(
        "{}({}) on {}",
        call.function.name(),
        to_0x_hex(&call.value),
        to_0x_hex(&call.contract)
    )
}

fn kms_list(call: &AllowlistCall) -> KmsList {
    use super::Function::*;
    match call.function {
        AddOsImageHash | RemoveOsImageHash => KmsList::OsImages,
        AddKmsAggregatedMr | RemoveKmsAggregatedMr => KmsList::KmsAggregatedMrs,
        _ => KmsList::KmsDeviceIds,
    }
}

fn app_list(call: &AllowlistCall) -> AppList {
    use super::Function::*;
    match call.function {
        AddComposeHash | RemoveComposeHash => AppList::ComposeHashes,
        _ => AppList::DeviceIds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{Function, PendingState, TimelockPlan};

    const KMS: Address = [0x11; 20];
    const APP: Address = [0x22; 20];
    const UNREGISTERED: Address = [0x33; 20];
    const TIMELOCK: Address = [0x44; 20];

    fn call(contract: Address, function: Function, byte: u8) -> AllowlistCall {
        AllowlistCall {
            contract,
            function,
            value: [byte; 32],
        }
    }

    fn kinds(warnings: &[Warning]) -> Vec<WarningKind> {
        warnings.iter().map(|w| w.kind).collect()
    }

    #[test]
    fn warns_about_changes_that_change_nothing_or_cannot_apply() {
        let mut view = RegistryView::new();
        view.set(KmsList::OsImages, [1; 32], true);
        view.register_app(APP);
        view.set_app_value(&APP, AppList::ComposeHashes, [2; 32], true);
        let calls = vec![
            call(KMS, Function::AddOsImageHash, 1),
            call(KMS, Function::RemoveKmsDevice, 3),
            call(APP, Function::AddComposeHash, 2),
            call(APP, Function::RemoveDevice, 4),
            call(UNREGISTERED, Function::AddComposeHash, 5),
            call(KMS, Function::AddOsImageHash, 6),
        ];
        let plan = TimelockPlan {
            timelock: TIMELOCK,
            delay: 60,
            salt: [0; 32],
            predecessor: [0; 32],
        };
        let proposal = Proposal::new(KMS, calls.clone(), Some(plan)).unwrap();
        let scheduled = PendingChange {
            timelock: TIMELOCK,
            operation_id: [9; 32],
            index: 0,
            call: calls[5],
            eta: 100,
            state: PendingState::Waiting,
            scheduled_block: 1,
            settled_block: None,
        };
        let cancelled = PendingChange {
            state: PendingState::Cancelled,
            ..scheduled.clone()
        };
        let code = |address: &Address| Some(*address != TIMELOCK);
        let warnings = review(&proposal, KMS, &view, &[scheduled, cancelled], &code);
        assert_eq!(
            kinds(&warnings),
            [
                WarningKind::NotAContract,
                WarningKind::AlreadyRegistered,
                WarningKind::NotRegistered,
                WarningKind::AlreadyRegistered,
                WarningKind::NotRegistered,
                WarningKind::AppNotRegistered,
                WarningKind::AlreadyPending,
            ],
            "{warnings:#?}"
        );
        assert!(warnings[0].message.contains("the timelock"));
        // Nothing to say about a fresh, well-aimed proposal.
        let fresh = Proposal::new(KMS, vec![call(KMS, Function::AddOsImageHash, 7)], None).unwrap();
        assert!(review(&fresh, KMS, &view, &[], &|_| None).is_empty());
    }
}
