//! `tee-verifier propose`: the governance transaction that registers (or revokes) measurements,
//! in the form the signer needs: calls JSON, a Safe Transaction Builder file, MultiSendCallOnly
//! calldata, or `cast` lines; optionally wrapped in a TimelockController `scheduleBatch`.

use super::evidence::EvidenceOptions;
use super::source::RegistryArgs;
use super::{output, source, Verdict};
use crate::encoding::{to_0x_hex, InputEncoding};
use crate::evidence::Verified;
use crate::governance::call::AllowlistCall;
use crate::governance::multisend::MULTI_SEND_CALL_ONLY_1_4_1;
use crate::governance::review::{review, Warning, WarningKind};
use crate::governance::tx_builder::BatchMeta;
use crate::governance::value::{check_measurement, parse_address, parse_word};
use crate::governance::{Function, Proposal, TimelockPlan};
use crate::registry::view::Address;
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Draft the governance transaction that registers or revokes measurements: the calls to
/// DstackKms (os images, KMS aggregated MRs and devices) and DstackApp (compose hashes, devices),
/// optionally scheduled through a TimelockController, in the form your signer takes.
///
/// Every value must be exactly 32 bytes of hex (0x optional, any case): short or long hex is
/// refused, never padded (a padded hash is a hash nobody measures). The zero hash and the
/// debug-enclave image hash (sha256 of 144 zero bytes) are refused.
///
/// --from-evidence FILE verifies the attestation first, exactly as `verify` does (pair each FILE
/// with a --collateral FILE for TDX, in order; one --collateral serves them all), and proposes its
/// os image hash; with --app, its compose hash for that app instead (the evidence's app id must
/// be --app). A debug enclave or debug TD, an os image hash that is only the host's claim, and
/// evidence that does not verify are refused.
///
/// With a SOURCE (--registry FILE, or --rpc-url URL), it warns (and --strict refuses, exit 1)
/// when a value is already registered, the same change is already pending in a timelock, a
/// removal targets a value that is not registered, the app is not registered with the KMS, or an
/// address (KMS, app, timelock, Safe) has no contract code.
///
/// Formats (stdout, or -o FILE; what it does goes to stderr):
///   calls            {"calls":[{"to","value","data","function","args"}…],"timelock":null|{"operation_id",
///                    "schedule":{"to","data"},"execute":{"to","data"},"delay","salt","predecessor"}}
///   safe-tx-builder  the batch file Safe{Wallet}'s Transaction Builder imports (needs a chain id)
///   multisend        MultiSendCallOnly 1.4.1 calldata: a Safe transaction to
///                    0x9641d764fc13c8B624c04430C7356C1C7C8102e2 by delegatecall (operation 1)
///   cast             Foundry `cast send` lines, then the `cast call` checks of the result
/// With --timelock, the signer sends one scheduleBatch; after --delay seconds anyone holding the
/// executor role sends the matching executeBatch (in the calls JSON and the cast lines).
/// `tee-verifier registry pending` shows it waiting, then ready.
///
/// Exit: 0 printed, 1 refused (evidence, or a warning under --strict; nothing printed), 2 usage,
/// I/O or availability error (a value of the wrong width is one).
///
/// Examples:
///   tee-verifier propose --kms-contract 0xKMS… --add-os-image 0x14ad…1c67
///   tee-verifier propose --format safe-tx-builder --chain-id 8453 --kms-contract 0xKMS… \
///       --timelock 0xTL… --delay 86400 --safe 0xSAFE… --add-os-image 0x… --add-os-image 0x… \
///       --app 0xAPP… --add-compose-hash 0x… -o register.json
///   tee-verifier propose --strict --rpc-url "$ETH_RPC_URL" --kms-contract 0xKMS… --format cast \
///       --from-evidence quote.json --collateral collateral.json
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct ProposeArgs {
    /// Print the result as one line of JSON (multisend: {"to","value","operation","data"}; cast:
    /// {"lines":[…]}); warnings still go to stderr.
    #[arg(long)]
    json: bool,
    /// What to print.
    #[arg(long, value_enum, default_value = "calls")]
    format: Format,
    /// Refuse (exit 1, nothing printed) when the SOURCE gives any warning.
    #[arg(long)]
    strict: bool,
    /// DstackKms.addOsImageHash (repeatable).
    #[arg(long = "add-os-image", value_name = "HASH")]
    add_os_images: Vec<String>,
    /// DstackKms.removeOsImageHash (repeatable).
    #[arg(long = "remove-os-image", value_name = "HASH")]
    remove_os_images: Vec<String>,
    /// The DstackApp (its address is the app id) the app flags apply to.
    #[arg(long, value_name = "ADDR")]
    app: Option<String>,
    /// DstackApp.addComposeHash (repeatable; needs --app).
    #[arg(long = "add-compose-hash", value_name = "HASH", requires = "app")]
    add_compose_hashes: Vec<String>,
    /// DstackApp.removeComposeHash (repeatable; needs --app).
    #[arg(long = "remove-compose-hash", value_name = "HASH", requires = "app")]
    remove_compose_hashes: Vec<String>,
    /// DstackApp.addDevice (repeatable; needs --app).
    #[arg(long = "add-device", value_name = "ID", requires = "app")]
    add_devices: Vec<String>,
    /// DstackApp.removeDevice (repeatable; needs --app).
    #[arg(long = "remove-device", value_name = "ID", requires = "app")]
    remove_devices: Vec<String>,
    /// DstackKms.addKmsAggregatedMr (repeatable).
    #[arg(long = "add-kms-mr", value_name = "HASH")]
    add_kms_mrs: Vec<String>,
    /// DstackKms.removeKmsAggregatedMr (repeatable).
    #[arg(long = "remove-kms-mr", value_name = "HASH")]
    remove_kms_mrs: Vec<String>,
    /// DstackKms.addKmsDevice (repeatable).
    #[arg(long = "add-kms-device", value_name = "ID")]
    add_kms_devices: Vec<String>,
    /// DstackKms.removeKmsDevice (repeatable).
    #[arg(long = "remove-kms-device", value_name = "ID")]
    remove_kms_devices: Vec<String>,
    /// Verify this attestation and propose its os image hash (with --app: its compose hash)
    /// (repeatable).
    #[arg(long = "from-evidence", value_name = "FILE")]
    from_evidence: Vec<PathBuf>,
    /// Intel collateral (QuoteCollateralV3 JSON) for the TDX --from-evidence files: one for all,
    /// or one per file, in order.
    #[arg(long = "collateral", value_name = "FILE", requires = "from_evidence")]
    collaterals: Vec<PathBuf>,
    /// Verify the evidence as of this time (unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS", requires = "from_evidence")]
    now: Option<u64>,
    /// Schedule the calls through this TimelockController (one scheduleBatch + executeBatch).
    #[arg(long, value_name = "ADDR")]
    timelock: Option<String>,
    /// Seconds between scheduling and execution; at least the timelock's getMinDelay()
    /// [default: that minimum, read from a chain SOURCE].
    #[arg(long, value_name = "SECONDS", requires = "timelock")]
    delay: Option<u64>,
    /// The operation's salt (32 bytes of hex): change it to schedule the same calls again
    /// [default: zero].
    #[arg(long, value_name = "HEX", requires = "timelock")]
    salt: Option<String>,
    /// An operation that must have executed first (32 bytes of hex) [default: zero, none].
    #[arg(long, value_name = "HEX", requires = "timelock")]
    predecessor: Option<String>,
    /// The Safe that signs (meta.createdFromSafeAddress of the Transaction Builder file).
    #[arg(long, value_name = "ADDR")]
    safe: Option<String>,
    /// Write the result to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The KMS contract (--kms-contract, required) and, optionally, the SOURCE to review against.
    #[command(flatten, next_help_heading = "Contract and source")]
    source: RegistryArgs,
}

