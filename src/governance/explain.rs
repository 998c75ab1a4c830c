//! "Why was I refused?": the contract's decision, every check `DstackKms.isAppAllowed` (and the
//! app's `isAppAllowed`) or `isKmsAllowed` makes, in its order, with its outcome and values, and
//! hints for the mistakes users make (the registration guide's Common Issues, and those users
//! report).
//!
//! The decision is never recomputed here: it is the one `check` gives (from the registry, i.e.
//! `registry::decision` or the contract itself). The checks are derived from the same view and
//! must agree with it; if they do not (the view moved between the two reads), explaining fails
//! rather than contradict the decision.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::call::Function;
use super::compose::{compose_hash, unpinned_images};
use super::pending::{PendingChange, PendingState};
use crate::boot_info::{BootInfo, BootInfoJson};
use crate::encoding::to_0x_hex;
use crate::nitro::DEBUG_OS_IMAGE_HASH;
use crate::registry::decision::{kms_is_app_allowed, reason, AppVerdict, TCB_UP_TO_DATE};
use crate::registry::view::{AppCode, AppList, AppView, Bytes32, KmsList, RegistryView};
use crate::registry::{Decision, Entry, Evaluation};

/// Why a boot is allowed or refused: the contract's decision, every check it makes with its
/// outcome, and hints at the usual mistakes behind a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The contract's answer, identical to the registry's decision.
    pub allowed: bool,
    /// The contract's reason string (empty when allowed).
    pub reason: String,
    /// The block the view stands at.
    pub block: u64,
    /// The contract's checks, in its order.
    pub checks: Vec<Check>,
    /// What may explain a failing check.
    pub hints: Vec<Hint>,
}

/// One check of the contract, in the contract's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked (`os_image_allowed`, ...).
    pub name: &'static str,
    /// Whether the check passes on the view.
    pub ok: bool,
    /// Whether the contract got this far (it stops at the first failing check). Later checks
    /// are still evaluated on the view, so every problem shows at once.
    pub reached: bool,
    /// The values involved, for people.
    pub detail: String,
    /// The reason string the contract returns when this check fails.
    #[serde(skip)]
    pub fails_with: Option<&'static str>,
}

/// The class of a hint; its snake_case JSON spelling is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HintKind {
    /// The value is not on its allowlist.
    NotRegistered,
    /// The compose hash is allowed for another app.
    RegisteredElsewhere,
    /// The value was on its allowlist and was removed.
    Revoked,
    /// A timelock has the change scheduled.
    Pending,
    /// A value given with the wrong width, or one that matches a registered value only when
    /// padded or trimmed.
    HexWidth,
    /// The image hash of a debug-mode enclave.
    DebugImage,
    /// The app requires an UpToDate TCB and the boot's is not.
    TcbNotUpToDate,
    /// The device id is not allowed (by the app, or by the KMS for a KMS boot).
    DeviceNotAllowed,
    /// The app is not registered with the KMS, or has no code.
    AppNotRegistered,
    /// An image pulled by tag: the measurement does not pin the code.
    UnpinnedImage,
    /// The app-compose.json given does not hash to the boot's compose hash.
    ComposeHashMismatch,
}

/// One hint: its kind, a message for people, and the values it is about (absent fields are
/// left out of the JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hint {
    /// The class of the hint.
    pub kind: HintKind,
    /// What it means and what to do, for people.
    pub message: String,
    /// The boot info field concerned (webhook spelling, e.g. `composeHash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// The value concerned, 0x-hex (as given, when given with the wrong width).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A registered value it resembles (`hex_width`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
    /// Other apps allowing the compose hash (`registered_elsewhere`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// The block of the removal (`revoked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The timelock operation that schedules the change (`pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The scheduled function's name (`pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<&'static str>,
    /// When the operation becomes executable, unix seconds (`pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta: Option<u64>,
    /// The operation's state (`pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<PendingState>,
    /// The app-compose.json service concerned (`unpinned_image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The image reference as written (`unpinned_image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Hint {
    fn new(kind: HintKind, message: String) -> Hint {
        Hint {
            kind,
            message,
            field: None,
            value: None,
            registered: None,
            apps: Vec::new(),
            block: None,
            operation_id: None,
            function: None,
            eta: None,
            state: None,
            service: None,
            image: None,
        }
    }

    fn about(mut self, field: &'static str, value: &Bytes32) -> Hint {
        self.field = Some(field);
        self.value = Some(to_0x_hex(value));
        self
    }
}

/// The block of each entry's latest removal (from the source's history: removal events, or
/// executed timelock removals).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removals(HashMap<Entry, u64>);

impl Removals {
    /// No removal known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `entry` was removed at `block` (the latest block wins).
    pub fn record(&mut self, entry: Entry, block: u64) {
        let latest = self.0.entry(entry).or_insert(block);
        *latest = (*latest).max(block);
    }

    /// The block of `entry`'s latest removal, if it was ever removed.
    pub fn block_of(&self, entry: &Entry) -> Option<u64> {
        self.0.get(entry).copied()
    }

    /// Records the removals a timelock executed.
    pub fn record_executed(&mut self, changes: &[PendingChange]) {
        for change in changes {
            if let (PendingState::Executed, Some(block), false) = (
                change.state,
                change.settled_block,
                change.call.function.adds(),
            ) {
                self.record(change.call.entry(), block);
            }
        }
    }
}

/// What explaining can use beside the view and the boot info.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The boot info as given (the webhook's hex strings), so widths can be told.
    pub given: Option<&'a BootInfoJson>,
    /// The view's timelock changes (any state).
    pub pending: &'a [PendingChange],
    /// Past removals, to tell `revoked` from `not_registered`.
    pub removals: Option<&'a Removals>,
    /// The app-compose.json the user deploys (`--app-compose`).
    pub app_compose: Option<&'a [u8]>,
}

/// Builds the checks in order, marking which the contract reached.
struct Checks(Vec<Check>);

