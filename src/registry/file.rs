//! The registry read from a TOML file, for deployments without a chain. The format is
//! [`Snapshot`] (see `fixtures/registry/default.toml`, embedded as the default registry). Every
//! field is required except the informational `app_implementation` and `implementation`: nothing
//! that shapes a decision is ever inferred from its absence.
//!
//! ```toml
//! block = 0                       # reported with every answer
//! gateway_app_id = ""
//! os_images = ["0x<32 bytes>"]
//! kms_aggregated_mrs = []
//! kms_device_ids = []
//!
//! [[apps]]
//! app_id = "0x<20 bytes>"
//! compose_hashes = ["0x<32 bytes>"]
//! device_ids = []
//! allow_any_device = true
//! require_tcb_up_to_date = false
//! code = "known"                  # or "absent": "App not deployed or invalid address"
//! ```
//!
//! # Reloading without a fail-open window
//!
//! [`FileRegistry::spawn_reloader`] checks the file every poll interval
//! ([`FileRegistry::reload_if_changed`] is one check). A file rewritten in place (opened with
//! truncation, then written) is a prefix of its new content for as long as the writer takes, and
//! the writer may pause anywhere. Three rules keep such a prefix from ever allowing what the
//! complete file denies:
//!
//! 1. **Required fields.** TOML puts every top-level key before the first table header and each
//!    app's keys after its `[[apps]]` header, so with every field required a prefix that ends on a
//!    line boundary parses only if it is the file without some of its last apps (or optional
//!    trailing lines); a missing app is "App not registered", so such a prefix can only deny more.
//!    A prefix that ends inside a line leaves a string, array or `true`/`false` unfinished and
//!    does not parse; only a digit cut from `block`, which decides nothing, survives.
//! 2. **Settling.** A change to the same file (same inode) is applied only when two consecutive
//!    checks read the same stamp (mtime, ctime, length, device and inode) and the same bytes
//!    (SHA-256), each read with the stamp unchanged from before it to after it. A writer that is
//!    still writing moves ctime or the length between checks, so only a paused writer's prefix can
//!    settle, and by rule 1 it is invalid (answers become unavailable) or denies more. Until a
//!    change settles the previous version keeps answering, as it would until a rename; a change
//!    that has not settled within [`MAX_UNSETTLED_CHECKS`] checks fails closed.
//! 3. **Atomic rename.** A new inode at the path whose content parses is applied at the first
//!    check: `rename(2)` swaps whole files, so a renamed file is complete. A new file still being
//!    written at the path (removed, then created) also has a new inode: if what it holds so far
//!    parses, by rule 1 it only denies more, and the rest settles by rule 2, as does a new inode
//!    that does not parse yet. Writing a temporary file and renaming it over the path is the way
//!    to update the registry.
//!
//! The issue this closes: a rewrite paused before its last line (`require_tcb_up_to_date = true`)
//! used to load with the flag defaulted off and allow TCB-out-of-date boots. Now that prefix lacks
//! a required field: once it has settled it is invalid, and answers are unavailable, never allowed.
//!
//! An empty file, a path that is not a regular file (directory, device, FIFO: checked before it
//! is opened, and opened non-blocking), and a file over [`MAX_FILE_BYTES`] (enforced while
//! reading, whatever its reported length) are invalid. An invalid, unreadable or missing file makes
//! every answer unavailable (health NOT_SERVING) until it is fixed: an allowlist that cannot be read
//! must not keep allowing. [`FileRegistry::open`] reads once and refuses what it cannot use.

mod read;
mod stream;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::broadcast;

use super::decision::{kms_is_app_allowed_offline, kms_is_kms_allowed};
use super::view::RegistryView;
use super::{
    decision_from_view, lookup_in, status_of, BoxFuture, Decision, Lookup, LookupAnswer, Registry,
    RegistryChange, RegistryError, Snapshot, ViewStatus, CHANGE_CHANNEL_CAPACITY,
};
use crate::boot_info::BootInfo;
use read::{read_consistent, FileStamp};
use stream::StreamParser;

/// The built-in registry (empty allowlists: every app and KMS is denied with the contracts'
/// reasons until an operator configures a file or a chain).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../fixtures/registry/default.toml");

/// Largest registry file read (a million apps with a compose hash and a device each are ~310 MiB
/// of TOML, streamed: the file is never held whole).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Checks a change may stay unsettled (seen, but not yet read the same twice in a row) before
/// answers fail closed: a file that keeps changing is never known to be complete.
pub const MAX_UNSETTLED_CHECKS: u32 = 3;

struct Loaded {
    view: RegistryView,
    block: u64,
}

/// A version of the file seen by one check, to be confirmed by the next.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    stamp: FileStamp,
    digest: [u8; 32],
}

