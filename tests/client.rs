//! Generic verbs, typed access, paging and every error variant against the
//! emulator over real HTTPS.

mod common;

use std::time::Duration;

use futures::TryStreamExt;
use safeguard_emulator as emu_consts;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::{Error, SafeguardClient, Service};
use serde_json::json;

#[tokio::test]
async fn generic_verbs_create_read_update_delete_a_user() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let created: serde_json::Value = client
        .post(Service::Core, "Users")
        .json(&json!({ "PrimaryAuthenticationProvider": { "Id": -1 }, "Name": "MyNewUser" }))
        .send_json()
        .await
        .unwrap();
    let id = created["Id"].as_i64().expect("an id");
    client
        .put(Service::Core, &format!("Users/{id}/Password"))
        .json("MyNewUser123!")
        .send()
        .await
        .unwrap();
    let found: Vec<serde_json::Value> = client
        .get(Service::Core, "Users")
        .query(&[("filter", "Name eq 'MyNewUser'"), ("fields", "Id,Name")])
        .unwrap()
        .header_str("X-Custom", "val")
        .send_json()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["Id"].as_i64(), Some(id));
    let mut user: serde_json::Value = client
        .get(Service::Core, &format!("Users/{id}"))
        .send_json()
        .await
        .unwrap();
    user["Description"] = json!("changed");
    let updated: serde_json::Value = client
        .put(Service::Core, &format!("Users/{id}"))
        .json(&user)
        .send_json()
        .await
        .unwrap();
    assert_eq!(updated["Description"], "changed");
    let deleted = client
        .delete(Service::Core, &format!("Users/{id}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let gone = client
        .get(Service::Core, &format!("Users/{id}"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(gone, Error::NotFound(_)), "{gone}");
}

#[cfg(feature = "core")]
#[tokio::test]
async fn typed_client_shares_the_session_and_its_errors_carry_the_status() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let users = client
        .core()
        .users_get_users()
        .filter("Name eq 'Admin'")
        .send()
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name.as_deref(), Some(emu_consts::ADMIN_USER));
    let me = client.core().me_get_me().send().await.unwrap();
    assert_eq!(me.name.as_deref(), Some(emu_consts::ADMIN_USER));
    // A bodiless or JSON 404 surfaces as NotFound with its status.
    let err: Error = client
        .core()
        .users_get_user_by_id()
        .id(987654)
        .send()
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    // Only one sign-in for both the typed and generic paths.
    assert_eq!(emu.control().login_response_calls(), 1);
}

#[cfg(feature = "notification")]
#[tokio::test]
async fn typed_anonymous_notification_status() {
    let emu = common::emulator().await;
    let client = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .build()
        .unwrap();
    let status = client.notification().status_get().send().await.unwrap();
    assert!(status.appliance_current_state.is_some(), "{:?}", *status);
}

#[tokio::test]
async fn paging_walks_2500_users_in_pages() {
    let emu = common::emulator().await;
    emu.control().seed_users(2500);
    let client = common::admin(&emu).await;
    let total = emu.control().user_count();
    let users: Vec<serde_json::Value> = client
        .paginate(
            Service::Core,
            "Users",
            200,
            vec![("orderby".into(), "Id".into())],
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(users.len(), total);
    assert!(total >= 2500);
    let mut ids: Vec<i64> = users.iter().map(|u| u["Id"].as_i64().unwrap()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no user twice");
}

#[cfg(feature = "core")]
#[tokio::test]
async fn paging_works_over_typed_calls() {
    let emu = common::emulator().await;
    emu.control().seed_users(250);
    let client = common::admin(&emu).await;
    let shared = client.clone();
    let users: Vec<_> = safeguard_sdk::paging::pages(100, move |page, limit| {
        let client = shared.clone();
        async move {
            Ok(client
                .core()
                .users_get_users()
                .page(page as i32)
                .limit(limit as i32)
                .send()
                .await?
                .into_inner())
        }
    })
    .try_collect()
    .await
    .unwrap();
    assert_eq!(users.len(), emu.control().user_count());
}

#[tokio::test]
async fn error_variants() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;

    // 403: a user without admin roles creating a user.
    let auditor = common::client(
        &emu,
        PkceAuth::new("local", emu_consts::PLAIN_USER, emu_consts::PLAIN_PASSWORD),
    );
    let err = auditor
        .post(Service::Core, "Users")
        .json(&json!({ "Name": "x", "PrimaryAuthenticationProvider": { "Id": -1 } }))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authorization(_)), "{err}");

    // Another API error: 400 with the appliance's Code and Message.
    let err = admin
        .post(Service::Core, "Users")
        .json(&json!({}))
        .send()
        .await
        .unwrap_err();
    match &err {
        Error::Api(e) => {
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.code.is_some() && e.message.is_some(), "{e:?}");
            assert!(!e.body.is_empty());
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert!(err.to_string().starts_with("HTTP 400"), "{err}");

    // Decode: the answer is not what the caller expects.
    let err = admin
        .get(Service::Core, "Me")
        .send_json::<Vec<u32>>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");

    // 5xx injected by the emulator.
    emu.control().fail_next(1, 503);
    let err = admin.get(Service::Core, "Me").send().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err}");

    // Timeout.
    let slow = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    emu.control().set_latency(Duration::from_secs(2));
    let err = slow
        .get(Service::Notification, "Status")
        .send()
        .await
        .unwrap_err();
    emu.control().set_latency(Duration::ZERO);
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // TLS: a client that does not trust the emulator's CA.
    let untrusting = SafeguardClient::builder(emu.spp_host())
        .ca_pem(unrelated_ca())
        .unwrap()
        .build()
        .unwrap();
    let err = untrusting
        .get(Service::Notification, "Status")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");

    // Transport: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nowhere = SafeguardClient::builder(format!("127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = nowhere
        .get(Service::Notification, "Status")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.is_connect()),
        "{err:?}"
    );

    // Configuration.
    assert!(matches!(
        SafeguardClient::builder("https://host/with/path").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        SafeguardClient::builder("h").ca_pem("not a certificate"),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn danger_accept_invalid_certs_is_an_explicit_opt_in() {
    let emu = common::emulator().await;
    let client = SafeguardClient::builder(emu.spp_host())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let status = client
        .get(Service::Notification, "Status")
        .send()
        .await
        .unwrap();
    assert!(status.status().is_success());
}

/// A freshly made self-signed CA that did not sign the emulator's certificate.
fn unrelated_ca() -> Vec<u8> {
    common::self_signed("Unrelated CA").0.to_pem().unwrap()
}
