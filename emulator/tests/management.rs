//! The management service and maintenance: the management service answers
//! anonymously whether or not the appliance is in maintenance; core,
//! appliance and a2a answer 503 in maintenance; the notification service
//! reports the state.

mod common;

use common::*;
use serde_json::{json, Value};

fn management(emu: &safeguard_emulator::Emulator, path: &str) -> String {
    format!("{}/service/management/v4/{path}", base(emu))
}

async fn state(c: &reqwest::Client, emu: &safeguard_emulator::Emulator) -> Value {
    c.get(format!(
        "{}/service/notification/v4/Status/State",
        base(emu)
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test]
async fn management_answers_anonymously_and_knows_only_its_paths() {
    let emu = start().await;
    let c = client(&emu);
    let r = c
        .get(management(&emu, "ApplianceStatus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ApplianceCurrentState"], "Online");
    assert_eq!(v["IsMaintenance"], false);
    // Case-insensitive like the appliance; v3 answers as v4.
    let r = c
        .get(format!(
            "{}/service/MANAGEMENT/v3/appliancestatus",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(management(&emu, "ApplianceStatus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c.get(management(&emu, "Nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn maintenance_stops_core_appliance_a2a_but_not_management() {
    let emu = start().await;
    let c = client(&emu);
    let token = admin_token(&c, &emu).await;
    assert_eq!(state(&c, &emu).await, "Online");

    emu.control().set_maintenance(true);
    assert!(emu.control().maintenance());
    for url in [
        core(&emu, "Me"),
        format!("{}/service/appliance/v4/SystemTime", base(&emu)),
        format!("{}/service/a2a/v4/Credentials?type=Password", base(&emu)),
    ] {
        let r = c.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 503, "{url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Code"], 50000, "{url}");
        assert!(body["Message"].as_str().unwrap().contains("maintenance"));
    }
    assert_eq!(state(&c, &emu).await, "Maintenance");
    let status: Value = c
        .get(format!("{}/service/notification/v4/Status", base(&emu)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["ApplianceCurrentState"], "Maintenance");
    assert_eq!(status["IsMaintenance"], true);
    let v: Value = c
        .get(management(&emu, "ApplianceStatus"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ApplianceCurrentState"], "Maintenance");

    emu.control().set_maintenance(false);
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(state(&c, &emu).await, "Online");
}

#[tokio::test]
async fn maintenance_over_http_control() {
    let emu = start().await;
    let c = client(&emu);
    let url = format!("{}/emulator/maintenance", base(&emu));
    let v: Value = c
        .post(&url)
        .json(&json!({"on": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["maintenance"], true);
    let r = c.get(core(&emu, "Me")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = c
        .post(&url)
        .json(&json!({"on": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(emu.control().maintenance());
    let v: Value = c
        .post(&url)
        .json(&json!({"on": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["maintenance"], false);
    let r = c.get(core(&emu, "Me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
