//! Config change detection: every way an editor saves a file is seen within the poll interval.

use std::path::Path;
use std::time::Duration;
use talon::watch::{ConfigChange, spawn};
use tokio::sync::mpsc;

async fn next(rx: &mut mpsc::Receiver<ConfigChange>) -> ConfigChange {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no change seen within 5 s")
        .expect("watcher ended")
}

async fn quiet(rx: &mut mpsc::Receiver<ConfigChange>) {
    // Three poll intervals without an event.
    if let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected change {c:?}");
    }
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[tokio::test]
async fn in_place_rename_over_delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    let services = dir.path().join("services.toml");
    write(&main, "check_interval_secs = 30\n");
    // The probes file does not exist yet.
    let (tx, mut rx) = mpsc::channel(16);
    let handle = spawn(
        vec![main.clone(), services.clone()],
        Duration::from_millis(100),
        tx,
    );
    quiet(&mut rx).await;

    // Write in place (same inode).
    write(&main, "check_interval_secs = 31\n");
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: main.clone(),
            exists: true
        }
    );

    // Editor-style save: write a temp file, rename it over (new inode, maybe same size+mtime).
    let tmp = dir.path().join(".config.toml.swp");
    write(&tmp, "check_interval_secs = 32\n");
    std::fs::rename(&tmp, &main).unwrap();
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: main.clone(),
            exists: true
        }
    );

    // A file that appears.
    write(&services, "[http.api]\nurl = \"http://127.0.0.1:1/\"\n");
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: services.clone(),
            exists: true
        }
    );

    // Delete, then recreate.
    std::fs::remove_file(&services).unwrap();
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: services.clone(),
            exists: false
        }
    );
    write(&services, "[http.api]\nurl = \"http://127.0.0.1:2/\"\n");
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: services.clone(),
            exists: true
        }
    );
    quiet(&mut rx).await;

    // A reload moved the probes file: the old one is no longer watched, the new one is.
    let moved = dir.path().join("probes.toml");
    write(&moved, "");
    handle.set_paths(vec![main.clone(), moved.clone()]);
    quiet(&mut rx).await;
    write(&services, "# no longer watched\n");
    write(&moved, "# edited\n");
    assert_eq!(
        next(&mut rx).await,
        ConfigChange {
            path: moved.clone(),
            exists: true
        }
    );
    quiet(&mut rx).await;

    // Dropping the handle stops the watcher.
    drop(handle);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .is_none()
    );
}
