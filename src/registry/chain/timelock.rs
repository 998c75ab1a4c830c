//! Following the OpenZeppelin TimelockControllers that govern the KMS and its apps: the
//! configured ones, and any found as `owner()` of the KMS or of an app that answers
//! `getMinDelay()`. Their `CallScheduled` / `CallSalt` / `CallExecuted` / `Cancelled` /
//! `MinDelayChange` logs become operations; the allowlist calls among them (on the KMS or a
//! registered app) are the view's pending changes, each with its ETA (the scheduling block's
//! timestamp plus the event's delay) and state at the view's block.
//!
//! What the logs say is checked against the contract: every operation touched in a range must
//! hash (`hashOperation[Batch]` of its calls, predecessor and salt) to its id, and
//! `getTimestamp(id)` at the range's end must be its ETA, 1 once executed, or 0 once cancelled.
//! A timelock that disagrees is not what it claims to be: the pending changes become
//! unavailable (decisions are unaffected: pending changes never allow anything).

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::{SolCall, SolEvent};

use super::rpc::{CallOutcome, Rpc};
use super::sync::Syncer;
use super::SyncStage;
use crate::governance::abi::{ITimelockController, DONE_TIMESTAMP};
use crate::governance::call::Contract;
use crate::governance::timelock::TimelockOperation;
use crate::governance::{AllowlistCall, Call, PendingChange, PendingState};
use crate::registry::abi::IDstackKms;
use crate::registry::view::RegistryView;
use crate::registry::RegistryError;

/// Contracts whose `owner()` is read in one JSON-RPC batch.
const OWNERS_PER_BATCH: usize = 100;

/// The timelock events the view follows.
const TOPICS: [B256; 5] = [
    ITimelockController::CallScheduled::SIGNATURE_HASH,
    ITimelockController::CallSalt::SIGNATURE_HASH,
    ITimelockController::CallExecuted::SIGNATURE_HASH,
    ITimelockController::Cancelled::SIGNATURE_HASH,
    ITimelockController::MinDelayChange::SIGNATURE_HASH,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Executed,
    Cancelled,
}

/// One operation, as its logs describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Operation {
    /// By index within the operation.
    calls: BTreeMap<u64, Call>,
    predecessor: B256,
    salt: B256,
    delay: u64,
    eta: u64,
    scheduled_block: u64,
    settled: Option<(Settled, u64)>,
}

/// The followed timelocks and their operations, as of one block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timelocks {
    /// Followed timelocks and their minimum delay (`None`: configured, not read yet).
    followed: BTreeMap<Address, Option<u64>>,
    /// Owners seen that are not timelocks.
    not_timelocks: HashSet<Address>,
    operations: BTreeMap<(Address, B256), Operation>,
    /// The view block's timestamp (decides waiting vs ready).
    timestamp: u64,
    /// Why the logs cannot be trusted, once a check failed.
    broken: Option<String>,
}

/// A timelock log with the timestamp of its block.
struct Event {
    log: Log,
    block: u64,
    timestamp: u64,
}

impl Timelocks {
    /// Follows `configured` from the start (their minimum delay is read at the first sync).
    pub(crate) fn new(configured: &[crate::registry::view::Address]) -> Self {
        Timelocks {
            followed: configured
                .iter()
                .map(|address| (Address::from(*address), None))
                .collect(),
            ..Timelocks::default()
        }
    }

