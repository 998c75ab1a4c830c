//! The registry read from a TOML file, for deployments without a chain. The format is
//! [`Snapshot`] (see `fixtures/registry/default.toml`, embedded as the default registry):
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
//! The file is re-read when its modification time or length changes ([`FileRegistry::reload_if_changed`],
//! or [`FileRegistry::spawn_reloader`] polling it). If it becomes unreadable or malformed, answers
//! are unavailable until it is fixed: an allowlist that cannot be read must not keep allowing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use super::decision::{kms_is_app_allowed_offline, kms_is_kms_allowed};
use super::view::RegistryView;
use super::{
    decision_from_view, lookup_in, status_of, BoxFuture, Decision, Lookup, LookupAnswer, Registry,
    RegistryChange, RegistryError, Snapshot, ViewStatus, CHANGE_CHANNEL_CAPACITY,
};
use crate::boot_info::BootInfo;

/// The built-in registry (empty allowlists: every app and KMS is denied with the contracts'
/// reasons until an operator configures a file or a chain).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../fixtures/registry/default.toml");

/// Largest registry file read (a million apps with a compose hash each is ~150 MB of TOML).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// What tells one version of the file from another without reading it. The inode and the
/// status-change time catch what mtime and length miss: an edit of the same length within the
/// timestamp granularity, a copy that preserves mtime (`cp -p`, `rsync -t`), a rename over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    changed: (i64, i64),
}

struct Loaded {
    view: RegistryView,
    block: u64,
}

/// The last load's outcome (an error makes answers unavailable) and the file stamp it read.
type FileState = (Result<Arc<Loaded>, RegistryError>, Option<FileStamp>);

/// The allowlist read from a registry TOML file (the [`super::Snapshot`] format), reloaded when the
/// file changes; a file that becomes unreadable makes answers unavailable until it is fixed.
pub struct FileRegistry {
    /// `None` for the embedded default.
    path: Option<PathBuf>,
    state: RwLock<FileState>,
    changes: broadcast::Sender<RegistryChange>,
}

/// Parses a registry file's text. `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<(RegistryView, u64), RegistryError> {
    let invalid = |message: String| RegistryError::InvalidFile {
        path: origin.to_owned(),
        message,
    };
    let snapshot: Snapshot = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let view = snapshot.to_view().map_err(invalid)?;
    Ok((view, snapshot.block))
}

fn stamp(path: &Path) -> Result<FileStamp, RegistryError> {
    let metadata = std::fs::metadata(path).map_err(|e| RegistryError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    #[cfg(unix)]
    let (inode, changed) = {
        use std::os::unix::fs::MetadataExt as _;
        (metadata.ino(), (metadata.ctime(), metadata.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let (inode, changed) = (0, (0, 0));
    Ok(FileStamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode,
        changed,
    })
}

fn read(path: &Path) -> Result<(Loaded, FileStamp), RegistryError> {
    let origin = path.display().to_string();
    let before = stamp(path)?;
    if before.len > MAX_FILE_BYTES {
        return Err(RegistryError::InvalidFile {
            path: origin,
            message: format!(
                "{} bytes is over the {MAX_FILE_BYTES}-byte limit",
                before.len
            ),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Io {
        path: origin.clone(),
        message: e.to_string(),
    })?;
    // A file rewritten in place may be read half-written, and a prefix can still parse with
    // policy flags defaulted off: refuse any read the file changed under.
    if text.len() as u64 != before.len || stamp(path)? != before {
        return Err(RegistryError::InvalidFile {
            path: origin,
            message:
                "the file changed while it was read; replace it atomically (write, then rename)"
                    .into(),
        });
    }
    let (view, block) = parse(&text, &origin)?;
    Ok((Loaded { view, block }, before))
}

impl FileRegistry {
    /// Loads the file; a missing or malformed file is an error here (at start-up).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let path = path.into();
        let (loaded, stamp) = read(&path)?;
        Ok(FileRegistry {
            path: Some(path),
            state: RwLock::new((Ok(Arc::new(loaded)), Some(stamp))),
            changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
        })
    }

    /// The built-in default registry (never reloaded).
    pub fn embedded_default() -> Result<Self, RegistryError> {
        let (view, block) = parse(EMBEDDED_DEFAULT, "embedded default registry")?;
        Ok(FileRegistry {
            path: None,
            state: RwLock::new((Ok(Arc::new(Loaded { view, block })), None)),
            changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
        })
    }

    /// Re-reads the file if its modification time or length changed. Returns whether a reload
    /// happened; an error means the file is now unusable and answers are unavailable.
    pub fn reload_if_changed(&self) -> Result<bool, RegistryError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let current = stamp(path);
        let previous = self.state.read().map_err(|_| poisoned())?.1;
        if let (Ok(current), Some(previous)) = (&current, previous) {
            if *current == previous {
                return Ok(false);
            }
        }
        let outcome = current.and_then(|_| read(path));
        let mut state = self.state.write().map_err(|_| poisoned())?;
        match outcome {
            Ok((loaded, stamp)) => {
                let block = loaded.block;
                *state = (Ok(Arc::new(loaded)), Some(stamp));
                drop(state);
                let _ = self.changes.send(RegistryChange::Rebuilt { block });
                Ok(true)
            }
            Err(error) => {
                let reason = error.to_string();
                // Keep no stamp so the next poll retries even if the broken file is not touched.
                *state = (Err(RegistryError::Unavailable(reason.clone())), None);
                drop(state);
                let _ = self.changes.send(RegistryChange::Unavailable { reason });
                Err(error)
            }
        }
    }

    /// Polls the file every `interval` on the current tokio runtime; the task ends when the
    /// registry is dropped.
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
                let _ = registry.reload_if_changed();
            }
        })
    }

    fn loaded(&self) -> Result<Arc<Loaded>, RegistryError> {
        self.state.read().map_err(|_| poisoned())?.0.clone()
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

    fn decide_kms(&self, boot: &BootInfo) -> Result<Decision, RegistryError> {
        let loaded = self.loaded()?;
        Ok(decision_from_view(
            kms_is_kms_allowed(&loaded.view, boot),
            loaded.block,
            &loaded.view,
        ))
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