impl Checks {
    fn push(&mut self, name: &'static str, ok: bool, fails_with: &'static str, detail: String) {
        self.push_check(name, Some(ok), fails_with, detail);
    }

    /// `ok: None`: the view cannot evaluate it (recorded as not ok, never reached).
    fn push_check(
        &mut self,
        name: &'static str,
        ok: Option<bool>,
        fails_with: &'static str,
        detail: String,
    ) {
        let reached = ok.is_some() && self.0.iter().all(|c| c.ok);
        self.0.push(Check {
            name,
            ok: ok.unwrap_or(false),
            reached,
            detail,
            fails_with: Some(fails_with),
        });
    }
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "true"
    } else {
        "false"
    }
}

fn inconsistent(decision: &Decision, view: String) -> super::GovernanceError {
    super::GovernanceError::InconsistentView {
        decision: format!(
            "allowed={} reason={:?} at block {}",
            decision.allowed, decision.reason, decision.block
        ),
        view,
    }
}

/// Explains `DstackKms.isAppAllowed(boot)`, decided as `decision` on `view`.
pub fn explain_app(
    view: &RegistryView,
    decision: &Decision,
    boot: &BootInfo,
    context: &Context<'_>,
) -> Result<Explanation, super::GovernanceError> {
    let app = view.app(&boot.app_id);
    let os_allowed = view.contains(KmsList::OsImages, &boot.os_image_hash);
    let app_id = to_0x_hex(&boot.app_id);
    let mut checks = Checks(Vec::new());
    checks.push(
        "app_registered",
        app.is_some(),
        reason::APP_NOT_REGISTERED,
        format!(
            "DstackKms.registeredApps({app_id}) is {}",
            yes(app.is_some())
        ),
    );
    checks.push(
        "os_image_allowed",
        os_allowed,
        reason::OS_IMAGE_NOT_ALLOWED,
        format!(
            "DstackKms.allowedOsImages({}) is {}",
            to_0x_hex(&boot.os_image_hash),
            yes(os_allowed)
        ),
    );
    let unevaluated = |why: &str| format!("not evaluated: {why}");
    match app {
        None => {
            for (name, fails_with) in app_check_names() {
                checks.push_check(
                    name,
                    None,
                    fails_with,
                    unevaluated("the app is not registered"),
                );
            }
        }
        Some(app) => match app.policy().code {
            AppCode::Absent => {
                checks.push(
                    "app_deployed",
                    false,
                    reason::APP_NOT_DEPLOYED,
                    format!("no contract code at {app_id}"),
                );
                for (name, fails_with) in &app_check_names()[1..] {
                    checks.push_check(name, None, fails_with, unevaluated("no app contract"));
                }
            }
            AppCode::Unknown => {
                checks.push(
                    "app_deployed",
                    true,
                    reason::APP_NOT_DEPLOYED,
                    format!("contract code at {app_id}"),
                );
                let asked = decision.evaluated_by == Evaluation::Contract;
                let detail = if asked {
                    format!(
                        "{app_id} does not run known DstackApp code; its own isAppAllowed answered ({}, {:?})",
                        decision.allowed, decision.reason
                    )
                } else {
                    unevaluated("the app does not run known DstackApp code")
                };
                let index = checks.0.len();
                checks.push_check(
                    "app_is_app_allowed",
                    asked.then_some(decision.allowed),
                    "",
                    detail,
                );
                // The contract's own reason, whatever it is.
                checks.0[index].fails_with = None;
            }
            AppCode::Known => known_app_checks(&mut checks, &app, boot),
        },
    }
    consistent_app(view, decision, boot, &checks.0)?;
    let mut hints = Vec::new();
    app_hints(view, boot, context, &mut hints);
    common_hints(boot, context, &mut hints);
    Ok(Explanation {
        allowed: decision.allowed,
        reason: decision.reason.clone(),
        block: decision.block,
        checks: checks.0,
        hints,
    })
}

fn app_check_names() -> [(&'static str, &'static str); 4] {
    [
        ("app_deployed", reason::APP_NOT_DEPLOYED),
        ("tcb_up_to_date", reason::TCB_NOT_UP_TO_DATE),
        ("compose_hash_allowed", reason::COMPOSE_HASH_NOT_ALLOWED),
        ("device_allowed", reason::DEVICE_NOT_ALLOWED),
    ]
}

/// `DstackApp.isAppAllowed`'s checks, after the KMS's code check.
fn known_app_checks(checks: &mut Checks, app: &AppView<'_>, boot: &BootInfo) {
    let policy = app.policy();
    checks.push(
        "app_deployed",
        true,
        reason::APP_NOT_DEPLOYED,
        format!("known DstackApp code at {}", to_0x_hex(&boot.app_id)),
    );
    let tcb_ok = !policy.require_tcb_up_to_date || boot.tcb_status == TCB_UP_TO_DATE;
    checks.push(
        "tcb_up_to_date",
        tcb_ok,
        reason::TCB_NOT_UP_TO_DATE,
        format!(
            "requireTcbUpToDate is {}; tcbStatus is {:?}",
            yes(policy.require_tcb_up_to_date),
            boot.tcb_status
        ),
    );
    let compose_ok = app.allows_compose_hash(&boot.compose_hash);
    checks.push(
        "compose_hash_allowed",
        compose_ok,
        reason::COMPOSE_HASH_NOT_ALLOWED,
        format!(
            "allowedComposeHashes({}) is {}",
            to_0x_hex(&boot.compose_hash),
            yes(compose_ok)
        ),
    );
    let device_listed = app.allows_device(&boot.device_id);
    checks.push(
        "device_allowed",
        policy.allow_any_device || device_listed,
        reason::DEVICE_NOT_ALLOWED,
        format!(
            "allowAnyDevice is {}; allowedDeviceIds({}) is {}",
            yes(policy.allow_any_device),
            to_0x_hex(&boot.device_id),
            yes(device_listed)
        ),
    );
}

