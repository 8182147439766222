//! The memory of an event listener whose consumer stalls, measured.
//!
//! Each test starts the emulator, then runs the listener in a child process
//! (this test binary again, running the `#[ignore]`d `child` test) whose
//! global allocator counts the bytes allocated, so the emulator's own
//! memory does not count. The emulator emits many large events while a
//! handler (or an event stream) of the listener does not take them; the
//! child reports the peak of allocated bytes above what it held once
//! connected, and what it was told about the events it lost.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use safeguard_sdk::auth::TokenAuth;
use safeguard_sdk::events::{Event, ListenerOptions, Missed};
use safeguard_sdk::{ExposeSecret, SafeguardClient};
use serde_json::{json, Value};

/// Counts the bytes currently allocated and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;
/// The listener's `queue_bytes` in the child.
const BUDGET: usize = 2 * MIB;
/// The text in each event's body.
const BLOB: usize = 64 * 1024;
/// Events emitted: about 40 MiB of event memory in all.
const EVENTS: u64 = 300;
/// What the child may hold besides its queues: the event being handled or
/// parsed (a few copies of one event), the websocket and TLS buffers.
const MARGIN: usize = 6 * MIB;

/// Runs the child in `mode` against a fresh emulator, emits the events and
/// returns the child's report.
fn run_child(mode: &str) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let emu = common::emulator().await;
        let client = common::admin(&emu).await;
        let token = client.user_token().await.expect("signed in");
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("EVENTS_MEMORY_MODE", mode)
            .env("EVENTS_MEMORY_HOST", emu.spp_host())
            .env("EVENTS_MEMORY_CA", emu.ca_pem())
            .env("EVENTS_MEMORY_TOKEN", token.expose_secret())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("child starts");
        let mut child = KillOnDrop(child);
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stdout = child.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut expect_line = async |prefix: &str| -> String {
            let wait = tokio::time::timeout(Duration::from_secs(120), async {
                while let Some(line) = lines.recv().await {
                    // libtest may print "test child ... " on the same line.
                    if let Some(at) = line.find(prefix) {
                        return line[at + prefix.len()..].to_owned();
                    }
                }
                panic!("the child ended before {prefix}");
            });
            wait.await
                .unwrap_or_else(|_| panic!("no {prefix} from the child"))
        };
        expect_line("EVENTS-MEMORY-READY").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while emu.control().websocket_count() == 0 {
            assert!(
                Instant::now() < deadline,
                "the child's websocket never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the hub subscribe the websocket to the events.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let blob = "x".repeat(BLOB);
        for seq in 0..EVENTS {
            emu.control()
                .emit_event("Big", json!({"Seq": seq, "Blob": blob}));
            if seq % 25 == 24 {
                // The emulator's event channel keeps 1,024; stay far below.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let report = expect_line("EVENTS-MEMORY-RESULT ").await;
        let status = child.0.wait().expect("child ends");
        assert!(status.success(), "the child failed: {status}");
        let report: Value = serde_json::from_str(&report).expect("a JSON report");
        eprintln!("{mode}: {report}");
        report
    })
}

/// Ends the child when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens the handler's gate when dropped (so a failing child can end).
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        let (closed, cv) = &*self.0;
        *closed.lock().unwrap_or_else(|p| p.into_inner()) = false;
        cv.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

fn number(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

#[test]
fn a_stalled_handler_holds_at_most_the_queue_budget_and_losses_are_counted() {
    let report = run_child("handler");
    let peak = number(&report, "peak_above_connected") as usize;
    let handled = number(&report, "handled");
    let dropped = number(&report, "dropped_events");
    // Unbounded, the handlers' queue would hold every event: 300 x 128 KiB.
    assert!(
        peak < BUDGET + MARGIN,
        "peak {peak} bytes above the connected state, budget {BUDGET} + margin {MARGIN}"
    );
    assert_eq!(handled + dropped, EVENTS, "every event handled or counted");
    // One event in the stalled handler, at most BUDGET / 128 KiB waiting.
    assert!(handled <= 1 + (BUDGET / (2 * BLOB)) as u64, "{report}");
    assert!(dropped >= EVENTS / 2, "{report}");
}

#[test]
fn a_stalled_stream_holds_at_most_the_queue_budget_and_reports_the_lag() {
    let report = run_child("stream");
    let peak = number(&report, "peak_above_connected") as usize;
    let taken = number(&report, "stream_events");
    let lagged = number(&report, "stream_lagged");
    assert!(
        peak < BUDGET + MARGIN,
        "peak {peak} bytes above the connected state, budget {BUDGET} + margin {MARGIN}"
    );
    // The handlers kept up; the stream lost what did not fit and said so.
    assert_eq!(number(&report, "handled"), EVENTS);
    assert_eq!(number(&report, "dropped_events"), 0);
    assert_eq!(taken + lagged, EVENTS, "every event taken or reported lost");
    assert_eq!(number(&report, "stream_dropped"), lagged);
    assert!(taken <= (BUDGET / (2 * BLOB)) as u64, "{report}");
    assert!(lagged >= EVENTS / 2, "{report}");
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The listener side, run by the tests above in a child process.
#[test]
#[ignore = "run by the other tests of this file in a child process"]
fn child() {
    let Ok(mode) = std::env::var("EVENTS_MEMORY_MODE") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = SafeguardClient::builder(env("EVENTS_MEMORY_HOST"))
            .ca_pem(env("EVENTS_MEMORY_CA"))
            .expect("CA parses")
            .auth(TokenAuth::new(env("EVENTS_MEMORY_TOKEN")))
            .build()
            .expect("client builds");
        let listener = client
            .event_listener()
            .with_options(ListenerOptions::default().queue_bytes(BUDGET));
        let handled = Arc::new(AtomicU64::new(0));
        let gate = Gate(Arc::new((Mutex::new(mode == "handler"), Condvar::new())));
        {
            let handled = handled.clone();
            let gate = gate.0.clone();
            listener.on_any(move |_: &Event| {
                let (closed, cv) = &*gate;
                let mut closed = closed.lock().unwrap();
                while *closed {
                    closed = cv.wait(closed).unwrap();
                }
                handled.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Never read until the end (the stream test).
        let mut stalled = listener.events();
        listener.start().await.expect("the listener connects");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let connected = CURRENT.load(Ordering::SeqCst);
        PEAK.store(connected, Ordering::SeqCst);
        println!("\nEVENTS-MEMORY-READY");

        let mut report = serde_json::Map::new();
        if mode == "handler" {
            // Wait until the drops stop growing: every event has arrived.
            let mut last = (0, Instant::now());
            let settled = eventually(Duration::from_secs(60), || {
                let d = listener.dropped_events();
                if d != last.0 {
                    last = (d, Instant::now());
                }
                d >= EVENTS / 2 && last.1.elapsed() > Duration::from_millis(500)
            })
            .await;
            assert!(settled, "drops: {}", listener.dropped_events());
            report.insert(
                "peak_above_connected".into(),
                (PEAK.load(Ordering::SeqCst) - connected).into(),
            );
            gate.open();
            let all = eventually(Duration::from_secs(30), || {
                handled.load(Ordering::SeqCst) + listener.dropped_events() >= EVENTS
            })
            .await;
            assert!(all, "events missing after the handler resumed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            let all = eventually(Duration::from_secs(60), || {
                handled.load(Ordering::SeqCst) >= EVENTS
            })
            .await;
            assert!(all, "handled {}", handled.load(Ordering::SeqCst));
            report.insert(
                "peak_above_connected".into(),
                (PEAK.load(Ordering::SeqCst) - connected).into(),
            );
            let (mut taken, mut lagged) = (0u64, 0u64);
            while taken + lagged < EVENTS {
                match tokio::time::timeout(Duration::from_secs(10), stalled.recv()).await {
                    Ok(Some(Ok(_))) => taken += 1,
                    Ok(Some(Err(Missed::Dropped(n)))) => lagged += n,
                    other => panic!("the stream ended early: {other:?}"),
                }
            }
            report.insert("stream_events".into(), taken.into());
            report.insert("stream_lagged".into(), lagged.into());
            report.insert("stream_dropped".into(), stalled.dropped().into());
        }
        report.insert("handled".into(), handled.load(Ordering::SeqCst).into());
        report.insert("dropped_events".into(), listener.dropped_events().into());
        report.insert("budget".into(), BUDGET.into());
        println!("\nEVENTS-MEMORY-RESULT {}", Value::Object(report));
        listener.stop().await;
    });
}
