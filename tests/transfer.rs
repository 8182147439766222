//! Downloads and uploads against a scripted server (`tests/hostile/`): a
//! download broken midway leaves no partial file behind, and upload
//! progress reports what the connection took, not what was read.

mod hostile;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hostile::{head, json, Hostile, Step};
use safeguard_sdk::auth::TokenAuth;
use safeguard_sdk::limits::Limits;
use safeguard_sdk::{Error, SafeguardClient, Service, UploadSource};

const MIB: usize = 1 << 20;

fn client(server: &Hostile, limits: Limits) -> SafeguardClient {
    SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(TokenAuth::new("user-token-0"))
        .limits(limits)
        .build()
        .unwrap()
}

/// Runs `call` with an outer bound: a call that hangs fails the test.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call ended by itself")
}

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_download_broken_midway_leaves_the_target_as_it_was() {
    let server = Hostile::https(|r| {
        if r.target().contains("Broken") {
            vec![
                head(200, Some(4096)),
                Step::Send(vec![b'x'; 1000]),
                Step::Reset,
            ]
        } else if r.target().contains("Stalled") {
            vec![
                head(200, Some(4096)),
                Step::Send(vec![b'x'; 1000]),
                Step::Pause(Duration::from_secs(3600)),
            ]
        } else {
            vec![head(200, Some(4096)), Step::Send(vec![b'y'; 4096])]
        }
    })
    .await;
    let client = client(&server, Limits::default());
    let dir = tempfile::tempdir().unwrap();

    // A file that was there before stays as it was.
    let kept = dir.path().join("backup.sgb");
    std::fs::write(&kept, b"the previous backup").unwrap();
    let err = bounded(client.download(Service::Appliance, "Broken", &kept, None))
        .await
        .expect_err("broken midway");
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(std::fs::read(&kept).unwrap(), b"the previous backup");
    assert_eq!(names(dir.path()), ["backup.sgb"], "no partial file is left");

    // A new target is not created at all.
    let fresh = dir.path().join("fresh.sgb");
    bounded(client.download(Service::Appliance, "Broken", &fresh, None))
        .await
        .expect_err("broken midway");
    assert!(!fresh.exists());
    assert_eq!(names(dir.path()), ["backup.sgb"]);

    // A download dropped midway (its caller gave up) leaves nothing either.
    let dropped = tokio::time::timeout(
        Duration::from_millis(500),
        client.download(Service::Appliance, "Stalled", &fresh, None),
    )
    .await;
    assert!(dropped.is_err(), "still waiting when dropped");
    assert_eq!(names(dir.path()), ["backup.sgb"]);

    // A whole download replaces the target, and nothing else is left.
    let written = bounded(client.download(Service::Appliance, "Whole", &kept, None))
        .await
        .unwrap();
    assert_eq!(written, 4096);
    assert_eq!(std::fs::read(&kept).unwrap(), vec![b'y'; 4096]);
    assert_eq!(names(dir.path()), ["backup.sgb"]);
}

/// What is not a plain file is written through, never replaced: a named
/// pipe stays a pipe and its reader gets the body (a download once renamed
/// a file over `/dev/null` and broke every program on the host), a link
/// stays a link and its file gets the body, and a file keeps its
/// permissions.
#[cfg(unix)]
#[tokio::test]
async fn a_download_writes_through_pipes_and_links_and_keeps_permissions() {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let server =
        Hostile::https(|_| vec![head(200, Some(4096)), Step::Send(vec![b'z'; 4096])]).await;
    let client = client(&server, Limits::default());
    let dir = tempfile::tempdir().unwrap();

    // A named pipe, read by another thread.
    let pipe = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = pipe.clone();
    std::thread::spawn(move || {
        let mut read = Vec::new();
        let _ = std::fs::File::open(&reader_path).and_then(|mut f| f.read_to_end(&mut read));
        let _ = tx.send(read);
    });
    let written = bounded(client.download(Service::Appliance, "Whole", &pipe, None))
        .await
        .unwrap();
    assert_eq!(written, 4096);
    let kind = std::fs::symlink_metadata(&pipe).unwrap().file_type();
    assert!(kind.is_fifo(), "the pipe was replaced by {kind:?}");
    let read = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the pipe's reader got the body");
    assert_eq!(read, vec![b'z'; 4096]);

    // A symbolic link to a file in another directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("backup.sgb");
    std::fs::write(&file, b"old").unwrap();
    let link = dir.path().join("latest.sgb");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    bounded(client.download(Service::Appliance, "Whole", &link, None))
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&file).unwrap(), vec![b'z'; 4096]);
    assert_eq!(
        names(elsewhere.path()),
        ["backup.sgb"],
        "no partial file is left"
    );

    // A file only its owner may read stays so.
    let private = dir.path().join("private.sgb");
    std::fs::write(&private, b"old").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    bounded(client.download(Service::Appliance, "Whole", &private, None))
        .await
        .unwrap();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&private).unwrap(), vec![b'z'; 4096]);

    // A directory is refused, untouched.
    let err = bounded(client.download(Service::Appliance, "Whole", elsewhere.path(), None))
        .await
        .expect_err("a directory");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(names(elsewhere.path()), ["backup.sgb"]);
}

/// An upload source of `chunks` chunks of `size` bytes, and its length.
fn source(chunks: usize, size: usize) -> UploadSource {
    let chunk = Bytes::from(vec![7u8; size]);
    let stream = futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone())));
    UploadSource::Stream(Box::pin(stream), Some((chunks * size) as u64))
}

/// A progress callback that keeps the highest count reported.
fn highest() -> (Arc<AtomicU64>, safeguard_sdk::UploadProgress) {
    let seen = Arc::new(AtomicU64::new(0));
    let progress: safeguard_sdk::UploadProgress = {
        let seen = seen.clone();
        Box::new(move |sent: u64, _total: Option<u64>| {
            seen.fetch_max(sent, Ordering::SeqCst);
        })
    };
    (seen, progress)
}

#[tokio::test]
async fn upload_progress_does_not_count_what_a_stalled_server_never_took() {
    // The server reads the request's head and then nothing: the body goes
    // no further than the connection's buffers.
    let server = Hostile::https_unread_body(|_| vec![Step::Pause(Duration::from_secs(3600))]).await;
    let client = client(
        &server,
        Limits::default().answer_timeout(Some(Duration::from_secs(2))),
    );
    let total = (32 * MIB) as u64;
    let (seen, progress) = highest();
    let err = bounded(client.upload(
        reqwest::Method::POST,
        Service::Appliance,
        "Backups/Upload",
        source(1, 32 * MIB),
        "application/octet-stream",
        Some(progress),
    ))
    .await
    .expect_err("the server never answers");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let reported = seen.load(Ordering::SeqCst);
    assert!(
        reported < total,
        "progress reported {reported} of {total} bytes, but the server read none"
    );
}

#[tokio::test]
async fn upload_progress_reaches_the_total_when_the_server_took_it_all() {
    let server = Hostile::https(|_| vec![json(200, "{}")]).await;
    let client = client(&server, Limits::default());
    let (seen, progress) = highest();
    let response = bounded(client.upload(
        reqwest::Method::POST,
        Service::Appliance,
        "Backups/Upload",
        source(4, MIB),
        "application/octet-stream",
        Some(progress),
    ))
    .await
    .unwrap();
    assert!(response.status().is_success());
    assert_eq!(seen.load(Ordering::SeqCst), (4 * MIB) as u64);
    assert_eq!(server.received()[0].body.len(), 4 * MIB);
}
