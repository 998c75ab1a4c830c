//! The file source: decisions, lookups, snapshots, reload on change, malformed files, and the
//! reload rules that keep a half-written, non-regular or oversized file from ever answering.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::file::{parse, FileRegistry};
use tee_verifier::registry::{Evaluation, Lookup, Registry, RegistryChange, Snapshot};
use tonic_health::pb::health_check_response::ServingStatus;

const APP: &str = "0x00000000000000000000000000000000000000aa";
const OS: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const COMPOSE: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";
const DEVICE: &str = "0x3333333333333333333333333333333333333333333333333333333333333333";
const MR: &str = "0x4444444444444444444444444444444444444444444444444444444444444444";

fn registry_text(compose_hashes: &str) -> String {
    format!(
        r#"
block = 7
gateway_app_id = "gateway"
os_images = ["{OS}"]
kms_aggregated_mrs = ["{MR}"]
kms_device_ids = ["{DEVICE}"]

[[apps]]
app_id = "0x00000000000000000000000000000000000000bb"
compose_hashes = []
device_ids = []
allow_any_device = false
require_tcb_up_to_date = false
code = "absent"

[[apps]]
app_id = "{APP}"
compose_hashes = [{compose_hashes}]
device_ids = ["{DEVICE}"]
allow_any_device = false
code = "known"
require_tcb_up_to_date = true
"#
    )
}

fn boot() -> BootInfo {
    serde_json::from_value(serde_json::json!({
        "appId": APP, "composeHash": COMPOSE, "deviceId": DEVICE, "mrAggregated": MR,
        "osImageHash": OS, "tcbStatus": "UpToDate",
    }))
    .unwrap()
}

/// Replaces the file atomically: a new file beside it, renamed over it.
fn write(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The test registry allowing `boot()`, whose last line is `require_tcb_up_to_date = true`.
fn complete_text() -> String {
    registry_text(&format!("\"{COMPOSE}\""))
}

/// A temporary directory holding `registry.toml` with `text`, and that file's path.
fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, text);
    (dir, path)
}

