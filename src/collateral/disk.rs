//! Optional persistence of fetched Intel items in a directory, one JSON file per item holding
//! the response as received. Files are written atomically (a temporary file in the same
//! directory, then a rename) and trusted for nothing: a load decodes them like a response, and
//! the fetcher verifies them before it serves them.

use super::error::ConfigError;
use super::item::{ItemKey, PckCa, Raw, TcbUpdate};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Version of the file layout.
const FORMAT: u32 = 1;
/// Largest file read back: a capped response, hex-encoded, plus its chain.
const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    item: String,
    key: String,
    /// The `update` the TCB Info or QE Identity was fetched with; empty for CRLs.
    update: String,
    fetched_at: u64,
    issuer_chain: Option<String>,
    body_hex: String,
}

/// An item read back from disk: not decoded, not verified.
pub(crate) struct Stored {
    pub(crate) key: ItemKey,
    pub(crate) raw: Raw,
    pub(crate) fetched_at: u64,
}

pub(crate) struct DiskCache {
    dir: PathBuf,
    update: TcbUpdate,
    temp_files: AtomicU64,
}

impl DiskCache {
    /// Uses `dir` (created if missing) for items fetched with `update`.
    pub(crate) fn open(dir: &Path, update: TcbUpdate) -> Result<DiskCache, ConfigError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ConfigError::new(
                "collateral cache directory",
                format!("{}: {e}", dir.display()),
            )
        })?;
        Ok(DiskCache {
            dir: dir.to_owned(),
            update,
            temp_files: AtomicU64::new(0),
        })
    }

    /// The file of `key`. The TCB Info and QE Identity depend on `update`; the CRLs do not.
    fn file_name(&self, key: ItemKey) -> String {
        let item = key.kind().as_str();
        let update = self.update.as_str();
        match key {
            ItemKey::TcbInfo { .. } => format!("{item}-{}-{update}.json", key.discriminator()),
            ItemKey::QeIdentity => format!("{item}-{update}.json"),
            ItemKey::PckCrl { .. } => format!("{item}-{}.json", key.discriminator()),
            ItemKey::RootCaCrl => format!("{item}.json"),
        }
    }

    /// Every readable item file of this `update`. Unreadable ones are skipped with a warning:
    /// the network replaces them.
    pub(crate) fn load(&self) -> Vec<Stored> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "collateral cache unreadable");
                return Vec::new();
            }
        };
        let mut stored = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match self.read(&path) {
                // A file of another update mode (or renamed by hand) is not this key's.
                Ok(item) if self.file_name(item.key) == name => stored.push(item),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "collateral cache file skipped");
                }
            }
        }
        stored
    }

    fn read(&self, path: &Path) -> Result<Stored, String> {
        let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if len > MAX_FILE_LEN {
            return Err(format!("{len} bytes, more than {MAX_FILE_LEN}"));
        }
        let text = std::fs::read(path).map_err(|e| e.to_string())?;
        let record: Record = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        if record.format != FORMAT {
            return Err(format!("format {} is not {FORMAT}", record.format));
        }
        Ok(Stored {
            key: parse_key(&record.item, &record.key)?,
            raw: Raw {
                body: crate::encoding::decode_hex(&record.body_hex).ok_or("body_hex is not hex")?,
                issuer_chain: record.issuer_chain,
            },
            fetched_at: record.fetched_at,
        })
    }

    /// Writes `raw` for `key`, replacing the previous file atomically. A failure is logged: the
    /// memory cache still holds the item.
    pub(crate) async fn save(&self, key: ItemKey, raw: &Raw, fetched_at: u64) {
        let update = match key {
            ItemKey::TcbInfo { .. } | ItemKey::QeIdentity => self.update.as_str(),
            ItemKey::PckCrl { .. } | ItemKey::RootCaCrl => "",
        };
        let record = Record {
            format: FORMAT,
            item: key.kind().as_str().to_owned(),
            key: key.discriminator(),
            update: update.to_owned(),
            fetched_at,
            issuer_chain: raw.issuer_chain.clone(),
            body_hex: crate::encoding::hex(&raw.body),
        };
        let bytes = serde_json::to_vec(&record).expect("a record serializes");
        let target = self.dir.join(self.file_name(key));
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            self.file_name(key),
            std::process::id(),
            self.temp_files.fetch_add(1, Ordering::Relaxed)
        ));
        let written = tokio::task::spawn_blocking(move || write_atomically(&temp, &target, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(error) = written {
            tracing::warn!(dir = %self.dir.display(), %error, "collateral cache write failed");
        }
    }
}