    /// These timelocks one range later: the owners of `candidates` (the KMS, apps) that are
    /// timelocks are followed from `from_block` on; the others' logs of `[start, end]` are
    /// applied; what changed is checked against the contracts at `end_hash`.
    pub(crate) async fn advanced(
        &self,
        syncer: &Syncer<'_>,
        candidates: &[Address],
        start: u64,
        end: u64,
        end_hash: B256,
    ) -> Result<Timelocks, RegistryError> {
        let rpc = syncer.rpc;
        let mut next = self.clone();
        let unread: Vec<Address> = self
            .followed
            .iter()
            .filter(|(_, delay)| delay.is_none())
            .map(|(address, _)| *address)
            .collect();
        for timelock in unread {
            let delay = min_delay(rpc, timelock, end_hash).await?.ok_or_else(|| {
                RegistryError::InvalidConfig(format!(
                    "timelock {timelock} does not answer getMinDelay(): not a TimelockController"
                ))
            })?;
            next.followed.insert(timelock, Some(delay));
        }
        let found = next.detect(rpc, candidates, end_hash).await?;
        let from_block = syncer.config.from_block;
        let old: Vec<Address> = next
            .followed
            .keys()
            .filter(|address| !found.contains(address))
            .copied()
            .collect();
        let mut logs = Vec::new();
        for (addresses, from) in [(old, start), (found, from_block)] {
            if addresses.is_empty() || from > end {
                continue;
            }
            let filter = Filter::new()
                .address(addresses)
                .event_signature(TOPICS.to_vec());
            logs.extend(
                syncer
                    .logs(filter, from, end, SyncStage::TimelockEvents)
                    .await?,
            );
        }
        logs.sort_by_key(|log| (log.block_number, log.log_index));
        let events = with_timestamps(rpc, logs).await?;
        let touched = next.apply(events);
        next.timestamp = rpc.block_timestamp(end_hash).await?;
        if next.broken.is_none() {
            next.broken = next.verify(rpc, &touched, end_hash).await?;
        }
        Ok(next)
    }