/// Rewrites the file in place (same inode), as `open(…, "w")` then `write` do.
fn write_in_place(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[tokio::test]
async fn decides_and_looks_up_from_a_file() {
    let (_dir, path) = file_with(&complete_text());
    let registry = FileRegistry::open(&path).unwrap();

    let decision = registry.decide_app(&boot()).await.unwrap();
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(
        (decision.block, decision.gateway_app_id.as_str()),
        (7, "gateway")
    );
    assert_eq!(decision.evaluated_by, Evaluation::View);
    let stale = BootInfo {
        tcb_status: "OutOfDate".into(),
        ..boot()
    };
    assert_eq!(
        registry.decide_app(&stale).await.unwrap().reason,
        "TCB status is not up to date"
    );
    let absent = BootInfo {
        app_id: [0xbb; 20],
        ..boot()
    };
    let absent = BootInfo {
        app_id: {
            let mut id = [0; 20];
            id[19] = 0xbb;
            id
        },
        ..absent
    };
    assert_eq!(
        registry.decide_app(&absent).await.unwrap().reason,
        "App not deployed or invalid address"
    );
    assert!(registry.decide_kms(&boot()).await.unwrap().allowed);
    assert_eq!(
        registry.decide_kms(&stale).await.unwrap().reason,
        "TCB status is not up to date"
    );

    let app_id = boot().app_id;
    let compose_hash = boot().compose_hash;
    assert!(
        registry
            .lookup(&Lookup::OsImageHash(boot().os_image_hash))
            .unwrap()
            .present
    );
    assert!(
        !registry
            .lookup(&Lookup::OsImageHash([0; 32]))
            .unwrap()
            .present
    );
    assert!(
        registry
            .lookup(&Lookup::ComposeHash {
                app_id,
                compose_hash
            })
            .unwrap()
            .present
    );
    assert!(
        !registry
            .lookup(&Lookup::ComposeHash {
                app_id: [1; 20],
                compose_hash
            })
            .unwrap()
            .present
    );
    assert!(
        registry
            .lookup(&Lookup::KmsAggregatedMr(boot().mr_aggregated))
            .unwrap()
            .present
    );
    assert!(
        registry
            .lookup(&Lookup::KmsDeviceId(boot().device_id))
            .unwrap()
            .present
    );
    assert!(
        registry
            .lookup(&Lookup::RegisteredApp(app_id))
            .unwrap()
            .present
    );
    assert_eq!(
        registry
            .lookup(&Lookup::KmsDeviceId([0; 32]))
            .unwrap()
            .block,
        7
    );

    // The snapshot is the file format: it round-trips.
    let snapshot = registry.snapshot().unwrap();
    let text = toml::to_string(&snapshot).unwrap();
    let (view, block) = parse(&text, "round trip").unwrap();
    assert_eq!(Snapshot::of(&view, block), snapshot);
}

#[tokio::test]
async fn the_embedded_default_denies_everything() {
    let registry = FileRegistry::embedded_default().unwrap();
    assert_eq!(
        registry.decide_app(&boot()).await.unwrap().reason,
        "App not registered"
    );
    assert_eq!(
        registry.decide_kms(&boot()).await.unwrap().reason,
        "OS image is not allowed"
    );
    assert_eq!(registry.snapshot().unwrap(), Snapshot::default());
    assert!(!registry.reload_if_changed().unwrap());
}

#[tokio::test]
async fn reloads_when_the_file_changes() {
    let (_dir, path) = file_with(&complete_text());
    let registry = Arc::new(FileRegistry::open(&path).unwrap());
    let mut changes = registry.subscribe();
    assert!(
        !registry.reload_if_changed().unwrap(),
        "unchanged file reloaded"
    );

    write(&path, &registry_text(""));
    assert!(registry.reload_if_changed().unwrap());
    assert_eq!(
        registry.decide_app(&boot()).await.unwrap().reason,
        "Compose hash not allowed"
    );
    assert_eq!(
        changes.try_recv().unwrap(),
        RegistryChange::Rebuilt { block: 7 }
    );

    // The background reloader picks up the next change by itself.
    let _reloader = registry.spawn_reloader(Duration::from_millis(20));
    write(
        &path,
        &registry_text(&format!("\"{COMPOSE}\", \"{DEVICE}\"")),
    );
    let start = std::time::Instant::now();
    while !registry.decide_app(&boot()).await.unwrap().allowed {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "reloader did not pick the change up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_same_length_edit_that_keeps_the_mtime_is_still_reloaded() {
    let (_dir, path) = file_with(&complete_text());
    let registry = FileRegistry::open(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Revoke the compose hash with an in-place edit of the same length, then restore the old
    // mtime (what `cp -p` or `rsync -t` do).
    let edited = registry_text(&format!("\"{DEVICE}\""));
    assert_eq!(
        edited.len(),
        std::fs::metadata(&path).unwrap().len() as usize
    );
    write_in_place(&path, &edited);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    // Seen, then applied once the next check reads it unchanged.
    assert!(!registry.reload_if_changed().unwrap(), "applied unsettled");
    assert!(registry.reload_if_changed().unwrap(), "the edit was missed");
    assert_eq!(
        registry.decide_app(&boot()).await.unwrap().reason,
        "Compose hash not allowed"
    );
}

#[tokio::test]
async fn a_file_broken_at_reload_makes_answers_unavailable_until_fixed() {
    let good = complete_text();
    let (_dir, path) = file_with(&good);
    let registry = FileRegistry::open(&path).unwrap();
    write(&path, "os_images = [\"0x12\"]\n");
    // A renamed file that does not parse may still be being written: it must settle first.
    assert!(!registry.reload_if_changed().unwrap());
    assert_eq!(
        registry.reload_if_changed().unwrap_err().kind().as_str(),
        "invalid_registry_file"
    );
    assert_eq!(app_error(&registry).await, "unavailable");
    assert_eq!(
        registry
            .decide_kms(&boot())
            .await
            .unwrap_err()
            .kind()
            .as_str(),
        "unavailable"
    );
    assert_eq!(
        registry.snapshot().unwrap_err().kind().as_str(),
        "unavailable"
    );
    assert_eq!(
        registry.status().unwrap_err().kind().as_str(),
        "unavailable"
    );
    // Unchanged and still broken: still an error, without re-reading it.
    assert_eq!(
        registry.reload_if_changed().unwrap_err().kind().as_str(),
        "unavailable"
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        registry.reload_if_changed().unwrap_err().kind().as_str(),
        "io"
    );
    write(&path, &good);
    assert!(registry.reload_if_changed().unwrap());
    assert!(registry.decide_app(&boot()).await.unwrap().allowed);
}

/// Each case is the complete file with one defect.
#[test]
fn malformed_files_are_rejected_with_their_kind() {
    let complete = complete_text();
    let (dir, path) = file_with(&complete);
    let edit = |from: &str, to: &str| {
        assert!(complete.contains(from), "{from:?} not in the file");
        complete.replacen(from, to, 1)
    };
    let known_app = |body: &str| {
        format!(
            "\n[[apps]]\napp_id = \"{APP}\"\ncompose_hashes = []\ndevice_ids = []\n\
             allow_any_device = false\nrequire_tcb_up_to_date = false\n{body}\n"
        )
    };
    let cases = [
        (
            "not toml",
            edit(&format!("os_images = [\"{OS}\"]"), "os_images = ["),
        ),
        ("not hex", edit(OS, "0xzz")),
        ("short value", edit(OS, &OS[..64])),
        ("long value", edit(OS, &format!("{OS}00"))),
        (
            "20-byte value where 32 are needed",
            edit(
                &format!("kms_device_ids = [\"{DEVICE}\"]"),
                &format!("kms_device_ids = [\"{APP}\"]"),
            ),
        ),
        ("unknown field", edit("os_images", "os_image")),
        ("unknown app field", edit("compose_hashes", "compose")),
        ("missing app id", edit(&format!("app_id = \"{APP}\"\n"), "")),
        (
            "duplicate app",
            complete.clone() + &known_app("code = \"known\""),
        ),
        (
            "lists on an app without code",
            edit(
                "compose_hashes = []",
                &format!("compose_hashes = [\"{COMPOSE}\"]"),
            ),
        ),
        (
            "unknown code kind",
            edit("code = \"known\"", "code = \"maybe\""),
        ),
        ("negative block", edit("block = 7", "block = -1")),
    ];
    for (what, text) in cases {
        write(&path, &text);
        let error = FileRegistry::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(
            error.kind().as_str(),
            "invalid_registry_file",
            "{what}: {error}"
        );
    }
    let mut invalid_utf8 = complete.clone().into_bytes();
    invalid_utf8.extend_from_slice(b"# \xff\n");
    std::fs::write(&path, invalid_utf8).unwrap();
    let error = FileRegistry::open(&path)
        .err()
        .expect("invalid UTF-8 accepted");
    assert_eq!(error.kind().as_str(), "invalid_registry_file", "{error}");
    let missing = FileRegistry::open(dir.path().join("missing.toml"))
        .err()
        .unwrap();
    assert_eq!(missing.kind().as_str(), "io");
}

/// No field that shapes a decision has a default: each one left out makes the file invalid.
#[test]
fn every_field_but_the_informational_addresses_is_required() {
    let complete = complete_text();
    let (_dir, path) = file_with(&complete);
    assert!(FileRegistry::open(&path).is_ok());
    let keys = [
        "block",
        "gateway_app_id",
        "os_images",
        "kms_aggregated_mrs",
        "kms_device_ids",
        "compose_hashes",
        "device_ids",
        "allow_any_device",
        "require_tcb_up_to_date",
        "code",
    ];
    for key in keys {
        // Drop the key's last occurrence (the known app's, for per-app keys).
        let mut lines: Vec<&str> = complete.lines().collect();
        let at = lines
            .iter()
            .rposition(|line| line.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{key} not in the file"));
        lines.remove(at);
        write(&path, &lines.join("\n"));
        let error = FileRegistry::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{key} missing: accepted"));
        assert_eq!(
            error.kind().as_str(),
            "invalid_registry_file",
            "{key}: {error}"
        );
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
    // Without any [[apps]] table, `apps = []` must be spelled too.
    write(
        &path,
        "block = 0\ngateway_app_id = \"\"\nos_images = []\nkms_aggregated_mrs = []\n\
         kms_device_ids = []\n",
    );
    let error = FileRegistry::open(&path).err().expect("no apps: accepted");
    assert!(error.to_string().contains("apps"), "{error}");
}

#[test]
fn an_empty_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    for text in ["", "\n  \n", "# only a comment\n"] {
        write(&path, text);
        let error = FileRegistry::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{text:?}: accepted"));
        assert_eq!(
            error.kind().as_str(),
            "invalid_registry_file",
            "{text:?}: {error}"
        );
    }
}

#[tokio::test]
async fn unknown_app_code_in_a_file_cannot_be_decided() {
    let text = registry_text("")
        .replace(&format!("device_ids = [\"{DEVICE}\"]"), "device_ids = []")
        .replace("code = \"known\"", "code = \"unknown\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &text);
    let registry = FileRegistry::open(&path).unwrap();
    assert_eq!(app_error(&registry).await, "unavailable");
    let query = Lookup::ComposeHash {
        app_id: boot().app_id,
        compose_hash: boot().compose_hash,
    };
    assert_eq!(
        registry.lookup(&query).unwrap_err().kind().as_str(),
        "unknown_app_code"
    );
}

/// The kind of error the file's registry answers the boot with (it must not answer).
async fn app_error(registry: &FileRegistry) -> &'static str {
    registry
        .decide_app(&boot())
        .await
        .unwrap_err()
        .kind()
        .as_str()
}

/// The boot the complete file denies ("TCB status is not up to date") and that its half, with
/// `require_tcb_up_to_date` defaulted off, would allow.
fn out_of_date_boot() -> BootInfo {
    BootInfo {
        tcb_status: "OutOfDate".into(),
        ..boot()
    }
}

/// The out-of-date boot's answer: denied as the complete file denies it, or unavailable; never
/// allowed.
async fn denied_or_unavailable(registry: &FileRegistry) -> &'static str {
    match registry.decide_app(&out_of_date_boot()).await {
        Ok(decision) => {
            assert!(!decision.allowed, "allowed during a torn write");
            assert_eq!(decision.reason, "TCB status is not up to date");
            "denied"
        }
        Err(error) => {
            assert_eq!(error.kind().as_str(), "unavailable", "{error}");
            "unavailable"
        }
    }
}

/// The issue's torn write: truncated, written but for the last line, paused. The half file is
/// never applied, nothing the complete file denies is ever allowed, and the complete file applies
/// once it has been read unchanged twice.
#[tokio::test]
async fn a_torn_write_is_never_applied_and_never_allows() {
    let complete = complete_text();
    assert!(complete.ends_with("require_tcb_up_to_date = true\n"));
    let (_dir, path) = file_with(&complete);
    let registry = FileRegistry::open(&path).unwrap();
    let half = &complete[..complete.trim_end().rfind('\n').unwrap() + 1];
    let mut writer = std::fs::File::create(&path).unwrap();
    writer.write_all(half.as_bytes()).unwrap();
    writer.flush().unwrap();
    // First check: a change seen, not yet settled; the previous version keeps answering.
    assert!(!registry.reload_if_changed().unwrap());
    assert_eq!(denied_or_unavailable(&registry).await, "denied");
    // Second check: the half has settled, and it lacks a required field: fail closed.
    let error = registry.reload_if_changed().unwrap_err();
    assert_eq!(error.kind().as_str(), "invalid_registry_file", "{error}");
    assert!(
        error.to_string().contains("require_tcb_up_to_date"),
        "{error}"
    );
    for _ in 0..5 {
        assert!(registry.reload_if_changed().is_err());
        assert_eq!(denied_or_unavailable(&registry).await, "unavailable");
    }

    // The writer finishes: applied after it has been read unchanged twice.
    writer
        .write_all(&complete.as_bytes()[half.len()..])
        .unwrap();
    drop(writer);
    assert!(registry.reload_if_changed().is_err(), "applied unsettled");
    assert_eq!(denied_or_unavailable(&registry).await, "unavailable");
    assert!(registry.reload_if_changed().unwrap());
    assert_eq!(denied_or_unavailable(&registry).await, "denied");
    assert!(registry.decide_app(&boot()).await.unwrap().allowed);
}

#[tokio::test]
async fn an_atomic_rename_applies_at_the_first_check() {
    let (_dir, path) = file_with(&complete_text());
    let registry = FileRegistry::open(&path).unwrap();
    write(&path, &registry_text(""));
    assert!(registry.reload_if_changed().unwrap());
    assert_eq!(
        registry.decide_app(&boot()).await.unwrap().reason,
        "Compose hash not allowed"
    );
    assert!(!registry.reload_if_changed().unwrap());
}

#[tokio::test]
async fn a_file_that_keeps_changing_fails_closed_until_it_settles() {
    let (_dir, path) = file_with(&complete_text());
    let registry = FileRegistry::open(&path).unwrap();
    let mut file = std::fs::File::options().append(true).open(&path).unwrap();
    let mut error = None;
    for check in 1..=tee_verifier::registry::file::MAX_UNSETTLED_CHECKS {
        writeln!(file, "# edit {check}").unwrap();
        match registry.reload_if_changed() {
            Ok(applied) => assert!(!applied, "check {check}: applied unsettled"),
            Err(e) => error = Some((check, e)),
        }
    }
    let (check, error) = error.expect("a file that never settles kept answering");
    assert_eq!(
        check,
        tee_verifier::registry::file::MAX_UNSETTLED_CHECKS,
        "{error}"
    );
    assert_eq!(error.kind().as_str(), "invalid_registry_file");
    assert!(error.to_string().contains("rename"), "{error}");
    assert_eq!(app_error(&registry).await, "unavailable");
    // Once it stops changing, the next check reads what the last one saw: applied.
    assert!(registry.reload_if_changed().unwrap());
    assert!(registry.decide_app(&boot()).await.unwrap().allowed);
}

/// Runs `f` on its own thread and fails the test unless it returns within `limit` (so a read
/// that blocks forever fails instead of hanging the suite).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A FIFO, a directory or a device at the path is refused from its metadata, at start-up and at a
/// reload, without ever blocking on it or reading it.
#[test]
fn a_fifo_a_directory_or_a_device_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = complete_text();
    let fifo = dir.path().join("fifo.toml");
    mkfifo(&fifo);
    let subdirectory = dir.path().join("directory.toml");
    std::fs::create_dir(&subdirectory).unwrap();
    for target in [
        fifo.clone(),
        subdirectory.clone(),
        "/dev/zero".into(),
        "/dev/null".into(),
    ] {
        let shown = target.display().to_string();
        let error = within(Duration::from_secs(5), move || {
            FileRegistry::open(&target).err().expect("opened")
        });
        assert_eq!(
            error.kind().as_str(),
            "invalid_registry_file",
            "{shown}: {error}"
        );
        assert!(
            error.to_string().contains("not a regular file"),
            "{shown}: {error}"
        );

        // At a reload: the path becomes a symlink to it.
        let path = dir.path().join("registry.toml");
        let link = dir.path().join("registry.link");
        write(&path, &good);
        let registry = Arc::new(FileRegistry::open(&path).unwrap());
        std::os::unix::fs::symlink(&shown, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
        let reloading = Arc::clone(&registry);
        let error = within(Duration::from_secs(5), move || {
            reloading.reload_if_changed().unwrap_err()
        });
        assert_eq!(
            error.kind().as_str(),
            "invalid_registry_file",
            "{shown}: {error}"
        );
        assert_eq!(
            registry.status().unwrap_err().kind().as_str(),
            "unavailable",
            "{shown}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// `/dev/zero` used to be read until memory ran out. Under a 256 MiB address-space limit the CLI
/// must refuse it (exit 2, not a regular file) within seconds.
#[test]
fn dev_zero_as_the_registry_is_refused_quickly_in_bounded_memory() {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 262144 && exec "$0" registry show --registry /dev/zero"#)
        .arg(env!("CARGO_BIN_EXE_tee-verifier"))
        .env_remove("TEE_VERIFIER_REGISTRY")
        .env_remove("TEE_VERIFIER_RPC_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tee-verifier");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still reading /dev/zero after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{status}: {stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

/// The webhook body of a boot info.
fn webhook_body(boot: &BootInfo) -> String {
    let hex = |bytes: &[u8]| format!("0x{}", hex::encode(bytes));
    serde_json::json!({
        "appId": hex(&boot.app_id),
        "composeHash": hex(&boot.compose_hash),
        "instanceId": hex(&boot.instance_id),
        "deviceId": hex(&boot.device_id),
        "mrAggregated": hex(&boot.mr_aggregated),
        "osImageHash": hex(&boot.os_image_hash),
        "tcbStatus": boot.tcb_status,
    })
    .to_string()
}

/// Asks the webhook about the out-of-date boot until `stop`, collecting every answer's
/// `(isAllowed, reason)`.
fn sample_webhook(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(bool, String)>> {
    let body = webhook_body(&out_of_date_boot());
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut answers = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let answer: serde_json::Value = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("POST")
                .json()
                .await
                .expect("JSON answer");
            answers.push((
                answer["isAllowed"].as_bool().expect("isAllowed"),
                answer["reason"].as_str().expect("reason").to_owned(),
            ));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answers
    })
}

/// `serve` on the registry file at `path`, checked every 100 ms, once it is serving.
async fn serve(path: &Path) -> crate::support::service::Service {
    let server = crate::support::service::Service::start(&[
        "--registry",
        path.to_str().unwrap(),
        "--poll-interval",
        "100ms",
    ]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    server
}

/// The issue's reproduction against `serve`: while a rewrite is paused before its last line, the
/// webhook never allows the boot the complete file denies, and health turns NOT_SERVING; when the
/// write finishes, the complete file serves again.
#[tokio::test]
async fn under_the_service_a_torn_write_never_allows_and_health_turns_not_serving() {
    let complete = complete_text();
    let (_dir, path) = file_with(&complete);
    let server = serve(&path).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_webhook(server.url("/bootAuth/app"), Arc::clone(&stop));

    let half = &complete[..complete.trim_end().rfind('\n').unwrap() + 1];
    let mut writer = std::fs::File::create(&path).unwrap();
    writer.write_all(half.as_bytes()).unwrap();
    writer.flush().unwrap();
    server
        .wait_health(ServingStatus::NotServing, Duration::from_secs(5))
        .await;
    // Paused for many polls: still not serving.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(server.health("").await, ServingStatus::NotServing);
    assert_eq!(server.get("/healthz").await.0, 503);
    writer
        .write_all(&complete.as_bytes()[half.len()..])
        .unwrap();
    drop(writer);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = sampler.await.unwrap();

    assert!(
        answers.iter().all(|(allowed, _)| !allowed),
        "allowed during the torn write: {answers:?}"
    );
    let reasons: std::collections::BTreeSet<&str> =
        answers.iter().map(|(_, reason)| reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "TCB status is not up to date",
            "authorization backend unavailable"
        ]
        .into_iter()
        .collect(),
        "{answers:?}"
    );
    let (_, answer) = server
        .post_json("/bootAuth/app", &webhook_body(&boot()))
        .await;
    assert_eq!(answer["isAllowed"], true, "{answer}");
}

/// The path swapped (by symlink, as Kubernetes mounts do) for an empty file, `/dev/zero`, a FIFO
/// or a directory: NOT_SERVING within a few polls, the service's memory stays bounded, and it
/// serves again when the path names the registry again.
#[tokio::test]
async fn under_the_service_an_empty_or_non_regular_registry_is_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    write(&good, &complete_text());
    let empty = dir.path().join("empty.toml");
    write(&empty, "");
    let fifo = dir.path().join("fifo.toml");
    mkfifo(&fifo);
    let subdirectory = dir.path().join("directory.toml");
    std::fs::create_dir(&subdirectory).unwrap();
    let path = dir.path().join("registry.toml");
    let point_at = |target: &Path| {
        let link = dir.path().join("registry.link");
        std::os::unix::fs::symlink(target, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
    };
    point_at(&good);
    let server = serve(&path).await;
    let peak_rss_kib = || server.peak_rss_kib();
    for target in [
        empty.as_path(),
        Path::new("/dev/zero"),
        fifo.as_path(),
        subdirectory.as_path(),
    ] {
        point_at(target);
        server
            .wait_health(ServingStatus::NotServing, Duration::from_secs(5))
            .await;
        let (_, answer) = server
            .post_json("/bootAuth/app", &webhook_body(&boot()))
            .await;
        assert_eq!(
            (answer["isAllowed"].as_bool(), answer["reason"].as_str()),
            (Some(false), Some("authorization backend unavailable")),
            "{}",
            target.display()
        );
        point_at(&good);
        server
            .wait_health(ServingStatus::Serving, Duration::from_secs(5))
            .await;
    }
    let peak = peak_rss_kib();
    assert!(peak < 256 << 10, "peak RSS {peak} KiB");
}
