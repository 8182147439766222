//! The generic layer: every documented operation answers; authentication
//! before routing; stateful collections, nested paths and lists derived from
//! the documents' paths; schema-conforming synthesized answers; coverage.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn authentication_comes_before_routing() {
    let emu = start().await;
    let c = client(&emu);
    for path in ["NoSuchThing", "ArchiveServers", "Users/1/Nowhere/Deep"] {
        let r = c.get(core(&emu, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Code"], 60108, "{path}: {body}");
    }
    let t = admin_token(&c, &emu).await;
    let r = c
        .get(core(&emu, "NoSuchThing"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .patch(core(&emu, "ArchiveServers"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The notification service stays anonymous, on every documented path.
    let r = c
        .get(format!(
            "{}/service/notification/v4/Status/Availability",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_collection_derived_from_the_paths_keeps_state() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let server = json!({"Name": "archive-1", "NetworkAddress": "archive.example.com",
                        "ConnectionProperties": {"TransferProtocolType": "Sftp", "Port": 22}});
    let r = c
        .post(core(&emu, "archiveservers"))
        .bearer_auth(&t)
        .json(&server)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["Id"].as_i64().expect("an id is assigned");
    assert_eq!(created["Name"], "archive-1");
    assert_eq!(created["NetworkAddress"], "archive.example.com");
    // Members the request left out are there with schema-conforming values.
    assert!(created.get("StoragePath").is_some(), "{created}");

    c.post(core(&emu, "ArchiveServers"))
        .bearer_auth(&t)
        .json(
            &json!({"Name": "archive-2", "NetworkAddress": "b.example.com",
                      "ConnectionProperties": {"TransferProtocolType": "Sftp", "Port": 22}}),
        )
        .send()
        .await
        .unwrap();
    let list: Value = c
        .get(core(&emu, "ArchiveServers?filter=Name eq 'archive-1'"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let count: Value = c
        .get(core(&emu, "ArchiveServers?count=true"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!(2));

    let one = |id: i64| {
        c.get(core(&emu, &format!("ArchiveServers/{id}")))
            .bearer_auth(&t)
            .send()
    };
    let got: Value = one(id).await.unwrap().json().await.unwrap();
    assert_eq!(got, created);
    let mut changed = created.clone();
    changed["Description"] = json!("moved");
    let r = c
        .put(core(&emu, &format!("ArchiveServers/{id}")))
        .bearer_auth(&t)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = one(id).await.unwrap().json().await.unwrap();
    assert_eq!(got["Description"], "moved");
    let r = c
        .delete(core(&emu, &format!("ArchiveServers/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(one(id).await.unwrap().status(), StatusCode::NOT_FOUND);
    // Below an entity that does not exist: 404 too.
    let r = c
        .post(core(&emu, &format!("ArchiveServers/{id}/TestConnection")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lists_add_remove_and_set() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let group: Value = c
        .post(core(&emu, "UserGroups"))
        .bearer_auth(&t)
        .json(&json!({"Name": "operators"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = group["Id"].as_i64().unwrap();
    let members = format!("UserGroups/{id}/Members");
    let post = |op: &str, body: Value| {
        c.post(core(&emu, &format!("{members}/{op}")))
            .bearer_auth(&t)
            .json(&body)
            .send()
    };
    let user = |id: i64| {
        let c = &c;
        let t = &t;
        let url = core(&emu, &format!("Users/{id}"));
        async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let (one, four, two) = (user(1).await, user(4).await, user(2).await);
    let r = post("Add", json!([one, four])).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    post("add", json!([four])).await.unwrap();
    post("Remove", json!([one])).await.unwrap();
    // An element that is not a user: the appliance's 400 naming it.
    let r = post("Add", json!([{"Id": "x"}])).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["ModelState"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("[0]")),
        "{v}"
    );
    let got: Value = c
        .get(core(&emu, &members))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!([four]));
    c.put(core(&emu, &members))
        .bearer_auth(&t)
        .json(&json!([two]))
        .send()
        .await
        .unwrap();
    let got: Value = c
        .get(core(&emu, &members))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!([two]));
}

#[tokio::test]
async fn synthesized_answers_conform_and_roles_are_enforced() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let r = c
        .get(format!("{}/service/appliance/v4/Version", base(&emu)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v.is_object() && !v.as_object().unwrap().is_empty(), "{v}");

    // ArchiveServers: "Must have ApplianceAdmin or OperationsAdmin
    // permission." The plain user is an Auditor.
    let sts = pkce_access_token(
        &c,
        &emu,
        "local",
        safeguard_emulator::PLAIN_USER,
        safeguard_emulator::PLAIN_PASSWORD,
        None,
    )
    .await;
    let auditor = user_token(&c, &emu, &sts).await;
    let r = c
        .post(core(&emu, "ArchiveServers"))
        .bearer_auth(&auditor)
        .json(&json!({"Name": "a", "NetworkAddress": "b", "ConnectionProperties": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .get(core(&emu, "ArchiveServers"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn coverage_names_a_server_for_every_operation() {
    let emu = start().await;
    let rows = emu.coverage().await;
    assert!(rows.len() >= 1000, "{}", rows.len());
    let unserved: Vec<_> = rows
        .iter()
        .filter(|r| {
            !["handwritten", "generic stateful", "synthesized"].contains(&r.served_by.as_str())
        })
        .collect();
    assert!(unserved.is_empty(), "{unserved:#?}");
    assert!(rows
        .iter()
        .any(|r| r.served_by == "handwritten" && r.path == "Me"));
    assert!(rows
        .iter()
        .any(|r| r.served_by == "generic stateful" && r.path == "ArchiveServers"));
}