    /// Looks up the owner of each candidate; returns the new timelocks among them.
    async fn detect(
        &mut self,
        rpc: &Rpc,
        candidates: &[Address],
        at: B256,
    ) -> Result<Vec<Address>, RegistryError> {
        let mut owners = HashSet::new();
        for contracts in candidates.chunks(OWNERS_PER_BATCH) {
            let mut batch = rpc.read_batch(at);
            let answers = contracts
                .iter()
                .map(|contract| batch.call(*contract, IDstackKms::ownerCall {}.abi_encode()))
                .collect::<Result<Vec<_>, _>>()?;
            batch.send().await?;
            for answer in answers {
                owners.extend(owner(answer.outcome().await?));
            }
        }
        let mut found = Vec::new();
        for owner in owners {
            if self.followed.contains_key(&owner) || self.not_timelocks.contains(&owner) {
                continue;
            }
            match min_delay(rpc, owner, at).await? {
                Some(delay) => {
                    self.followed.insert(owner, Some(delay));
                    found.push(owner);
                }
                None => {
                    self.not_timelocks.insert(owner);
                }
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Applies logs in chain order; returns the operations they touched.
    fn apply(&mut self, events: Vec<Event>) -> Vec<(Address, B256)> {
        let mut touched = Vec::new();
        for event in events {
            let timelock = event.log.address();
            let Some(topic0) = event.log.topic0().copied() else {
                continue;
            };
            let id = event.log.topics().get(1).copied();
            let key = id.map(|id| (timelock, id));
            // Some(true): applied to a known operation; Some(false): nothing to apply (an
            // operation scheduled before the followed range); None: malformed.
            let decoded: Option<bool> = match topic0 {
                ITimelockController::CallScheduled::SIGNATURE_HASH => event
                    .log
                    .log_decode::<ITimelockController::CallScheduled>()
                    .ok()
                    .map(|log| {
                        self.scheduled(timelock, &log.inner.data, &event);
                        true
                    }),
                ITimelockController::CallSalt::SIGNATURE_HASH => event
                    .log
                    .log_decode::<ITimelockController::CallSalt>()
                    .ok()
                    .map(|log| {
                        let op = self.operations.get_mut(&(timelock, log.inner.data.id));
                        op.map(|op| op.salt = log.inner.data.salt).is_some()
                    }),
                ITimelockController::CallExecuted::SIGNATURE_HASH => {
                    key.map(|key| self.settle(key, Settled::Executed, event.block))
                }
                ITimelockController::Cancelled::SIGNATURE_HASH => {
                    key.map(|key| self.settle(key, Settled::Cancelled, event.block))
                }
                ITimelockController::MinDelayChange::SIGNATURE_HASH => event
                    .log
                    .log_decode::<ITimelockController::MinDelayChange>()
                    .ok()
                    .map(|log| {
                        let delay = u64::try_from(log.inner.data.newDuration).unwrap_or(u64::MAX);
                        self.followed.insert(timelock, Some(delay));
                        false
                    }),
                _ => Some(false),
            };
            match (decoded, key) {
                (Some(true), Some(key)) => touched.push(key),
                (Some(_), _) => {}
                (None, _) => {
                    self.broken.get_or_insert_with(|| {
                        format!("timelock {timelock}: malformed log {topic0}")
                    });
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        touched
    }

    fn scheduled(
        &mut self,
        timelock: Address,
        e: &ITimelockController::CallScheduled,
        event: &Event,
    ) {
        let index = u64::try_from(e.index).unwrap_or(u64::MAX);
        let delay = u64::try_from(e.delay).unwrap_or(u64::MAX);
        let call = Call {
            to: e.target.into_array(),
            value: e.value,
            data: e.data.to_vec(),
        };
        let fresh = Operation {
            calls: BTreeMap::new(),
            predecessor: e.predecessor,
            salt: B256::ZERO,
            delay,
            eta: event.timestamp.saturating_add(delay),
            scheduled_block: event.block,
            settled: None,
        };
        let op = self
            .operations
            .entry((timelock, e.id))
            .or_insert(fresh.clone());
        // A cancelled id may be scheduled again: that is a new operation.
        if op.settled.is_some() || op.scheduled_block != event.block {
            *op = fresh;
        }
        op.calls.insert(index, call);
    }

    /// Marks an operation executed or cancelled; false if it is not one the logs scheduled.
    fn settle(&mut self, key: (Address, B256), how: Settled, block: u64) -> bool {
        let Some(op) = self.operations.get_mut(&key) else {
            return false;
        };
        op.settled = Some((how, block));
        true
    }

    /// Checks each touched operation: its id is the hash of what its logs say, and the
    /// contract's `getTimestamp` agrees with its state. Returns what disagrees.
    async fn verify(
        &self,
        rpc: &Rpc,
        touched: &[(Address, B256)],
        at: B256,
    ) -> Result<Option<String>, RegistryError> {
        for (timelock, id) in touched {
            let Some(op) = self.operations.get(&(*timelock, *id)) else {
                continue;
            };
            if !hashes_to(timelock, op, id) {
                return Ok(Some(format!(
                    "timelock {timelock}: operation {id} is not the hash of its scheduled calls"
                )));
            }
            let expected = match op.settled {
                None => op.eta,
                Some((Settled::Executed, _)) => DONE_TIMESTAMP,
                Some((Settled::Cancelled, _)) => 0,
            };
            let call = ITimelockController::getTimestampCall { id: *id };
            let actual = match rpc.call(*timelock, call.abi_encode(), at).await? {
                CallOutcome::Returned(bytes) => {
                    ITimelockController::getTimestampCall::abi_decode_returns(&bytes).ok()
                }
                CallOutcome::Reverted(_) => None,
            };
            if actual != Some(U256::from(expected)) {
                return Ok(Some(format!(
                    "timelock {timelock}: getTimestamp({id}) is {actual:?}, its logs say {expected}"
                )));
            }
        }
        Ok(None)
    }

    /// The allowlist calls of every followed operation (any state) whose target is the KMS or
    /// an app registered in `view`, in scheduling order.
    pub(crate) fn changes(
        &self,
        view: &RegistryView,
        kms: Address,
    ) -> Result<Vec<PendingChange>, RegistryError> {
        if let Some(reason) = &self.broken {
            return Err(RegistryError::Unavailable(reason.clone()));
        }
        let mut changes = Vec::new();
        for ((timelock, id), op) in &self.operations {
            let state = match op.settled {
                None => PendingState::scheduled_at(op.eta, self.timestamp),
                Some((Settled::Executed, _)) => PendingState::Executed,
                Some((Settled::Cancelled, _)) => PendingState::Cancelled,
            };
            for (index, call) in &op.calls {
                let Ok(allowlist) = AllowlistCall::decode(call.to, &call.data) else {
                    continue;
                };
                let governed = match allowlist.function.contract() {
                    Contract::Kms => Address::from(call.to) == kms,
                    Contract::App => view.app(&call.to).is_some(),
                };
                if governed {
                    changes.push(PendingChange {
                        timelock: timelock.into_array(),
                        operation_id: id.0,
                        index: *index,
                        call: allowlist,
                        eta: op.eta,
                        state,
                        scheduled_block: op.scheduled_block,
                        settled_block: op.settled.map(|(_, block)| block),
                    });
                }
            }
        }
        changes.sort_by_key(|c| (c.scheduled_block, c.operation_id, c.index));
        Ok(changes)
    }

    /// The followed timelocks and their minimum delays.
    pub(crate) fn followed(&self) -> Vec<(crate::registry::view::Address, u64)> {
        self.followed
            .iter()
            .filter_map(|(address, delay)| Some((address.into_array(), (*delay)?)))
            .collect()
    }
}

/// Whether `id` is the hash of the operation the logs describe, scheduled alone (`schedule`)
/// or as a batch.
fn hashes_to(timelock: &Address, op: &Operation, id: &B256) -> bool {
    [true, false]
        .into_iter()
        .any(|single| operation(timelock, op, single).id() == id.0)
}

/// The operation `op`'s logs describe, scheduled alone (`schedule`) or as a batch.
fn operation(timelock: &Address, op: &Operation, single: bool) -> TimelockOperation {
    TimelockOperation {
        timelock: timelock.into_array(),
        calls: op.calls.values().cloned().collect(),
        predecessor: op.predecessor.0,
        salt: op.salt.0,
        delay: op.delay,
        single: single && op.calls.len() == 1,
    }
}

/// The owner an `owner()` call answered, if it answered one (not the zero address).
fn owner(outcome: CallOutcome) -> Option<Address> {
    match outcome {
        CallOutcome::Returned(bytes) => IDstackKms::ownerCall::abi_decode_returns(&bytes)
            .ok()
            .filter(|owner| *owner != Address::ZERO),
        CallOutcome::Reverted(_) => None,
    }
}

/// `getMinDelay()` of `contract`, if it answers one (an EOA or another contract does not).
async fn min_delay(rpc: &Rpc, contract: Address, at: B256) -> Result<Option<u64>, RegistryError> {
    let call = ITimelockController::getMinDelayCall {};
    Ok(match rpc.call(contract, call.abi_encode(), at).await? {
        CallOutcome::Returned(bytes) => {
            ITimelockController::getMinDelayCall::abi_decode_returns(&bytes)
                .ok()
                .map(|delay| u64::try_from(delay).unwrap_or(u64::MAX))
        }
        CallOutcome::Reverted(_) => None,
    })
}

/// Attaches each log's block timestamp (one header per block).
async fn with_timestamps(rpc: &Rpc, logs: Vec<Log>) -> Result<Vec<Event>, RegistryError> {
    let mut timestamps: HashMap<B256, u64> = HashMap::new();
    let mut events = Vec::with_capacity(logs.len());
    for log in logs {
        let (Some(hash), Some(block)) = (log.block_hash, log.block_number) else {
            return Err(RegistryError::Rpc {
                call: "eth_getLogs",
                message: "a timelock log without its block".into(),
            });
        };
        let timestamp = match timestamps.get(&hash) {
            Some(timestamp) => *timestamp,
            None => {
                let timestamp = rpc.block_timestamp(hash).await?;
                timestamps.insert(hash, timestamp);
                timestamp
            }
        };
        events.push(Event {
            log,
            block,
            timestamp,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::Function;
    use alloy::primitives::{Bytes, LogData};
    use alloy::sol_types::SolEvent;

    const TIMELOCK: Address = Address::repeat_byte(0x77);
    const KMS: Address = Address::repeat_byte(0x11);

    fn event<E: SolEvent>(event: E, block: u64, timestamp: u64) -> Event {
        let data = event.encode_log_data();
        Event {
            log: Log {
                inner: alloy::primitives::Log {
                    address: TIMELOCK,
                    data: LogData::new_unchecked(data.topics().to_vec(), data.data),
                },
                block_number: Some(block),
                ..Log::default()
            },
            block,
            timestamp,
        }
    }

    fn add_os(byte: u8) -> AllowlistCall {
        AllowlistCall {
            contract: KMS.into_array(),
            function: Function::AddOsImageHash,
            value: [byte; 32],
        }
    }

    fn schedule_batch(op: &TimelockOperation, block: u64, timestamp: u64) -> Vec<Event> {
        let mut events: Vec<Event> = op
            .calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                event(
                    ITimelockController::CallScheduled {
                        id: B256::from(op.id()),
                        index: U256::from(i),
                        target: Address::from(call.to),
                        value: call.value,
                        data: Bytes::from(call.data.clone()),
                        predecessor: B256::from(op.predecessor),
                        delay: U256::from(op.delay),
                    },
                    block,
                    timestamp,
                )
            })
            .collect();
        events.push(event(
            ITimelockController::CallSalt {
                id: B256::from(op.id()),
                salt: B256::from(op.salt),
            },
            block,
            timestamp,
        ));
        events
    }

    fn operation_of(calls: &[AllowlistCall], salt: u8) -> TimelockOperation {
        TimelockOperation::batch(
            TIMELOCK.into_array(),
            calls.iter().map(AllowlistCall::call).collect(),
            [0; 32],
            [salt; 32],
            100,
        )
    }

    #[test]
    fn logs_become_changes_with_eta_and_state() {
        let op = operation_of(&[add_os(1), add_os(2)], 1);
        let mut timelocks = Timelocks::new(&[TIMELOCK.into_array()]);
        let touched = timelocks.apply(schedule_batch(&op, 10, 1_000));
        let id = B256::from(op.id());
        assert_eq!(touched, vec![(TIMELOCK, id)]);
        let stored = &timelocks.operations[&(TIMELOCK, id)];
        // The logs rebuild the operation exactly: same id; another salt is another id.
        assert!(hashes_to(&TIMELOCK, stored, &id));
        let resalted = Operation {
            salt: B256::repeat_byte(2),
            ..stored.clone()
        };
        assert!(!hashes_to(&TIMELOCK, &resalted, &id));
        assert_eq!(stored.eta, 1_100);

        let view = RegistryView::new();
        timelocks.timestamp = 1_099;
        let changes = timelocks.changes(&view, KMS).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes
            .iter()
            .all(|c| c.state == PendingState::Waiting && c.eta == 1_100));
        assert_eq!(changes[1].call, add_os(2));
        timelocks.timestamp = 1_100;
        assert_eq!(
            timelocks.changes(&view, KMS).unwrap()[0].state,
            PendingState::Ready
        );

        timelocks.apply(vec![event(
            ITimelockController::CallExecuted {
                id,
                index: U256::ZERO,
                target: KMS,
                value: U256::ZERO,
                data: Bytes::from(add_os(1).calldata()),
            },
            12,
            1_200,
        )]);
        let changes = timelocks.changes(&view, KMS).unwrap();
        assert!(changes.iter().all(|c| c.state == PendingState::Executed));
        assert_eq!(changes[0].settled_block, Some(12));
        // Calls to other contracts, or that are not allowlist calls, are not changes.
        assert!(timelocks
            .changes(&view, Address::repeat_byte(9))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn cancelled_then_rescheduled_is_a_new_operation() {
        let op = operation_of(&[add_os(3)], 0);
        let id = B256::from(op.id());
        let mut timelocks = Timelocks::new(&[]);
        timelocks.apply(schedule_batch(&op, 5, 50));
        timelocks.apply(vec![event(ITimelockController::Cancelled { id }, 6, 60)]);
        let view = RegistryView::new();
        assert_eq!(
            timelocks.changes(&view, KMS).unwrap()[0].state,
            PendingState::Cancelled
        );
        timelocks.apply(schedule_batch(&op, 7, 70));
        let changes = timelocks.changes(&view, KMS).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].eta, 170);
        assert_eq!(changes[0].scheduled_block, 7);
        assert!(changes[0].state.is_pending());
    }

    #[test]
    fn min_delay_changes_and_malformed_logs() {
        let mut timelocks = Timelocks::new(&[TIMELOCK.into_array()]);
        timelocks.apply(vec![event(
            ITimelockController::MinDelayChange {
                oldDuration: U256::ZERO,
                newDuration: U256::from(3600),
            },
            1,
            10,
        )]);
        assert_eq!(timelocks.followed(), vec![(TIMELOCK.into_array(), 3600)]);
        let mut broken = event(
            ITimelockController::MinDelayChange {
                oldDuration: U256::ZERO,
                newDuration: U256::from(3600),
            },
            2,
            20,
        );
        broken.log.inner.data = LogData::new_unchecked(
            vec![ITimelockController::MinDelayChange::SIGNATURE_HASH],
            Bytes::from(vec![1, 2, 3]),
        );
        timelocks.apply(vec![broken]);
        let error = timelocks.changes(&RegistryView::new(), KMS).unwrap_err();
        assert_eq!(error.kind().as_str(), "unavailable");
    }
}
