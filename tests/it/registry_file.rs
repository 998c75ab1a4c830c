//! The file source: decisions, lookups, snapshots, reload on change, malformed files.

use std::sync::Arc;
use std::time::Duration;

use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::file::{parse, FileRegistry};
use tee_verifier::registry::{Evaluation, Lookup, Registry, RegistryChange, Snapshot};

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
app_id = "{APP}"
compose_hashes = [{compose_hashes}]
device_ids = ["{DEVICE}"]
require_tcb_up_to_date = true

[[apps]]
app_id = "0x00000000000000000000000000000000000000bb"
code = "absent"
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

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn decides_and_looks_up_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &registry_text(&format!("\"{COMPOSE}\"")));
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
    assert!(registry.decide_kms(&boot()).unwrap().allowed);
    assert_eq!(
        registry.decide_kms(&stale).unwrap().reason,
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
        registry.decide_kms(&boot()).unwrap().reason,
        "OS image is not allowed"
    );
    assert_eq!(registry.snapshot().unwrap(), Snapshot::default());
    assert!(!registry.reload_if_changed().unwrap());
}

#[tokio::test]
async fn reloads_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &registry_text(&format!("\"{COMPOSE}\"")));
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &registry_text(&format!("\"{COMPOSE}\"")));
    let registry = FileRegistry::open(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Revoke the compose hash with an edit of the same length, then restore the old mtime
    // (what `cp -p` or `rsync -t` do).
    let edited = registry_text(&format!("\"{DEVICE}\""));
    assert_eq!(
        edited.len(),
        std::fs::metadata(&path).unwrap().len() as usize
    );
    write(&path, &edited);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert!(registry.reload_if_changed().unwrap(), "the edit was missed");
    assert_eq!(
        registry.decide_app(&boot()).await.unwrap().reason,
        "Compose hash not allowed"
    );
}

#[tokio::test]
async fn a_file_broken_at_reload_makes_answers_unavailable_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    let good = registry_text(&format!("\"{COMPOSE}\""));
    write(&path, &good);
    let registry = FileRegistry::open(&path).unwrap();
    write(&path, "os_images = [\"0x12\"]\n");
    assert_eq!(
        registry.reload_if_changed().unwrap_err().kind().as_str(),
        "invalid_registry_file"
    );
    assert_eq!(
        registry
            .decide_app(&boot())
            .await
            .unwrap_err()
            .kind()
            .as_str(),
        "unavailable"
    );
    assert_eq!(
        registry.decide_kms(&boot()).unwrap_err().kind().as_str(),
        "unavailable"
    );
    assert_eq!(
        registry.snapshot().unwrap_err().kind().as_str(),
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

#[test]
fn malformed_files_are_rejected_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    let app = |body: &str| format!("[[apps]]\napp_id = \"{APP}\"\n{body}\n");
    let cases = [
        ("not toml", "os_images = [".to_owned()),
        ("not hex", "os_images = [\"0xzz\"]".to_owned()),
        ("short value", format!("os_images = [\"{}\"]", &OS[..64])),
        ("long value", format!("os_images = [\"{OS}00\"]")),
        (
            "20-byte value where 32 are needed",
            format!("kms_device_ids = [\"{APP}\"]"),
        ),
        ("unknown field", "os_image = []".to_owned()),
        ("unknown app field", app("compose = []")),
        ("missing app id", "[[apps]]\ncompose_hashes = []".to_owned()),
        ("duplicate app", format!("{}{}", app(""), app(""))),
        (
            "lists on an app without code",
            app(&format!(
                "code = \"absent\"\ncompose_hashes = [\"{COMPOSE}\"]"
            )),
        ),
        ("unknown code kind", app("code = \"maybe\"")),
        ("negative block", "block = -1".to_owned()),
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
    let missing = FileRegistry::open(dir.path().join("missing.toml"))
        .err()
        .unwrap();
    assert_eq!(missing.kind().as_str(), "io");
}

#[tokio::test]
async fn unknown_app_code_in_a_file_cannot_be_decided() {
    let text =
        format!("os_images = [\"{OS}\"]\n[[apps]]\napp_id = \"{APP}\"\ncode = \"unknown\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &text);
    let registry = FileRegistry::open(&path).unwrap();
    assert_eq!(
        registry
            .decide_app(&boot())
            .await
            .unwrap_err()
            .kind()
            .as_str(),
        "unavailable"
    );
    let query = Lookup::ComposeHash {
        app_id: boot().app_id,
        compose_hash: boot().compose_hash,
    };
    assert_eq!(
        registry.lookup(&query).unwrap_err().kind().as_str(),
        "unknown_app_code"
    );
}
