//! The blocking facades (`blocking::SafeguardClient`, `a2a::blocking`,
//! `events::blocking`, `sps::blocking`): typed calls without hand-written
//! `block_on`, and one behaviour inside an async runtime, of either flavour:
//! a typed error, never a panic (also when the last handle is dropped there).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use safeguard_emulator::Emulator;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::blocking::SafeguardClient;
use safeguard_sdk::events::ListenerState;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{Error, Service};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const WAIT: Duration = Duration::from_secs(10);

/// The emulator, on a runtime of its own that the test thread is not inside.
fn emulator() -> (Runtime, Emulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt.block_on(common::emulator());
    (rt, emu)
}

/// A current-thread and a multi-thread runtime: the blocking facades are
/// called inside each.
fn async_runtimes() -> [Runtime; 2] {
    [
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    ]
}

fn blocking_admin(emu: &Emulator) -> SafeguardClient {
    let admin = &emu.connection().spp.admin;
    let client = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()
        .unwrap();
    client.login().expect("signs in");
    client
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: safeguard_sdk::Result<T>, async_client: &str) {
    match result {
        Err(Error::BlockingInsideRuntime {
            async_client: named,
        }) => {
            assert_eq!(named, async_client);
        }
        other => panic!("expected Error::BlockingInsideRuntime, got {other:?}"),
    }
}

#[cfg(feature = "core")]
#[test]
fn typed_calls_run_through_the_blocking_client() {
    let (_rt, emu) = emulator();
    let client = blocking_admin(&emu);
    let me = client
        .call(|c| c.core().me_get_me().send())
        .expect("a typed call");
    assert_eq!(me.name.as_deref(), Some(safeguard_emulator::ADMIN_USER));
    let admins = client
        .call(|c| c.core().users_get_users().filter("Name eq 'Admin'").send())
        .expect("a typed call with parameters");
    assert_eq!(admins.len(), 1);
    // The generated client's error becomes the SDK's, with its status.
    let err = client
        .call(|c| c.core().users_get_user_by_id().id(987654).send())
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    // Any future ending in a Result, the same way.
    let again = client
        .block_on(client.inner().core().me_get_me().send())
        .unwrap();
    assert_eq!(again.name, me.name);
    // One sign-in for all of them.
    assert_eq!(emu.control().login_response_calls(), 1);
}

/// A `spawn_blocking` thread has a current runtime but may block: the
/// facades work there, as tokio's own `block_on` does.
#[test]
fn the_blocking_client_works_in_spawn_blocking() {
    let (_rt, emu) = emulator();
    let client = blocking_admin(&emu);
    for outer in async_runtimes() {
        let c = client.clone();
        let status = outer
            .block_on(outer.spawn_blocking(move || {
                c.get(Service::Notification, "Status")
                    .send()
                    .map(|a| a.status().as_u16())
            }))
            .unwrap();
        assert_eq!(status.unwrap(), 200);
    }
}

#[test]
fn the_blocking_client_refuses_inside_a_runtime_and_drops_there() {
    let (_rt, emu) = emulator();
    const ASYNC: &str = "safeguard_sdk::SafeguardClient";
    for outer in async_runtimes() {
        let client = blocking_admin(&emu);
        outer.block_on(async {
            assert_refused(client.login(), ASYNC);
            assert_refused(client.get(Service::Core, "Me").send(), ASYNC);
            assert_refused(client.block_on(async { Ok::<_, Error>(()) }), ASYNC);
            #[cfg(feature = "core")]
            assert_refused(client.call(|c| c.core().me_get_me().send()), ASYNC);
            let mut pages = client.paginate::<Value>(Service::Core, "Users", 10, Vec::new());
            assert_refused(pages.next().expect("the refusal"), ASYNC);
            assert!(pages.next().is_none());
        });
        // An answer read inside a runtime is refused too.
        let response = client.get(Service::Core, "Me").send().unwrap();
        outer.block_on(async { assert_refused(response.json::<Value>(), ASYNC) });
        // Still usable outside.
        let me: Value = client.get(Service::Core, "Me").send_json().unwrap();
        assert!(me["Id"].is_number(), "{me}");
        // The last handle dropped inside a runtime: no panic.
        outer.block_on(async move { drop(client) });
    }
}

