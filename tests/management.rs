//! `Service::Management` through the generic verbs: it answers while the
//! appliance is in maintenance (when core answers 503), it is anonymous (no
//! sign-in, no token), and core works again once maintenance ends.

mod common;

use common::*;
use reqwest::StatusCode;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::{Error, Service};
use serde_json::Value;

#[test]
fn the_service_is_named_management() {
    assert_eq!(Service::Management.as_str(), "management");
    assert_eq!(Service::Management.to_string(), "management");
}

#[tokio::test]
async fn management_answers_through_maintenance_and_core_comes_back() {
    let emu = emulator().await;
    let client = admin(&emu).await;
    let me: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
    assert!(me["Id"].is_number());
    assert!(client
        .url(Service::Management, "ApplianceStatus")
        .ends_with("/service/management/v4/ApplianceStatus"));

    emu.control().set_maintenance(true);
    let status: Value = client
        .get(Service::Management, "ApplianceStatus")
        .send_json()
        .await
        .unwrap();
    assert_eq!(status["ApplianceCurrentState"], "Maintenance");
    assert_eq!(status["IsMaintenance"], true);
    match client.get(Service::Core, "Me").send_json::<Value>().await {
        Err(Error::Api(e)) => {
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.code, Some(50000));
            assert!(e.message.as_deref().unwrap().contains("maintenance"));
        }
        other => panic!("core in maintenance answered {other:?}"),
    }
    let err = client
        .get(Service::Core, "Me")
        .send()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // The notification service reports the state too.
    let state: Value = client
        .get(Service::Notification, "Status/State")
        .send_json()
        .await
        .unwrap();
    assert_eq!(state, "Maintenance");

    emu.control().set_maintenance(false);
    let again: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
    assert_eq!(again["Id"], me["Id"]);
    let status: Value = client
        .get(Service::Management, "ApplianceStatus")
        .send_json()
        .await
        .unwrap();
    assert_eq!(status["ApplianceCurrentState"], "Online");
}

#[tokio::test]
async fn management_never_signs_in() {
    let emu = emulator().await;
    let c = &emu.connection().spp.admin;
    // A client that could sign in but has not: a management call does not
    // make it sign in, in or out of maintenance.
    let client = client(
        &emu,
        PkceAuth::new("local", c.user.clone(), c.password.clone()),
    );
    let before = emu.control().total_signins();
    emu.control().set_maintenance(true);
    let status: Value = client
        .get(Service::Management, "ApplianceStatus")
        .send_json()
        .await
        .unwrap();
    assert_eq!(status["ApplianceCurrentState"], "Maintenance");
    emu.control().set_maintenance(false);
    let response = client
        .get(Service::Management, "ApplianceStatus")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(emu.control().total_signins(), before);
    // An unknown management path is the typed 404.
    let err = client
        .get(Service::Management, "NoSuchThing")
        .send()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn the_management_service_can_have_an_address_of_its_own() {
    let emu = emulator().await;
    // The appliance's address answers nothing here; the management host
    // (the MGMT interface, or port 9337 of a cloud appliance) does.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = unused.local_addr().unwrap().to_string();
    drop(unused);
    let client = safeguard_sdk::SafeguardClient::builder(dead)
        .management_host(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .build()
        .unwrap();
    emu.control().set_maintenance(true);
    let status: Value = client
        .get(Service::Management, "ApplianceStatus")
        .send_json()
        .await
        .unwrap();
    assert_eq!(status["ApplianceCurrentState"], "Maintenance");
    let err = client
        .get(Service::Notification, "Status")
        .send()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.is_connect()),
        "{err:?}"
    );
}