/// What `propose` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The calls (and timelock operation) as JSON.
    Calls,
    /// Foundry `cast` lines.
    Cast,
    /// A Safe Transaction Builder batch file.
    SafeTxBuilder,
    /// MultiSendCallOnly 1.4.1 calldata.
    Multisend,
}

pub(super) fn run(args: ProposeArgs) -> anyhow::Result<ExitCode> {
    let kms_text = args.source.kms_contract.clone().ok_or_else(|| {
        anyhow!("--kms-contract ADDR is required: the DstackKms the calls govern")
    })?;
    let kms = parse_address("--kms-contract", &kms_text)?;
    let app = args
        .app
        .as_deref()
        .map(|text| parse_address("--app", text))
        .transpose()?;
    let safe = args
        .safe
        .as_deref()
        .map(|text| parse_address("--safe", text))
        .transpose()?;
    let mut calls = explicit_calls(&args, kms, app)?;
    match evidence_calls(&args, kms, app)? {
        Ok(from_evidence) => calls.extend(from_evidence),
        Err(refusal) => {
            eprintln!("tee-verifier: REFUSED: {refusal}");
            return Ok(Verdict::Rejected.into());
        }
    }

    let opened = if source::is_configured(&args.source) {
        Some(open_source(&args.source)?)
    } else {
        None
    };
    let changes = match &opened {
        Some(opened) => opened.registry.timelock_changes()?,
        None => None,
    };
    let plan = timelock_plan(&args, changes.as_ref().map(|c| c.timelocks.as_slice()))?;
    let proposal = Proposal::new(kms, calls, plan)?;

    let mut warnings = Vec::new();
    if let Some(opened) = &opened {
        let view = opened
            .registry
            .snapshot()?
            .to_view()
            .map_err(|e| anyhow!("the source's view: {e}"))?;
        let mut addresses = vec![kms];
        addresses.extend(proposal.timelock().map(|op| op.timelock));
        addresses.extend(proposal.calls().iter().map(|call| call.contract));
        addresses.extend(safe);
        let mut code = HashMap::new();
        for address in addresses {
            if let std::collections::hash_map::Entry::Vacant(slot) = code.entry(address) {
                slot.insert(
                    opened
                        .runtime
                        .block_on(opened.registry.has_code(&address))?,
                );
            }
        }
        let has_code = |address: &Address| code.get(address).copied().flatten();
        let pending = changes.as_ref().map_or(&[][..], |c| c.changes.as_slice());
        warnings = review(&proposal, kms, &view, pending, &has_code);
        if let Some(safe) = safe {
            if has_code(&safe) == Some(false) {
                warnings.push(Warning {
                    kind: WarningKind::NotAContract,
                    message: format!("the Safe {} has no contract code", to_0x_hex(&safe)),
                });
            }
        }
    }
    for warning in &warnings {
        eprintln!(
            "warning ({}): {}",
            super::explain::snake(&warning.kind),
            warning.message
        );
    }
    if args.strict && !warnings.is_empty() {
        eprintln!(
            "tee-verifier: REFUSED (--strict): {} warning(s); nothing written",
            warnings.len()
        );
        return Ok(Verdict::Rejected.into());
    }

    let chain_id = args.source.chain_id.or_else(|| {
        opened
            .as_ref()
            .and_then(|opened| opened.registry.status().ok()?.chain_id)
    });
    let text = render(&args, &proposal, chain_id, safe)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            if !args.json {
                describe(&proposal);
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            if !args.json {
                describe(&proposal);
            }
            output::print_line(&text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry options with `--kms-contract` / `--chain-id` kept only for a chain source (a
/// registry file takes neither: here they name the contract the calls go to).
fn open_source(args: &RegistryArgs) -> anyhow::Result<source::OpenRegistry> {
    let mut args = args.clone();
    if args.registry.is_some() {
        args.kms_contract = None;
        args.chain_id = None;
    }
    source::open(&args)
}

/// The calls the flags name, in the synopsis's order.
fn explicit_calls(
    args: &ProposeArgs,
    kms: Address,
    app: Option<Address>,
) -> anyhow::Result<Vec<AllowlistCall>> {
    let mut calls = Vec::new();
    let kms_lists = [
        (&args.add_os_images, Function::AddOsImageHash),
        (&args.remove_os_images, Function::RemoveOsImageHash),
        (&args.add_kms_mrs, Function::AddKmsAggregatedMr),
        (&args.remove_kms_mrs, Function::RemoveKmsAggregatedMr),
        (&args.add_kms_devices, Function::AddKmsDevice),
        (&args.remove_kms_devices, Function::RemoveKmsDevice),
    ];
    for (values, function) in kms_lists {
        for value in values {
            calls.push(AllowlistCall::parse(kms, function, value)?);
        }
    }
    let app_lists = [
        (&args.add_compose_hashes, Function::AddComposeHash),
        (&args.remove_compose_hashes, Function::RemoveComposeHash),
        (&args.add_devices, Function::AddDevice),
        (&args.remove_devices, Function::RemoveDevice),
    ];
    for (values, function) in app_lists {
        for value in values {
            // clap requires --app with these flags.
            let app = app.ok_or_else(|| anyhow!("{} needs --app ADDR", function.name()))?;
            calls.push(AllowlistCall::parse(app, function, value)?);
        }
    }
    Ok(calls)
}

/// The calls `--from-evidence` proposes; `Err` (the inner one) is a refusal of the evidence.
fn evidence_calls(
    args: &ProposeArgs,
    kms: Address,
    app: Option<Address>,
) -> anyhow::Result<Result<Vec<AllowlistCall>, String>> {
    let files = &args.from_evidence;
    let collateral_of = |index: usize| match args.collaterals.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many if many.len() == files.len() => Ok(Some(many[index].clone())),
        many => Err(anyhow!(
            "{} --collateral for {} --from-evidence: give one for all, or one per file",
            many.len(),
            files.len()
        )),
    };
    let mut calls = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let options = EvidenceOptions {
            now: args.now,
            encoding: InputEncoding::Auto,
            nonce: None,
            user_data: None,
            public_key: None,
            max_age: None,
            collateral: collateral_of(index)?,
            event_log: None,
            vm_config: None,
            // As dstack's KMS binds them.
            allow_tdx_lite: true,
            app_compose: None,
            report_data: None,
            // Never: a debug enclave or TD is refused, as `verify` refuses it by default.
            allow_debug: false,
            // Collateral comes with --collateral: a proposal is drafted offline.
            fetch: Default::default(),
            gcp: Default::default(),
        };
        let verified = match options.verify(file, options.now())? {
            Ok(verified) => verified,
            Err(error) => {
                return Ok(Err(format!(
                    "{} did not verify ({}): {error}",
                    file.display(),
                    error.kind()
                )))
            }
        };
        match proposed_by(&verified, kms, app) {
            Ok(call) => {
                let what = call.function.value_name();
                if let Err(error) = check_measurement(what, &call.value) {
                    return Ok(Err(format!("{}: {error}", file.display())));
                }
                calls.push(call);
            }
            Err(refusal) => return Ok(Err(format!("{}: {refusal}", file.display()))),
        }
    }
    Ok(Ok(calls))
}

/// What verified evidence proposes: its os image hash, or (with `--app`) its compose hash.
fn proposed_by(
    verified: &Verified,
    kms: Address,
    app: Option<Address>,
) -> Result<AllowlistCall, String> {
    match app {
        Some(app) => {
            let dstack = verified
                .dstack()
                .ok_or("the evidence carries no dstack app identity (no compose hash)")?;
            if *dstack.app_id() != app {
                return Err(format!(
                    "the evidence is of app {}, not of --app {}",
                    to_0x_hex(dstack.app_id()),
                    to_0x_hex(&app)
                ));
            }
            Ok(AllowlistCall {
                contract: app,
                function: Function::AddComposeHash,
                value: *dstack.compose_hash(),
            })
        }
        None => {
            if verified.dstack().is_some_and(|d| !d.os_image_hash_bound()) {
                return Err("its os image hash is only the host's vm_config claim, not measured by the platform: it is not proposed".to_owned());
            }
            let hash = verified
                .os_image_hash()
                .ok_or("the evidence carries no os image hash")?;
            Ok(AllowlistCall {
                contract: kms,
                function: Function::AddOsImageHash,
                value: *hash,
            })
        }
    }
}

/// The timelock plan of `--timelock`, with the delay defaulting to the followed timelock's.
fn timelock_plan(
    args: &ProposeArgs,
    followed: Option<&[(Address, u64)]>,
) -> anyhow::Result<Option<TimelockPlan>> {
    let Some(text) = &args.timelock else {
        return Ok(None);
    };
    let timelock = parse_address("--timelock", text)?;
    let min_delay = followed
        .unwrap_or_default()
        .iter()
        .find(|(address, _)| *address == timelock)
        .map(|(_, delay)| *delay);
    let delay = match (args.delay, min_delay) {
        (Some(delay), Some(min)) if delay < min => bail!(
            "--delay {delay} is below the timelock's getMinDelay() {min}: scheduleBatch would revert"
        ),
        (Some(delay), _) => delay,
        (None, Some(min)) => min,
        (None, None) => bail!(
            "--timelock needs --delay SECONDS (at least its getMinDelay()), or a chain SOURCE that follows the timelock"
        ),
    };
    let word = |what, text: &Option<String>| {
        text.as_deref()
            .map(|text| parse_word(what, text))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Some(TimelockPlan {
        timelock,
        delay,
        salt: word("--salt", &args.salt)?,
        predecessor: word("--predecessor", &args.predecessor)?,
    }))
}

/// The proposal in the chosen format.
fn render(
    args: &ProposeArgs,
    proposal: &Proposal,
    chain_id: Option<u64>,
    safe: Option<Address>,
) -> anyhow::Result<String> {
    let json = |value: &serde_json::Value| {
        if args.json {
            serde_json::to_string(value)
        } else {
            serde_json::to_string_pretty(value)
        }
    };
    Ok(match args.format {
        Format::Calls => json(&serde_json::to_value(proposal.json())?)?,
        Format::SafeTxBuilder => {
            let chain_id = chain_id.ok_or_else(|| {
                anyhow!(
                    "--format safe-tx-builder needs the Safe's chain: --chain-id N (or --rpc-url)"
                )
            })?;
            let meta = BatchMeta {
                name: "tee-verifier propose".to_owned(),
                description: summary(proposal).join("; "),
                chain_id,
                created_at_ms: super::now_or_clock(None).saturating_mul(1000),
                safe,
            };
            json(&proposal.tx_builder_file(&meta))?
        }
        Format::Multisend => {
            let data = to_0x_hex(&proposal.multisend_calldata());
            if args.json {
                serde_json::to_string(&serde_json::json!({
                    "to": to_0x_hex(&MULTI_SEND_CALL_ONLY_1_4_1),
                    "value": "0",
                    "operation": 1,
                    "data": data,
                }))?
            } else {
                data
            }
        }
        Format::Cast => {
            let lines = proposal.cast_lines();
            if args.json {
                serde_json::to_string(&serde_json::json!({ "lines": lines }))?
            } else {
                lines.join("\n")
            }
        }
    })
}

/// One line per call, for people.
fn summary(proposal: &Proposal) -> Vec<String> {
    proposal
        .calls()
        .iter()
        .map(|call| {
            format!(
                "{}({}) on {}",
                call.function.name(),
                to_0x_hex(&call.value),
                to_0x_hex(&call.contract)
            )
        })
        .collect()
}

/// What the proposal does, on stderr (stdout is the result itself).
fn describe(proposal: &Proposal) {
    eprintln!("{} call(s):", proposal.calls().len());
    for line in summary(proposal) {
        eprintln!("  {line}");
    }
    if let Some(op) = proposal.timelock() {
        eprintln!(
            "through timelock {}: operation {}, executable {} s after it is scheduled",
            to_0x_hex(&op.timelock),
            to_0x_hex(&op.id()),
            op.delay
        );
    }
}