#[cfg(feature = "a2a")]
#[test]
fn the_blocking_a2a_context_refuses_inside_a_runtime_and_drops_there() {
    use safeguard_sdk::a2a::blocking::A2aContext;
    let (_rt, emu) = emulator();
    let cert = &emu.connection().spp.client_cert;
    let key = emu.connection().spp.a2a.password_api_key.clone();
    for outer in async_runtimes() {
        let a2a = A2aContext::builder(emu.spp_host())
            .pem_files(&cert.cert, &cert.key)
            .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap())
            .build()
            .unwrap();
        outer.block_on(async {
            assert_refused(
                a2a.retrieve_password(key.as_str()),
                "safeguard_sdk::a2a::A2aContext",
            );
            assert_refused(a2a.retrievable_accounts(), "safeguard_sdk::a2a::A2aContext");
        });
        outer.block_on(async move { drop(a2a) });
    }
}

#[test]
fn the_blocking_listener_refuses_to_start_inside_a_runtime() {
    let (_rt, emu) = emulator();
    let client = blocking_admin(&emu);
    for outer in async_runtimes() {
        let mut listener = client.event_listener();
        outer.block_on(async {
            assert_refused(
                listener.start(),
                "safeguard_sdk::events::PersistentEventListener",
            );
        });
        assert_eq!(listener.state(), ListenerState::Idle);
        // Started outside, stopped (by drop) inside: no panic.
        listener.start().expect("starts");
        assert!(listener.wait_connected(WAIT));
        outer.block_on(async move { drop(listener) });
    }
}

#[test]
fn an_event_handler_may_call_the_blocking_client() {
    let (_rt, emu) = emulator();
    let client = blocking_admin(&emu);
    let mut listener = client.event_listener();
    let (tx, rx) = std::sync::mpsc::channel::<safeguard_sdk::Result<Value>>();
    let tx = Mutex::new(tx);
    let in_handler = client.clone();
    listener.on("UserCreated", move |_| {
        let me = in_handler.get(Service::Core, "Me").send_json::<Value>();
        let _ = tx.lock().unwrap().send(me);
    });
    listener.start().expect("starts");
    assert!(listener.wait_connected(WAIT));
    let deadline = Instant::now() + WAIT;
    let me = loop {
        emu.control()
            .emit_event("UserCreated", json!({"UserId": 1}));
        if let Ok(me) = rx.recv_timeout(Duration::from_millis(50)) {
            break me;
        }
        assert!(Instant::now() < deadline, "no event");
    };
    assert!(me.expect("the handler's call")["Id"].is_number());
    listener.stop();
    assert_eq!(listener.state(), ListenerState::Stopped);
}

#[test]
fn the_blocking_sps_client_refuses_inside_a_runtime_and_drops_there() {
    use safeguard_sdk::sps::blocking::SpsClient;
    use safeguard_sdk::sps::TransactionState;
    const ASYNC: &str = "safeguard_sdk::sps::SpsClient";
    let (_rt, emu) = emulator();
    let conn = emu.connection().sps.clone();
    for outer in async_runtimes() {
        let c = SpsClient::builder(emu.sps_host())
            .credentials(conn.user.clone(), conn.password.clone())
            .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap())
            .build()
            .unwrap();
        outer.block_on(async {
            assert_refused(c.sign_in(), ASYNC);
            assert_refused(c.get_json("configuration"), ASYNC);
            let r: safeguard_sdk::Result<()> = c.transaction(|_| Ok(()));
            assert_refused(r, ASYNC);
        });
        // A transaction opened outside and dropped open inside a runtime is
        // rolled back without blocking (nor panicking).
        let tx = c.open().expect("opens");
        outer.block_on(async {
            assert_refused(tx.get_json("configuration"), ASYNC);
            drop(tx);
        });
        let deadline = Instant::now() + WAIT;
        while c.transaction_status().unwrap().state != TransactionState::Closed {
            assert!(Instant::now() < deadline, "not rolled back");
            std::thread::sleep(Duration::from_millis(20));
        }
        let shared = Arc::new(c);
        outer.block_on(async move { drop(shared) });
    }
}