fn write_atomically(temp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let result = (|| {
        let mut file = std::fs::File::create(temp)?;
        file.write_all(bytes)?;
        // On disk before the rename makes it visible: a crash leaves the old file or the new.
        file.sync_all()?;
        std::fs::rename(temp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

fn parse_key(item: &str, key: &str) -> Result<ItemKey, String> {
    match item {
        "tcb_info" => {
            let fmspc = crate::encoding::parse_hex_exact::<6>(key).map_err(|e| e.to_string())?;
            Ok(ItemKey::TcbInfo { fmspc })
        }
        "qe_identity" => Ok(ItemKey::QeIdentity),
        "pck_crl" => Ok(ItemKey::PckCrl {
            ca: key.parse::<PckCa>()?,
        }),
        "root_ca_crl" => Ok(ItemKey::RootCaCrl),
        _ => Err(format!("unknown item {item:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [ItemKey; 4] = [
        ItemKey::TcbInfo {
            fmspc: [0x90, 0xc0, 0x6f, 0, 0, 0],
        },
        ItemKey::QeIdentity,
        ItemKey::PckCrl {
            ca: PckCa::Platform,
        },
        ItemKey::RootCaCrl,
    ];

    #[tokio::test]
    async fn round_trip_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(&dir.path().join("sub"), TcbUpdate::Early).unwrap();
        for (n, key) in KEYS.into_iter().enumerate() {
            let raw = Raw {
                body: vec![n as u8; 3],
                issuer_chain: Some(format!("chain {n}")),
            };
            cache.save(key, &raw, 100).await;
        }
        let replaced = Raw {
            body: b"new".to_vec(),
            issuer_chain: None,
        };
        cache.save(ItemKey::RootCaCrl, &replaced, 200).await;

        let mut loaded = cache.load();
        loaded.sort_by_key(|s| s.key);
        assert_eq!(loaded.iter().map(|s| s.key).collect::<Vec<_>>(), KEYS);
        let root = loaded.last().unwrap();
        assert_eq!((&root.raw, root.fetched_at), (&replaced, 200));
        assert_eq!(loaded[0].raw.issuer_chain.as_deref(), Some("chain 0"));

        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "pck_crl-platform.json",
                "qe_identity-early.json",
                "root_ca_crl.json",
                "tcb_info-90C06F000000-early.json"
            ],
            "no temporary file is left"
        );

        // Another update mode does not read this mode's documents; the CRLs are shared.
        let standard = DiskCache::open(&dir.path().join("sub"), TcbUpdate::Standard).unwrap();
        let mut shared: Vec<_> = standard.load().into_iter().map(|s| s.key).collect();
        shared.sort();
        assert_eq!(shared, KEYS[2..]);
    }

    #[test]
    fn unreadable_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), TcbUpdate::Standard).unwrap();
        std::fs::write(dir.path().join("root_ca_crl.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("pck_crl-platform.json"), br#"{"format":2}"#).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        assert!(cache.load().is_empty());
        assert!(parse_key("tcb_info", "90C06F").is_err());
        assert!(parse_key("pck_crl", "root").is_err());
        assert!(parse_key("ca_issuer", "").is_err());
    }
}
