//! Core service: entities, query parameters, error shapes.

mod common;

use base64::Engine as _;
use common::*;
use reqwest::StatusCode;
use safeguard_emulator::*;
use serde_json::{json, Value};

#[tokio::test]
async fn users_crud_and_password() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&t)
        .json(&json!({"Name": "alice", "EmailAddress": "alice@example.com", "PrimaryAuthenticationProvider": {"Id": -1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: Value = r.json().await.unwrap();
    for k in [
        "Id",
        "Name",
        "PrimaryAuthenticationProvider",
        "AdminRoles",
        "Disabled",
        "DisplayName",
        "IdentityProvider",
        "CreatedDate",
    ] {
        assert!(u.get(k).is_some(), "{k}");
    }
    assert_eq!(u["PrimaryAuthenticationProvider"]["Name"], "Local");
    assert_eq!(u["EmailAddress"], "alice@example.com");
    let id = u["Id"].as_i64().unwrap();
    // Duplicate name: 400 with a Code.
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&t)
        .json(&json!({"Name": "ALICE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["Code"].is_number());
    // Missing name: ModelState.
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&t)
        .json(&json!({"Description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["ModelState"]["Name"].is_array());
    // Malformed JSON: 400, never a panic.
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&t)
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Update: PUT takes the whole entity (its required members too); a
    // different Id in the body does not move it.
    let mut whole: Value = c
        .get(core(&emu, &format!("Users/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    whole["Description"] = json!("updated");
    whole["Id"] = json!(999);
    let r = c
        .put(core(&emu, &format!("Users/{id}")))
        .bearer_auth(&t)
        .json(&json!({"Description": "updated", "Id": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "Name is required");
    let r = c
        .put(core(&emu, &format!("Users/{id}")))
        .bearer_auth(&t)
        .json(&whole)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["Description"].as_str(), v["Id"].as_i64()),
        (Some("updated"), Some(id))
    );
    // Password: JSON string; raw text is 415; then the user signs in.
    let r = c
        .put(core(&emu, &format!("Users/{id}/Password")))
        .bearer_auth(&t)
        .json(&"Alice-Pw1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .put(core(&emu, &format!("Users/{id}/Password")))
        .bearer_auth(&t)
        .header("Content-Type", "text/plain")
        .body("Alice-Pw1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let sts = pkce_access_token(&c, &emu, "local", "alice", "Alice-Pw1", None).await;
    let alice = user_token(&c, &emu, &sts).await;
    // A non-admin cannot create users.
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&alice)
        .json(&json!({"Name": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Delete; then 404 with the appliance body.
    let r = c
        .delete(core(&emu, &format!("Users/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(core(&emu, &format!("Users/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert!(e["Code"].is_number() && e["Message"].is_string());
    // The deleted user's token is gone.
    assert_eq!(
        c.get(core(&emu, "Me"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // No token: 401.
    assert_eq!(
        c.get(core(&emu, "Users")).send().await.unwrap().status(),
        401
    );
}

#[tokio::test]
async fn query_parameters() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    emu.control().seed_users(250);
    let get = |q: &str| {
        let c = c.clone();
        let url = format!("{}?{q}", core(&emu, "Users"));
        let t = t.clone();
        async move {
            let r = c.get(url).bearer_auth(t).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, total) = get("count=true").await;
    assert_eq!(total, json!(emu.control().user_count()));
    let (_, v) = get("filter=Name%20eq%20'SeedUser00010'").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) =
        get("filter=Name%20contains%20'seeduser001'%20and%20Disabled%20eq%20false&count=true")
            .await;
    assert!(v.as_u64().unwrap() > 0 && v.as_u64().unwrap() < 100);
    let (_, v) = get("filter=Name%20ne%20'Admin'&count=true").await;
    assert_eq!(v.as_u64().unwrap() + 1, total.as_u64().unwrap());
    let (_, v) = get("filter=PrimaryAuthenticationProvider.Id%20eq%20-2").await;
    assert_eq!(v[0]["Name"], CERT_USER);
    let (_, v) = get("fields=Id,Name,PrimaryAuthenticationProvider.Name&limit=1").await;
    let o = v[0].as_object().unwrap();
    assert_eq!(o.len(), 3, "{o:?}");
    assert_eq!(
        v[0]["PrimaryAuthenticationProvider"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    let (_, v) = get("orderby=-Name&limit=3").await;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| std::cmp::Reverse(n.to_lowercase()));
    assert_eq!(names, sorted);
    // Pages are 0-based and disjoint.
    let (_, p0) = get("orderby=Id&page=0&limit=100").await;
    let (_, p1) = get("orderby=Id&page=1&limit=100").await;
    let (_, p2) = get("orderby=Id&page=2&limit=100").await;
    assert_eq!(p0.as_array().unwrap().len(), 100);
    assert_eq!(
        p1[0]["Id"].as_i64().unwrap(),
        p0[99]["Id"].as_i64().unwrap() + 1
    );
    assert_eq!(
        p0.as_array().unwrap().len() + p1.as_array().unwrap().len() + p2.as_array().unwrap().len(),
        total.as_u64().unwrap() as usize
    );
    // A bad filter is a 400 with the appliance body.
    let (s, e) = get("filter=Name%20foo%20'x'").await;
    assert_eq!(s, 400);
    assert!(e["Message"].is_string());
    let (s, _) = get("limit=abc").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn assets_accounts_registrations_and_requests() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let post =
        |path: &str, body: Value| c.post(core(&emu, path)).bearer_auth(&t).json(&body).send();
    let asset: Value = post(
        "Assets",
        json!({"Name": "db01", "NetworkAddress": "10.1.1.1", "PlatformId": 188}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let asset_id = asset["Id"].as_i64().unwrap();
    assert_eq!(asset["NetworkAddress"], "10.1.1.1");
    let r = post(
        "AssetAccounts",
        json!({"Name": "root", "Asset": {"Id": asset_id}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let acct: Value = r.json().await.unwrap();
    let acct_id = acct["Id"].as_i64().unwrap();
    assert_eq!(acct["Asset"]["Name"], "db01");
    let r = c
        .put(core(&emu, &format!("AssetAccounts/{acct_id}/Password")))
        .bearer_auth(&t)
        .json(&"Root-Pw-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Asset with accounts cannot be deleted.
    assert_eq!(
        c.delete(core(&emu, &format!("Assets/{asset_id}")))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // Trusted certificates: the CA is there; adding it again is refused; another one is accepted.
    let list: Value = c
        .get(core(&emu, "TrustedCertificates"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let r = post(
        "TrustedCertificates",
        json!({"Base64CertificateData": emu.ca_pem()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let other = start().await;
    let r = post(
        "TrustedCertificates",
        json!({"Base64CertificateData": other.ca_pem()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let tc: Value = r.json().await.unwrap();
    assert_eq!(tc["Thumbprint"].as_str().unwrap().len(), 40);
    // The base64 of a PEM file, as the vendor's tools send one.
    let third = start().await;
    let r = post(
        "TrustedCertificates",
        json!({"Base64CertificateData":
            base64::engine::general_purpose::STANDARD.encode(third.ca_pem())}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert!(tc["Subject"]
        .as_str()
        .unwrap()
        .contains("Safeguard Emulator CA"));
    // A certificate user for the other emulator's client certificate, a registration, a retrievable account.
    let tp = other.connection().spp.client_cert.thumbprint.clone();
    let r = post(
        "Users",
        json!({"Name": "other-cert", "PrimaryAuthenticationProvider": {"Id": -2, "Identity": tp}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let cu: Value = r.json().await.unwrap();
    let r = post(
        "A2ARegistrations",
        json!({"AppName": "other", "CertificateUserId": cu["Id"], "BidirectionalEnabled": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    assert_eq!(reg["CertificateUserThumbPrint"], json!(tp));
    let reg_id = reg["Id"].as_i64().unwrap();
    let r = post(
        &format!("A2ARegistrations/{reg_id}/RetrievableAccounts"),
        json!({"AccountId": acct_id}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let ra: Value = r.json().await.unwrap();
    let key = ra["ApiKey"].as_str().unwrap().to_string();
    let list: Value = c
        .get(core(
            &emu,
            &format!("A2ARegistrations/{reg_id}/RetrievableAccounts"),
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["AccountName"], "root");
    // The other client certificate now retrieves the password here.
    let files = other.client_cert();
    let mut pem = std::fs::read(&files.cert).unwrap();
    pem.extend(std::fs::read(&files.key).unwrap());
    let oc = builder(&emu)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = oc
        .get(format!(
            "{}/service/a2a/v4/Credentials?type=password",
            base(&emu)
        ))
        .header("Authorization", format!("A2A {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!("Root-Pw-1"));
    // Broker.
    let r = c
        .put(core(
            &emu,
            &format!("A2ARegistrations/{reg_id}/AccessRequestBroker"),
        ))
        .bearer_auth(&t)
        .json(&json!({"Users": [{"UserId": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.json::<Value>().await.unwrap()["ApiKey"].is_string());
    // Access request: only with an entitlement (a role of the admin with a
    // policy over the account, here without approval); create, check out,
    // check in.
    let r = post(
        "AccessRequests",
        json!({"AccountId": acct_id, "AccessRequestType": "Password", "ReasonComment": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let role: Value = post("Roles", json!({"Name": "Admins", "Members": [{"Id": 1}]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = post(
        "AccessPolicies",
        json!({"Name": "db01 root", "RoleId": role["Id"],
               "ScopeItems": [{"Id": acct_id, "ScopeItemType": "Account"}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "AccessRequests",
        json!({"AccountId": acct_id, "AccessRequestType": "Password", "ReasonComment": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let req: Value = r.json().await.unwrap();
    assert_eq!(req["State"], "RequestAvailable");
    let rid = req["Id"].as_str().unwrap().to_string();
    let pw: Value = c
        .post(core(
            &emu,
            &format!("AccessRequests/{rid}/CheckOutPassword"),
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pw, json!("Root-Pw-1"));
    let v: Value = c
        .post(core(&emu, &format!("AccessRequests/{rid}/CheckIn")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["State"], "RequestCheckedIn");
    // The certificate user sees its own registration only.
    let cc = cert_client(&emu);
    let v: Value = cc
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "client_credentials", "scope": "rsts:sts:primaryproviderid:certificate"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ct = user_token(&cc, &emu, v["access_token"].as_str().unwrap()).await;
    let regs: Value = cc
        .get(core(&emu, "A2ARegistrations"))
        .bearer_auth(&ct)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(regs.as_array().unwrap().len(), 1);
    assert_eq!(regs[0]["AppName"], A2A_APP_NAME);
}

#[tokio::test]
async fn settings_login_message_and_misc() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let v: Value = c
        .get(core(&emu, "Settings"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["Name"] == "Allowed OAuth2 Grant Types"));
    let r = c
        .put(core(&emu, "LoginMessage"))
        .bearer_auth(&t)
        .json(&json!({"Message": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(core(&emu, "LoginMessage"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-tokenlifetimeremaining"));
    assert_eq!(r.json::<Value>().await.unwrap()["Message"], "Hello");
    let r = c
        .post(core(&emu, "Events/FireTestEvent"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Unknown route and wrong method.
    assert_eq!(
        c.get(core(&emu, "NoSuchThing"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(core(&emu, "Me"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    // A non-integer id does not bind: the appliance's 400 naming it.
    let r = c
        .get(core(&emu, "Users/abc"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["ModelState"]["id"].is_array(), "{v}");
}

/// Fidelity with the vendor's tools: v3 paths answer as v4, the default
/// partition has its real name, and the token answer says `success`.
#[tokio::test]
async fn v3_paths_the_default_partition_and_the_token_answer() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let me = |version: &str| {
        c.get(format!("{}/service/core/{version}/Me", base(&emu)))
            .bearer_auth(&t)
            .send()
    };
    let (v3, v4) = (me("v3").await.unwrap(), me("v4").await.unwrap());
    assert_eq!(v3.status(), StatusCode::OK);
    let (v3, v4): (Value, Value) = (v3.json().await.unwrap(), v4.json().await.unwrap());
    assert_eq!(v3["Id"], v4["Id"]);
    let r = c
        .get(format!("{}/service/core/v5/Me", base(&emu)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let assets: Value = c
        .get(core(&emu, "Assets"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &assets.as_array().expect("a list")[0];
    assert_eq!(first["AssetPartitionId"], -1);
    assert_eq!(first["AssetPartitionName"], "Default Partition");

    emu.control().enable_grant("ResourceOwner").unwrap();
    let token: Value = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "password", "username": ADMIN_USER,
                      "password": ADMIN_PASSWORD, "scope": "rsts:sts:primaryproviderid:local"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["success"], true);
    assert!(token["access_token"].is_string());
}

/// Header names go out in title case, as HTTP.sys writes them.
#[tokio::test]
async fn header_names_are_title_case() {
    let emu = start().await;
    let mut s = openssl_connect(&emu, false, false).await;
    let r = raw_request(&mut s, "GET", "/service/notification/v4/Status", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("\r\nContent-Length: "), "{}", r.head);
    assert!(r.head.contains("\r\nContent-Type: "), "{}", r.head);
}

#[tokio::test]
async fn platforms_and_asset_platforms() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let get = |path: String| c.get(core(&emu, &path)).bearer_auth(&t).send();
    // The catalogue: documented members, enum values of core.json.
    let all: Value = get("Platforms".into()).await.unwrap().json().await.unwrap();
    let all = all.as_array().unwrap().clone();
    assert!(all.len() >= 20, "{}", all.len());
    for p in &all {
        for member in [
            "Id",
            "Name",
            "DisplayName",
            "PlatformType",
            "PlatformFamily",
            "DeviceClass",
        ] {
            assert!(!p[member].is_null(), "{member} of {p}");
        }
    }
    // The appliance's known ids: 521 Other Linux, 188 Ubuntu Other (legacy),
    // 522 a directory platform; current platforms are Id >= 500.
    for (id, name) in [(521, "Other Linux"), (188, "Ubuntu Other")] {
        let p: Value = get(format!("Platforms/{id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(p["DisplayName"], name);
        assert_eq!(p["PlatformFamily"], "Linux");
    }
    let r = get("Platforms/522".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["DeviceClass"], "Directory");
    let current: Value = get(
        "Platforms?filter=Id ge 500 and DisplayName icontains 'windows'&fields=Id,DisplayName"
            .into(),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        current.as_array().is_some_and(|a| !a.is_empty()),
        "{current}"
    );
    assert_eq!(get("Platforms/99999".into()).await.unwrap().status(), 404);
    let r = c.get(core(&emu, "Platforms")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The seeded asset keeps its platform, and its accounts carry it.
    let assets: Value = get("Assets".into()).await.unwrap().json().await.unwrap();
    let seeded = &assets[0];
    assert_eq!(seeded["PlatformId"], 521);
    assert_eq!(seeded["PlatformDisplayName"], "Other Linux");
    assert_eq!(seeded["Platform"]["PlatformType"], "LinuxOther");

    // An asset created with a PlatformId gets that platform.
    let windows = all
        .iter()
        .find(|p| p["PlatformType"] == "Windows" && p["LicenseClass"] == "System")
        .unwrap()
        .clone();
    let r = c
        .post(core(&emu, "Assets"))
        .bearer_auth(&t)
        .json(&json!({"Name": "win01", "NetworkAddress": "10.2.2.2", "PlatformId": windows["Id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let asset: Value = r.json().await.unwrap();
    assert_eq!(asset["PlatformId"], windows["Id"]);
    assert_eq!(asset["PlatformDisplayName"], windows["DisplayName"]);
    assert_eq!(asset["Platform"]["PlatformFamily"], "Windows");
    assert_eq!(asset["Platform"]["DeviceClass"], "Server");
    let id = asset["Id"].as_i64().unwrap();
    let r = c
        .post(core(&emu, "AssetAccounts"))
        .bearer_auth(&t)
        .json(&json!({"Name": "Administrator", "Asset": {"Id": id}}))
        .send()
        .await
        .unwrap();
    let acct: Value = r.json().await.unwrap();
    assert_eq!(acct["Platform"]["PlatformType"], "Windows");
    // Changed through PUT.
    let r = c
        .put(core(&emu, &format!("Assets/{id}")))
        .bearer_auth(&t)
        .json(&json!({"Name": "win01", "PlatformId": 522}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["Platform"]["DeviceClass"],
        "Directory"
    );
    // Its accounts follow.
    let acct_id = acct["Id"].as_i64().unwrap();
    let acct: Value = get(format!("AssetAccounts/{acct_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acct["Platform"]["Id"], 522);
    // An unknown PlatformId: 400, nothing created.
    let r = c
        .post(core(&emu, "Assets"))
        .bearer_auth(&t)
        .json(&json!({"Name": "nowhere", "PlatformId": 99999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["Message"]
        .as_str()
        .unwrap()
        .contains("99999"));
    let r = get("Assets?filter=Name eq 'nowhere'&count=true".into())
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!(0));
}

/// Every member named like a date (`*Date`, `*On`, `*Time`, `NotBefore`,
/// `NotAfter`) that holds a string, anywhere in `v`.
fn date_members(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let datey = k.ends_with("Date")
                    || k.ends_with("On")
                    || k.ends_with("Time")
                    || k == "NotBefore"
                    || k == "NotAfter";
                match x {
                    Value::String(s) if datey => out.push((k.clone(), s.clone())),
                    _ => date_members(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| date_members(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn dates_are_rfc3339() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    // A login message gives its optional UpdatedDate a value.
    let r = c
        .put(core(&emu, "LoginMessage"))
        .bearer_auth(&t)
        .json(&json!({"Message": "hello"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut found = Vec::new();
    for path in [
        "service/core/v4/TrustedCertificates",
        "service/core/v4/Users",
        "service/core/v4/Me",
        "service/core/v4/Assets",
        "service/core/v4/AssetAccounts",
        "service/core/v4/A2ARegistrations",
        "service/core/v4/LoginMessage",
        "service/appliance/v4/SystemTime",
        "service/appliance/v4/Backups",
    ] {
        let r = c
            .get(format!("{}/{path}", base(&emu)))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        let before = found.len();
        date_members(&v, &mut found);
        if path.ends_with("TrustedCertificates") {
            let names: Vec<&str> = found[before..].iter().map(|(k, _)| k.as_str()).collect();
            assert!(
                names.contains(&"NotBefore") && names.contains(&"NotAfter"),
                "{v}"
            );
        }
    }
    assert!(found.len() > 10, "{found:?}");
    for (k, s) in &found {
        let parsed = chrono::DateTime::parse_from_rfc3339(s);
        assert!(parsed.is_ok(), "{k} = {s:?} is not RFC 3339");
    }
    // Certificate dates in whole seconds, UTC, as the appliance writes them.
    for (k, s) in found.iter().filter(|(k, _)| k.starts_with("Not")) {
        assert!(
            s.len() == 20 && s.ends_with('Z'),
            "{k} = {s:?} is not like 2026-12-04T17:21:17Z"
        );
    }
}