/// What the checks remember between polls (see the module doc's rules).
#[derive(Default)]
struct Tracker {
    /// The stamp of the version in effect, valid or not; `None` after the path itself failed
    /// (missing, not a regular file…), so whatever appears there next counts as a new file.
    in_effect: Option<FileStamp>,
    pending: Option<Seen>,
    unsettled_checks: u32,
}

/// What one check decided.
enum Step {
    /// Nothing new to apply (unchanged, or a change not settled yet).
    Keep,
    /// The version to answer from now; an error fails closed.
    Apply(Result<Arc<Loaded>, RegistryError>),
}

impl Tracker {
    fn check(&mut self, path: &std::path::Path) -> Step {
        let before = match read::stamp(path) {
            Ok(stamp) if self.in_effect == Some(stamp) => {
                self.pending = None;
                self.unsettled_checks = 0;
                return Step::Keep;
            }
            Ok(stamp) => stamp,
            Err(error) => return self.path_failed(error),
        };
        let renamed = |stamp: FileStamp| {
            self.in_effect
                .is_none_or(|current| current.identity != stamp.identity)
        };
        // Parsing (a large file takes seconds) only when this read may be applied: a new inode,
        // or the stamp the pending version was seen with (a settled change).
        let parse = renamed(before) || self.pending.is_some_and(|seen| seen.stamp == before);
        match read_file(path, parse) {
            Err(error) => return self.path_failed(error),
            Ok(None) => self.pending = None,
            Ok(Some(reading)) => {
                let seen = Seen {
                    stamp: reading.stamp,
                    digest: reading.digest,
                };
                match reading.loaded {
                    Some(loaded) if self.pending == Some(seen) => {
                        return self.settle(reading.stamp, loaded);
                    }
                    Some(Ok(loaded)) if renamed(reading.stamp) => {
                        return self.settle(reading.stamp, Ok(loaded));
                    }
                    // Not parsed: the file changed between the stamp and the read; the next
                    // check parses it if it holds.
                    Some(_) | None => {}
                }
                self.pending = Some(seen);
            }
        }
        self.unsettled_checks = self.unsettled_checks.saturating_add(1);
        if self.unsettled_checks == MAX_UNSETTLED_CHECKS {
            return Step::Apply(Err(RegistryError::InvalidFile {
                path: path.display().to_string(),
                message: format!(
                    "still changing after {MAX_UNSETTLED_CHECKS} checks; \
                     replace it atomically (write a new file, then rename it over this one)"
                ),
            }));
        }
        Step::Keep
    }

    fn settle(&mut self, stamp: FileStamp, outcome: Result<Loaded, RegistryError>) -> Step {
        *self = Tracker {
            in_effect: Some(stamp),
            ..Tracker::default()
        };
        Step::Apply(outcome.map(Arc::new))
    }

    fn path_failed(&mut self, error: RegistryError) -> Step {
        *self = Tracker::default();
        Step::Apply(Err(error))
    }
}

/// The allowlist read from a registry TOML file (the [`super::Snapshot`] format), reloaded when the
/// file changes; a file that becomes unreadable makes answers unavailable until it is fixed.
pub struct FileRegistry {
    /// `None` for the embedded default.
    path: Option<PathBuf>,
    /// What answers come from; an error makes them unavailable.
    answers: RwLock<Result<Arc<Loaded>, RegistryError>>,
    /// Held for a whole check, so checks never interleave (answers are not blocked by it).
    tracker: Mutex<Tracker>,
    changes: broadcast::Sender<RegistryChange>,
}

/// Parses a registry file's text. `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<(RegistryView, u64), RegistryError> {
    let mut parser = StreamParser::new();
    parser.feed(text.as_bytes());
    finish(parser, origin).map(|loaded| (loaded.view, loaded.block))
}

fn finish(parser: StreamParser, origin: &str) -> Result<Loaded, RegistryError> {
    let (view, block) = parser
        .finish()
        .map_err(|message| RegistryError::InvalidFile {
            path: origin.to_owned(),
            message,
        })?;
    Ok(Loaded { view, block })
}

/// One consistent read of the file: what tells its versions apart and, when asked for, the view
/// parsed on the way.
struct Reading {
    stamp: FileStamp,
    digest: [u8; 32],
    loaded: Option<Result<Loaded, RegistryError>>,
}