/// The checks must give the decision: allowed iff every check passed, else the first failing
/// check's reason; and a view-evaluated decision must be what decision.rs gives on this view.
fn consistent_app(
    view: &RegistryView,
    decision: &Decision,
    boot: &BootInfo,
    checks: &[Check],
) -> Result<(), super::GovernanceError> {
    let local = kms_is_app_allowed(view, boot);
    match (decision.evaluated_by, local) {
        (Evaluation::View, AppVerdict::Decided(verdict))
            if verdict.allowed != decision.allowed || verdict.reason != decision.reason =>
        {
            return Err(inconsistent(
                decision,
                format!("allowed={} reason={:?}", verdict.allowed, verdict.reason),
            ));
        }
        (Evaluation::Contract, AppVerdict::Decided(verdict)) => {
            return Err(inconsistent(
                decision,
                format!("decided locally: {:?}", verdict.reason),
            ));
        }
        _ => {}
    }
    first_failure_matches(decision, checks)
}

fn first_failure_matches(
    decision: &Decision,
    checks: &[Check],
) -> Result<(), super::GovernanceError> {
    match checks.iter().find(|c| !c.ok) {
        None if decision.allowed => Ok(()),
        Some(check) if !decision.allowed && check.reached => match check.fails_with {
            Some(reason) if reason != decision.reason => Err(inconsistent(
                decision,
                format!("{} fails with {reason:?}", check.name),
            )),
            _ => Ok(()),
        },
        _ => Err(inconsistent(
            decision,
            format!(
                "checks {}",
                checks
                    .iter()
                    .map(|c| format!("{}={}", c.name, c.ok))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        )),
    }
}

/// Explains `DstackKms.isKmsAllowed(boot)`, decided as `decision` on `view`.
pub fn explain_kms(
    view: &RegistryView,
    decision: &Decision,
    boot: &BootInfo,
    context: &Context<'_>,
) -> Result<Explanation, super::GovernanceError> {
    let mut checks = Checks(Vec::new());
    let tcb_ok = boot.tcb_status == TCB_UP_TO_DATE;
    checks.push(
        "tcb_up_to_date",
        tcb_ok,
        reason::TCB_NOT_UP_TO_DATE,
        format!(
            "tcbStatus is {:?} (the KMS requires UpToDate)",
            boot.tcb_status
        ),
    );
    for (name, list, value, fails_with, getter) in [
        (
            "os_image_allowed",
            KmsList::OsImages,
            &boot.os_image_hash,
            reason::OS_IMAGE_NOT_ALLOWED,
            "allowedOsImages",
        ),
        (
            "kms_aggregated_mr_allowed",
            KmsList::KmsAggregatedMrs,
            &boot.mr_aggregated,
            reason::AGGREGATED_MR_NOT_ALLOWED,
            "kmsAllowedAggregatedMrs",
        ),
        (
            "kms_device_allowed",
            KmsList::KmsDeviceIds,
            &boot.device_id,
            reason::KMS_DEVICE_NOT_ALLOWED,
            "kmsAllowedDeviceIds",
        ),
    ] {
        let ok = view.contains(list, value);
        checks.push(
            name,
            ok,
            fails_with,
            format!("DstackKms.{getter}({}) is {}", to_0x_hex(value), yes(ok)),
        );
    }
    let local = crate::registry::decision::kms_is_kms_allowed(view, boot);
    if local.allowed != decision.allowed || local.reason != decision.reason {
        return Err(inconsistent(
            decision,
            format!("allowed={} reason={:?}", local.allowed, local.reason),
        ));
    }
    first_failure_matches(decision, &checks.0)?;
    let mut hints = Vec::new();
    if !tcb_ok {
        hints.push(Hint::new(
            HintKind::TcbNotUpToDate,
            format!(
                "a KMS must boot with tcbStatus UpToDate, not {:?}: update the platform's TCB (microcode, TDX module) and collateral",
                boot.tcb_status
            ),
        ));
    }
    for (field, list, value, function, entry) in [
        (
            "osImageHash",
            KmsList::OsImages,
            &boot.os_image_hash,
            Function::AddOsImageHash,
            Entry::OsImageHash(boot.os_image_hash),
        ),
        (
            "mrAggregated",
            KmsList::KmsAggregatedMrs,
            &boot.mr_aggregated,
            Function::AddKmsAggregatedMr,
            Entry::KmsAggregatedMr(boot.mr_aggregated),
        ),
    ] {
        if view.contains(list, value) {
            pending_hints(&entry, field, value, context, &mut hints);
        } else {
            not_registered(
                view.values(list),
                (field, value, entry),
                function,
                context,
                &mut hints,
            );
        }
    }
    let device = Entry::KmsDeviceId(boot.device_id);
    if view.contains(KmsList::KmsDeviceIds, &boot.device_id) {
        pending_hints(&device, "deviceId", &boot.device_id, context, &mut hints);
    } else {
        let mut hint = Hint::new(
            HintKind::DeviceNotAllowed,
            format!(
                "device {} is not allowed to run the KMS: add it with DstackKms.addKmsDevice",
                to_0x_hex(&boot.device_id)
            ),
        )
        .about("deviceId", &boot.device_id);
        hint.function = Some(Function::AddKmsDevice.signature());
        hints.push(hint);
        history_hints(device, "deviceId", &boot.device_id, context, &mut hints);
    }
    common_hints(boot, context, &mut hints);
    Ok(Explanation {
        allowed: decision.allowed,
        reason: decision.reason.clone(),
        block: decision.block,
        checks: checks.0,
        hints,
    })
}

/// Hints of the app path's failing checks (reached or not).
fn app_hints(view: &RegistryView, boot: &BootInfo, context: &Context<'_>, hints: &mut Vec<Hint>) {
    let app_id = to_0x_hex(&boot.app_id);
    let app = view.app(&boot.app_id);
    match app.map(|app| app.policy().code) {
        None => hints.push(Hint::new(
            HintKind::AppNotRegistered,
            format!(
                "app {app_id} is not registered with the KMS: deploy it with DstackKms.deployAndRegisterApp, or register a deployed DstackApp with registerApp"
            ),
        )),
        Some(AppCode::Absent) => hints.push(Hint::new(
            HintKind::AppNotRegistered,
            format!("app {app_id} is registered but has no contract code (wrong address, or a contract that self-destructed)"),
        )),
        Some(AppCode::Known | AppCode::Unknown) => {}
    }
    let os_image = Entry::OsImageHash(boot.os_image_hash);
    if view.contains(KmsList::OsImages, &boot.os_image_hash) {
        pending_hints(
            &os_image,
            "osImageHash",
            &boot.os_image_hash,
            context,
            hints,
        );
    } else {
        not_registered(
            view.values(KmsList::OsImages),
            ("osImageHash", &boot.os_image_hash, os_image),
            Function::AddOsImageHash,
            context,
            hints,
        );
    }
    let Some(app) = app.filter(|app| app.policy().code == AppCode::Known) else {
        return;
    };
    let policy = app.policy();
    if policy.require_tcb_up_to_date && boot.tcb_status != TCB_UP_TO_DATE {
        hints.push(Hint::new(
            HintKind::TcbNotUpToDate,
            format!(
                "the app requires tcbStatus UpToDate (requireTcbUpToDate) and the platform reports {:?}: update the TCB, or (the app's owner) setRequireTcbUpToDate(false)",
                boot.tcb_status
            ),
        ));
    }
    let compose = Entry::ComposeHash {
        app_id: boot.app_id,
        compose_hash: boot.compose_hash,
    };
    if app.allows_compose_hash(&boot.compose_hash) {
        pending_hints(&compose, "composeHash", &boot.compose_hash, context, hints);
    } else {
        let mut own = Vec::new();
        let mut elsewhere = BTreeSet::new();
        view.for_each_app_value(|app_id, list, value| {
            if list != AppList::ComposeHashes {
                return;
            }
            if *app_id == boot.app_id {
                own.push(*value);
            } else if *value == boot.compose_hash {
                elsewhere.insert(to_0x_hex(app_id));
            }
        });
        not_registered(
            own.iter(),
            ("composeHash", &boot.compose_hash, compose),
            Function::AddComposeHash,
            context,
            hints,
        );
        if !elsewhere.is_empty() {
            let mut hint = Hint::new(
                HintKind::RegisteredElsewhere,
                format!(
                    "compose hash {} is allowed for another app, not for {app_id}: add it to this app (the app id is the DstackApp contract the CVM was deployed with)",
                    to_0x_hex(&boot.compose_hash)
                ),
            )
            .about("composeHash", &boot.compose_hash);
            hint.apps = elsewhere.into_iter().collect();
            hints.push(hint);
        }
    }
    let device = Entry::AppDevice {
        app_id: boot.app_id,
        device_id: boot.device_id,
    };
    if policy.allow_any_device || app.allows_device(&boot.device_id) {
        pending_hints(&device, "deviceId", &boot.device_id, context, hints);
    } else {
        let mut hint = Hint::new(
            HintKind::DeviceNotAllowed,
            format!(
                "device {} is not allowed for app {app_id} (allowAnyDevice is false): add it with addDevice, or setAllowAnyDevice(true)",
                to_0x_hex(&boot.device_id)
            ),
        )
        .about("deviceId", &boot.device_id);
        hint.function = Some(Function::AddDevice.signature());
        hints.push(hint);
        history_hints(device, "deviceId", &boot.device_id, context, hints);
    }
}

/// `not_registered`, then what else is known about the value: a width mix-up with a registered
/// value, its removal, a scheduled change.
fn not_registered<'v>(
    registered: impl Iterator<Item = &'v Bytes32>,
    (field, value, entry): (&'static str, &Bytes32, Entry),
    add: Function,
    context: &Context<'_>,
    hints: &mut Vec<Hint>,
) {
    let mut hint = Hint::new(
        HintKind::NotRegistered,
        format!(
            "{} {} is not registered: propose {}",
            add.value_name(),
            to_0x_hex(value),
            add.signature()
        ),
    )
    .about(field, value);
    hint.function = Some(add.signature());
    hints.push(hint);
    let mut near: Vec<&Bytes32> = registered.filter(|r| width_mixup(value, r)).collect();
    near.sort_unstable();
    for registered in near {
        let mut hint = Hint::new(
            HintKind::HexWidth,
            format!(
                "{} {} is not registered, but {} is: they differ only by padding or trimming; one of them was given with the wrong width",
                add.value_name(),
                to_0x_hex(value),
                to_0x_hex(registered)
            ),
        )
        .about(field, value);
        hint.registered = Some(to_0x_hex(registered));
        hints.push(hint);
    }
    history_hints(entry, field, value, context, hints);
}

/// `revoked` and `pending` for one entry.
fn history_hints(
    entry: Entry,
    field: &'static str,
    value: &Bytes32,
    context: &Context<'_>,
    hints: &mut Vec<Hint>,
) {
    if let Some(block) = context.removals.and_then(|r| r.block_of(&entry)) {
        let mut hint = Hint::new(
            HintKind::Revoked,
            format!(
                "{} was removed from its allowlist at block {block}",
                to_0x_hex(value)
            ),
        )
        .about(field, value);
        hint.block = Some(block);
        hints.push(hint);
    }
    pending_hints(&entry, field, value, context, hints);
}

fn pending_hints(
    entry: &Entry,
    field: &'static str,
    value: &Bytes32,
    context: &Context<'_>,
    hints: &mut Vec<Hint>,
) {
    for change in context
        .pending
        .iter()
        .filter(|c| c.state.is_pending() && c.call.entry() == *entry)
    {
        let mut hint = Hint::new(
            HintKind::Pending,
            format!(
                "{} {} is scheduled in timelock {} (operation {}), {:?} until unix time {}",
                change.call.function.name(),
                to_0x_hex(value),
                to_0x_hex(&change.timelock),
                to_0x_hex(&change.operation_id),
                change.state,
                change.eta
            ),
        )
        .about(field, value);
        hint.operation_id = Some(to_0x_hex(&change.operation_id));
        hint.function = Some(change.call.function.signature());
        hint.eta = Some(change.eta);
        hint.state = Some(change.state);
        hints.push(hint);
    }
}

/// Hints that do not depend on the failing check: the debug image, widths as given, and the
/// app-compose.json.
fn common_hints(boot: &BootInfo, context: &Context<'_>, hints: &mut Vec<Hint>) {
    if boot.os_image_hash == DEBUG_OS_IMAGE_HASH {
        hints.push(
            Hint::new(
                HintKind::DebugImage,
                "the os image hash is sha256 of 144 zero bytes: a Nitro enclave in debug mode (PCR0-2 all zero), which must never be registered".to_owned(),
            )
            .about("osImageHash", &boot.os_image_hash),
        );
    }
    if let Some(given) = context.given {
        given_widths(given, hints);
    }
    if let Some(app_compose) = context.app_compose {
        let hash = compose_hash(app_compose);
        if hash != boot.compose_hash {
            let hint = Hint::new(
                HintKind::ComposeHashMismatch,
                format!(
                    "the app-compose.json given hashes to {}, not to the boot's compose hash {}: the hash must be sha256 of the exact bytes the CVM was deployed with",
                    to_0x_hex(&hash),
                    to_0x_hex(&boot.compose_hash)
                ),
            )
            .about("composeHash", &boot.compose_hash);
            hints.push(hint);
        }
        match unpinned_images(app_compose) {
            Ok(images) => hints.extend(images.into_iter().map(unpinned_hint)),
            Err(error) => hints.push(Hint::new(
                HintKind::UnpinnedImage,
                format!("cannot read the images of the app-compose.json: {error}"),
            )),
        }
    }
}

/// The `unpinned_image` hint of one image (also what `measure --app-compose` prints).
pub fn unpinned_hint(image: super::compose::UnpinnedImage) -> Hint {
    let mut hint = Hint::new(
        HintKind::UnpinnedImage,
        format!(
            "image {} is referenced by tag, not by digest: the compose hash does not pin the code it runs, and rewriting the tag changes the measurement on every deploy; use {}@sha256:<digest>",
            image.image,
            image.image.split('@').next().unwrap_or(&image.image)
        ),
    );
    hint.service = image.service;
    hint.image = Some(image.image);
    hint
}

/// `hex_width` for boot info fields given with fewer or more digits than their width (the
/// webhook left-pads short ones, so the contract saw another value).
fn given_widths(given: &BootInfoJson, hints: &mut Vec<Hint>) {
    for (field, text, width) in [
        ("appId", &given.app_id, 20),
        ("composeHash", &given.compose_hash, 32),
        ("instanceId", &given.instance_id, 20),
        ("deviceId", &given.device_id, 32),
        ("mrAggregated", &given.mr_aggregated, 32),
        ("mrSystem", &given.mr_system, 32),
        ("osImageHash", &given.os_image_hash, 32),
    ] {
        let trimmed = text.trim();
        let digits = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        if digits.is_empty() || digits.len() == 2 * width {
            continue;
        }
        let mut hint = Hint::new(
            HintKind::HexWidth,
            format!(
                "{field} was given as {} hex digits, not {}: the KMS left-pads it with zeros, so the contract checks another value",
                digits.len(),
                2 * width
            ),
        );
        hint.field = Some(field);
        hint.value = Some(text.clone());
        hints.push(hint);
    }
}

/// Whether two different values share their significant digits (at least 8, i.e. 4 bytes): one
/// is the other padded, trimmed or shifted, as a value pasted with the wrong width becomes.
fn width_mixup(value: &Bytes32, registered: &Bytes32) -> bool {
    const MIN_DIGITS: usize = 8;
    if value == registered {
        return false;
    }
    let (v, r) = (
        crate::encoding::hex(value),
        crate::encoding::hex(registered),
    );
    let core = |s: &str| s.trim_matches('0').to_owned();
    let (cv, cr) = (core(&v), core(&r));
    cv.len() >= MIN_DIGITS && cr.len() >= MIN_DIGITS && (v.contains(&cr) || r.contains(&cv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::call::AllowlistCall;
    use crate::registry::decision::{kms_is_app_allowed_offline, kms_is_kms_allowed, Verdict};
    use crate::registry::view::AppPolicy;
    use sha2::{Digest, Sha256};

    use crate::registry::decision::tests::{boot, APP, COMPOSE, DEVICE, MR, OS};

    const OTHER_APP: [u8; 20] = [0xbb; 20];

    /// Everything in `boot()` allowed; the app requires UpToDate and lists its devices.
    fn view() -> RegistryView {
        let mut view = RegistryView::new();
        view.set(KmsList::OsImages, OS, true);
        view.set(KmsList::KmsAggregatedMrs, MR, true);
        view.set(KmsList::KmsDeviceIds, DEVICE, true);
        for app in [APP, OTHER_APP] {
            view.register_app(app);
            view.set_app_policy(
                &app,
                AppPolicy {
                    require_tcb_up_to_date: true,
                    ..AppPolicy::default()
                },
            );
        }
        view.set_app_value(&APP, AppList::ComposeHashes, COMPOSE, true);
        view.set_app_value(&APP, AppList::DeviceIds, DEVICE, true);
        view
    }

    fn decided(verdict: Verdict) -> Decision {
        Decision {
            allowed: verdict.allowed,
            reason: verdict.reason.to_owned(),
            block: 42,
            gateway_app_id: String::new(),
            evaluated_by: Evaluation::View,
        }
    }

    /// What the file source decides (decision.rs), explained.
    fn explain(view: &RegistryView, boot: &BootInfo, context: &Context<'_>) -> Explanation {
        let verdict = kms_is_app_allowed_offline(view, boot).expect("decidable offline");
        explain_app(view, &decided(verdict), boot, context).unwrap()
    }

    fn kinds(explanation: &Explanation) -> Vec<HintKind> {
        explanation.hints.iter().map(|h| h.kind).collect()
    }

    #[test]
    fn an_allowed_boot_passes_every_check_in_order() {
        let explanation = explain(&view(), &boot(), &Context::default());
        assert!(explanation.allowed);
        assert_eq!(explanation.block, 42);
        let names: Vec<&str> = explanation.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "app_registered",
                "os_image_allowed",
                "app_deployed",
                "tcb_up_to_date",
                "compose_hash_allowed",
                "device_allowed"
            ]
        );
        assert!(explanation.checks.iter().all(|c| c.ok && c.reached));
        assert!(explanation.hints.is_empty());
        let json = serde_json::to_value(&explanation).unwrap();
        assert_eq!(json["allowed"], true);
        assert_eq!(json["reason"], "");
        assert_eq!(json["checks"][4]["name"], "compose_hash_allowed");
        assert!(json["checks"][4]["detail"]
            .as_str()
            .unwrap()
            .contains(&to_0x_hex(&COMPOSE)));
        assert!(json["checks"][0].get("fails_with").is_none());
    }

    #[test]
    fn later_checks_are_evaluated_but_not_reached() {
        let info = BootInfo {
            os_image_hash: [9; 32],
            compose_hash: [8; 32],
            ..boot()
        };
        let explanation = explain(&view(), &info, &Context::default());
        assert_eq!(explanation.reason, "OS image is not allowed");
        let compose = &explanation.checks[4];
        assert!(!compose.ok && !compose.reached);
        assert!(explanation.checks[2].ok && !explanation.checks[2].reached);
        // Both problems get hints.
        let not_registered: Vec<_> = explanation
            .hints
            .iter()
            .filter(|h| h.kind == HintKind::NotRegistered)
            .map(|h| h.field)
            .collect();
        assert_eq!(not_registered, [Some("osImageHash"), Some("composeHash")]);
    }

    #[test]
    fn every_hint_kind_on_view_states() {
        let mut view = view();
        // not_registered, registered_elsewhere, revoked, pending: a compose hash of another app,
        // removed here at block 7, re-added by a scheduled operation.
        let moved = [5; 32];
        view.set_app_value(&OTHER_APP, AppList::ComposeHashes, moved, true);
        let mut removals = Removals::new();
        removals.record(
            Entry::ComposeHash {
                app_id: APP,
                compose_hash: moved,
            },
            7,
        );
        let pending = [PendingChange {
            timelock: [0xcc; 20],
            operation_id: [0xdd; 32],
            index: 0,
            call: AllowlistCall {
                contract: APP,
                function: Function::AddComposeHash,
                value: moved,
            },
            eta: 1_000,
            state: PendingState::Waiting,
            scheduled_block: 8,
            settled_block: None,
        }];
        let context = Context {
            pending: &pending,
            removals: Some(&removals),
            ..Context::default()
        };
        let info = BootInfo {
            compose_hash: moved,
            ..boot()
        };
        let explanation = explain(&view, &info, &context);
        assert_eq!(explanation.reason, "Compose hash not allowed");
        assert_eq!(
            kinds(&explanation),
            [
                HintKind::NotRegistered,
                HintKind::Revoked,
                HintKind::Pending,
                HintKind::RegisteredElsewhere
            ]
        );
        let hint = |kind| explanation.hints.iter().find(|h| h.kind == kind).unwrap();
        assert_eq!(hint(HintKind::Revoked).block, Some(7));
        assert_eq!(hint(HintKind::Pending).eta, Some(1_000));
        assert_eq!(
            hint(HintKind::Pending).operation_id,
            Some(to_0x_hex(&[0xdd; 32]))
        );
        assert_eq!(
            hint(HintKind::RegisteredElsewhere).apps,
            vec![to_0x_hex(&OTHER_APP)]
        );

        // hex_width: the registered os image is the boot's truncated to 31 bytes and
        // left-padded, and the compose hash was given short.
        let measured: Bytes32 = Sha256::digest(b"os").into();
        let mut padded = [0; 32];
        padded[1..].copy_from_slice(&measured[..31]);
        let mut view = self::view();
        view.set(KmsList::OsImages, padded, true);
        let given = BootInfoJson {
            compose_hash: "0x0202".into(),
            ..BootInfoJson::from(&boot())
        };
        let info = BootInfo {
            os_image_hash: measured,
            ..boot()
        };
        let explanation = explain(
            &view,
            &info,
            &Context {
                given: Some(&given),
                ..Context::default()
            },
        );
        let widths: Vec<_> = explanation
            .hints
            .iter()
            .filter(|h| h.kind == HintKind::HexWidth)
            .collect();
        assert_eq!(widths.len(), 2, "{:?}", explanation.hints);
        assert_eq!(widths[0].registered, Some(to_0x_hex(&padded)));
        assert_eq!(widths[1].field, Some("composeHash"));

        // debug_image, tcb_not_up_to_date, device_not_allowed.
        let view = self::view();
        let info = BootInfo {
            os_image_hash: DEBUG_OS_IMAGE_HASH,
            tcb_status: "OutOfDate".into(),
            device_id: [9; 32],
            ..boot()
        };
        let explanation = explain(&view, &info, &Context::default());
        let found = kinds(&explanation);
        for kind in [
            HintKind::NotRegistered,
            HintKind::TcbNotUpToDate,
            HintKind::DeviceNotAllowed,
            HintKind::DebugImage,
        ] {
            assert!(found.contains(&kind), "{kind:?} in {found:?}");
        }

        // app_not_registered: unregistered, or no code.
        let info = BootInfo {
            app_id: [0xee; 20],
            ..boot()
        };
        let explanation = explain(&view, &info, &Context::default());
        assert_eq!(kinds(&explanation), [HintKind::AppNotRegistered]);
        assert!(explanation.checks[2..].iter().all(|c| !c.reached));
        let mut absent = self::view();
        absent.set_app_policy(
            &APP,
            AppPolicy {
                code: AppCode::Absent,
                ..AppPolicy::default()
            },
        );
        let explanation = explain(&absent, &boot(), &Context::default());
        assert_eq!(explanation.reason, "App not deployed or invalid address");
        assert_eq!(kinds(&explanation), [HintKind::AppNotRegistered]);

        // unpinned_image and compose_hash_mismatch, from an app-compose.json.
        let app_compose = serde_json::to_vec(&serde_json::json!({
            "runner": "docker-compose",
            "docker_compose_file": "services:\n  web:\n    image: nginx:latest\n",
        }))
        .unwrap();
        let explanation = explain(
            &view,
            &boot(),
            &Context {
                app_compose: Some(&app_compose),
                ..Context::default()
            },
        );
        assert_eq!(
            kinds(&explanation),
            [HintKind::ComposeHashMismatch, HintKind::UnpinnedImage]
        );
        let unpinned = &explanation.hints[1];
        assert_eq!(unpinned.image.as_deref(), Some("nginx:latest"));
        assert_eq!(unpinned.service.as_deref(), Some("web"));
        let json = serde_json::to_value(unpinned).unwrap();
        assert_eq!(json["kind"], "unpinned_image");
    }

    #[test]
    fn a_scheduled_removal_of_an_allowed_value_is_a_pending_hint() {
        let pending = [PendingChange {
            timelock: [0xcc; 20],
            operation_id: [0xdd; 32],
            index: 1,
            call: AllowlistCall {
                contract: [0x11; 20],
                function: Function::RemoveOsImageHash,
                value: OS,
            },
            eta: 5,
            state: PendingState::Ready,
            scheduled_block: 1,
            settled_block: None,
        }];
        let explanation = explain(
            &view(),
            &boot(),
            &Context {
                pending: &pending,
                ..Context::default()
            },
        );
        assert!(explanation.allowed);
        assert_eq!(kinds(&explanation), [HintKind::Pending]);
        assert_eq!(
            explanation.hints[0].function,
            Some("removeOsImageHash(bytes32)")
        );
        // Executed and cancelled operations are history, not pending.
        let settled = [PendingChange {
            state: PendingState::Cancelled,
            ..pending[0].clone()
        }];
        let explanation = explain(
            &view(),
            &boot(),
            &Context {
                pending: &settled,
                ..Context::default()
            },
        );
        assert!(explanation.hints.is_empty());
    }

    #[test]
    fn executed_timelock_removals_are_revocations() {
        let removal = PendingChange {
            timelock: [0xcc; 20],
            operation_id: [0xdd; 32],
            index: 0,
            call: AllowlistCall {
                contract: [0x11; 20],
                function: Function::RemoveOsImageHash,
                value: OS,
            },
            eta: 5,
            state: PendingState::Executed,
            scheduled_block: 1,
            settled_block: Some(9),
        };
        let added = PendingChange {
            call: AllowlistCall {
                function: Function::AddOsImageHash,
                value: [7; 32],
                ..removal.call
            },
            ..removal.clone()
        };
        let waiting = PendingChange {
            state: PendingState::Waiting,
            settled_block: None,
            call: AllowlistCall {
                value: [8; 32],
                ..removal.call
            },
            ..removal.clone()
        };
        let mut removals = Removals::new();
        removals.record_executed(&[removal, added, waiting]);
        assert_eq!(removals.block_of(&Entry::OsImageHash(OS)), Some(9));
        assert_eq!(removals.block_of(&Entry::OsImageHash([7; 32])), None);
        assert_eq!(removals.block_of(&Entry::OsImageHash([8; 32])), None);
        let mut view = view();
        view.set(KmsList::OsImages, OS, false);
        let explanation = explain(
            &view,
            &boot(),
            &Context {
                removals: Some(&removals),
                ..Context::default()
            },
        );
        assert_eq!(
            kinds(&explanation),
            [HintKind::NotRegistered, HintKind::Revoked]
        );
    }

    #[test]
    fn unknown_code_is_the_contracts_answer() {
        let mut view = view();
        view.set_app_policy(
            &APP,
            AppPolicy {
                code: AppCode::Unknown,
                ..AppPolicy::default()
            },
        );
        let decision = Decision {
            allowed: false,
            reason: "custom refusal".into(),
            block: 3,
            gateway_app_id: String::new(),
            evaluated_by: Evaluation::Contract,
        };
        let explanation = explain_app(&view, &decision, &boot(), &Context::default()).unwrap();
        assert_eq!(explanation.reason, "custom refusal");
        let last = explanation.checks.last().unwrap();
        assert_eq!(last.name, "app_is_app_allowed");
        assert!(!last.ok && last.reached);
        assert!(last.detail.contains("custom refusal"));
    }

    #[test]
    fn a_decision_from_another_view_is_refused() {
        let allowed = decided(Verdict {
            allowed: true,
            reason: "",
        });
        let info = BootInfo {
            compose_hash: [9; 32],
            ..boot()
        };
        let error = explain_app(&view(), &allowed, &info, &Context::default()).unwrap_err();
        assert_eq!(error.kind().as_str(), "inconsistent_view");
        // A contract-evaluated decision for an app the view decides itself.
        let asked = Decision {
            evaluated_by: Evaluation::Contract,
            ..allowed.clone()
        };
        assert_eq!(
            explain_app(&view(), &asked, &boot(), &Context::default())
                .unwrap_err()
                .kind()
                .as_str(),
            "inconsistent_view"
        );
        // isKmsAllowed ignores the app's compose hash.
        assert!(
            explain_kms(&view(), &allowed, &info, &Context::default())
                .unwrap()
                .allowed
        );
        let denied = decided(Verdict {
            allowed: false,
            reason: "Aggregated MR not allowed",
        });
        assert_eq!(
            explain_kms(&view(), &denied, &boot(), &Context::default())
                .unwrap_err()
                .kind()
                .as_str(),
            "inconsistent_view"
        );
    }

    #[test]
    fn kms_boots_explain_is_kms_allowed() {
        let info = BootInfo {
            mr_aggregated: [9; 32],
            device_id: [9; 32],
            ..boot()
        };
        let verdict = kms_is_kms_allowed(&view(), &info);
        let explanation =
            explain_kms(&view(), &decided(verdict), &info, &Context::default()).unwrap();
        assert_eq!(explanation.reason, "Aggregated MR not allowed");
        let names: Vec<&str> = explanation.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "tcb_up_to_date",
                "os_image_allowed",
                "kms_aggregated_mr_allowed",
                "kms_device_allowed"
            ]
        );
        assert_eq!(
            kinds(&explanation),
            [HintKind::NotRegistered, HintKind::DeviceNotAllowed]
        );
    }

    #[test]
    fn width_mixups_need_shared_significant_digits() {
        let value: Bytes32 = Sha256::digest(b"v").into();
        let mut left_padded = [0; 32];
        left_padded[4..].copy_from_slice(&value[..28]);
        let mut right_padded = [0; 32];
        right_padded[..16].copy_from_slice(&value[..16]);
        let mut trimmed = [0; 32];
        trimmed[8..].copy_from_slice(&value[8..]);
        for registered in [left_padded, right_padded, trimmed] {
            assert!(width_mixup(&value, &registered));
            assert!(width_mixup(&registered, &value));
        }
        assert!(!width_mixup(&value, &value));
        assert!(!width_mixup(&value, &Sha256::digest(b"w").into()));
        let mut tiny = [0; 32];
        tiny[31] = value[31];
        assert!(!width_mixup(&value, &tiny));
    }

    /// A reproducible stream of pseudo-random bytes: sha256(seed ‖ counter).
    struct Stream {
        seed: u64,
        counter: u64,
    }

    impl Stream {
        fn next(&mut self) -> u64 {
            self.counter += 1;
            let digest =
                Sha256::digest([self.seed.to_le_bytes(), self.counter.to_le_bytes()].concat());
            u64::from_le_bytes(digest[..8].try_into().unwrap())
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn coin(&mut self) -> bool {
            self.below(2) == 1
        }
        /// One of a few values, so that lists and boots collide often.
        fn value(&mut self) -> Bytes32 {
            [u8::try_from(self.below(4)).unwrap() + 1; 32]
        }
    }

    #[test]
    fn explanations_agree_with_the_contract_logic_on_random_states() {
        let apps = [[0x10; 20], [0x20; 20], [0x30; 20]];
        let statuses = ["UpToDate", "OutOfDate", ""];
        for seed in 0..2_000 {
            let mut rng = Stream { seed, counter: 0 };
            let mut view = RegistryView::new();
            for list in [
                KmsList::OsImages,
                KmsList::KmsAggregatedMrs,
                KmsList::KmsDeviceIds,
            ] {
                for _ in 0..rng.below(3) {
                    view.set(list, rng.value(), true);
                }
            }
            for app in apps {
                if rng.below(3) == 0 {
                    continue;
                }
                view.register_app(app);
                let code = [AppCode::Known, AppCode::Known, AppCode::Absent][rng.below(3) as usize];
                view.set_app_policy(
                    &app,
                    AppPolicy {
                        allow_any_device: rng.coin(),
                        require_tcb_up_to_date: rng.coin(),
                        code,
                        implementation: None,
                    },
                );
                for list in [AppList::ComposeHashes, AppList::DeviceIds] {
                    for _ in 0..rng.below(3) {
                        view.set_app_value(&app, list, rng.value(), true);
                    }
                }
            }
            let info = BootInfo {
                app_id: apps[rng.below(3) as usize],
                compose_hash: rng.value(),
                device_id: rng.value(),
                mr_aggregated: rng.value(),
                os_image_hash: rng.value(),
                tcb_status: statuses[rng.below(3) as usize].to_owned(),
                ..BootInfo::default()
            };
            let verdict = kms_is_app_allowed_offline(&view, &info).unwrap();
            let explanation = explain_app(&view, &decided(verdict), &info, &Context::default())
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_agrees(seed, &explanation, verdict);

            let verdict = kms_is_kms_allowed(&view, &info);
            let explanation = explain_kms(&view, &decided(verdict), &info, &Context::default())
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_agrees(seed, &explanation, verdict);
        }
    }

    /// The decision is the contract's; allowed iff every check passed; otherwise the first
    /// failing check is the last one reached and carries the reason; a failure has a hint.
    fn assert_agrees(seed: u64, explanation: &Explanation, verdict: Verdict) {
        assert_eq!(
            (explanation.allowed, explanation.reason.as_str()),
            (verdict.allowed, verdict.reason),
            "seed {seed}"
        );
        let first_failure = explanation.checks.iter().position(|c| !c.ok);
        assert_eq!(first_failure.is_none(), verdict.allowed, "seed {seed}");
        if let Some(index) = first_failure {
            let check = &explanation.checks[index];
            assert!(check.reached, "seed {seed}: {check:?}");
            assert_eq!(check.fails_with, Some(verdict.reason), "seed {seed}");
            assert!(
                explanation.checks[index + 1..].iter().all(|c| !c.reached),
                "seed {seed}"
            );
            assert!(!explanation.hints.is_empty(), "seed {seed}: no hint");
        }
        assert!(
            explanation.checks[..first_failure.unwrap_or(explanation.checks.len())]
                .iter()
                .all(|c| c.reached)
        );
    }
}