/// Reads the file once, hashing it and (with `parse`) parsing it as the bytes come; `None` if it
/// changed while read.
fn read_file(path: &std::path::Path, parse: bool) -> Result<Option<Reading>, RegistryError> {
    let mut hasher = Sha256::new();
    let mut parser = parse.then(StreamParser::new);
    let stamp = read_consistent(path, &mut |block| {
        hasher.update(block);
        if let Some(parser) = &mut parser {
            parser.feed(block);
        }
    })?;
    let Some(stamp) = stamp else {
        return Ok(None);
    };
    let origin = path.display().to_string();
    Ok(Some(Reading {
        stamp,
        digest: hasher.finalize().into(),
        loaded: parser.map(|parser| finish(parser, &origin)),
    }))
}

impl FileRegistry {
    /// Loads the file; a missing, unreadable, changing or malformed file is an error here (at
    /// start-up).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let path = path.into();
        let changed = || RegistryError::InvalidFile {
            path: path.display().to_string(),
            message: "the file changed while it was read; replace it atomically (write a new \
                      file, then rename it over this one)"
                .into(),
        };
        let reading = read_file(&path, true)?.ok_or_else(changed)?;
        let stamp = reading.stamp;
        let loaded = reading.loaded.ok_or_else(changed)??;
        Ok(FileRegistry {
            path: Some(path),
            answers: RwLock::new(Ok(Arc::new(loaded))),
            tracker: Mutex::new(Tracker {
                in_effect: Some(stamp),
                ..Tracker::default()
            }),
            changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
        })
    }

    /// The built-in default registry (never reloaded).
    pub fn embedded_default() -> Result<Self, RegistryError> {
        let (view, block) = parse(EMBEDDED_DEFAULT, "embedded default registry")?;
        Ok(FileRegistry {
            path: None,
            answers: RwLock::new(Ok(Arc::new(Loaded { view, block }))),
            tracker: Mutex::new(Tracker::default()),
            changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
        })
    }

    /// One check of the file (the module doc's rules). `Ok(true)`: a new version now answers;
    /// `Ok(false)`: nothing new applied (unchanged, or a change still settling); an error: answers
    /// are unavailable after this check (the error this check found, or the one still in effect).
    pub fn reload_if_changed(&self) -> Result<bool, RegistryError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut tracker = self.tracker.lock().map_err(|_| poisoned())?;
        let outcome = match tracker.check(path) {
            Step::Keep => return self.loaded().map(|_| false),
            Step::Apply(outcome) => outcome,
        };
        let mut answers = self.answers.write().map_err(|_| poisoned())?;
        match outcome {
            Ok(loaded) => {
                let block = loaded.block;
                *answers = Ok(loaded);
                drop(answers);
                let _ = self.changes.send(RegistryChange::Rebuilt { block });
                Ok(true)
            }
            Err(error) => {
                let reason = error.to_string();
                *answers = Err(RegistryError::Unavailable(reason.clone()));
                drop(answers);
                let _ = self.changes.send(RegistryChange::Unavailable { reason });
                Err(error)
            }
        }
    }

    /// Checks the file every `interval` on the current tokio runtime (each check on a blocking
    /// thread: it may read and parse a large file); the task ends when the registry is dropped.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                // Errors are already visible: answers turn unavailable and subscribers are told.
                let _ = tokio::task::spawn_blocking(move || registry.reload_if_changed()).await;
            }
        })
    }

    fn loaded(&self) -> Result<Arc<Loaded>, RegistryError> {
        self.answers.read().map_err(|_| poisoned())?.clone()
    }
}

fn poisoned() -> RegistryError {
    RegistryError::Unavailable("registry file state lock poisoned".to_owned())
}

impl Registry for FileRegistry {
    fn decide_app<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>> {
        Box::pin(async move {
            let loaded = self.loaded()?;
            let verdict = kms_is_app_allowed_offline(&loaded.view, boot).ok_or_else(|| {
                RegistryError::Unavailable(
                    "a registry file cannot evaluate unknown app code".to_owned(),
                )
            })?;
            Ok(decision_from_view(verdict, loaded.block, &loaded.view))
        })
    }

    fn decide_kms<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>> {
        Box::pin(async move {
            let loaded = self.loaded()?;
            Ok(decision_from_view(
                kms_is_kms_allowed(&loaded.view, boot),
                loaded.block,
                &loaded.view,
            ))
        })
    }

    fn lookup(&self, query: &Lookup) -> Result<LookupAnswer, RegistryError> {
        let loaded = self.loaded()?;
        lookup_in(&loaded.view, query, loaded.block)
    }

    fn status(&self) -> Result<ViewStatus, RegistryError> {
        let loaded = self.loaded()?;
        Ok(status_of(&loaded.view, loaded.block, None))
    }

    fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        let loaded = self.loaded()?;
        Ok(Snapshot::of(&loaded.view, loaded.block))
    }

    fn subscribe(&self) -> broadcast::Receiver<RegistryChange> {
        self.changes.subscribe()
    }
}
