//! The emulated cluster: members and their leader seen from every member,
//! replicas refusing configuration writes (60418) while serving sign-in,
//! `Me`, access requests and A2A, promotion, a stopped member, a lock.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Client, Response};
use safeguard_emulator::*;
use serde_json::{json, Value};

async fn start_cluster(n: usize) -> Emulator {
    start_with(EmulatorConfig {
        cluster_members: n,
        ..EmulatorConfig::default()
    })
    .await
}

fn url(host: &str, path: &str) -> String {
    format!("https://{host}/service/core/v4/{path}")
}

/// The seeded administrator signs in on `host` (PKCE through that member's
/// rSTS, then `Token/LoginResponse` there); returns the user token.
async fn sign_in(c: &Client, host: &str) -> String {
    let p = Pkce::new();
    let login = |step: u32| {
        format!(
            "https://{host}/RSTS/UserLogin/LoginController?response_type=code&code_challenge_method=S256&code_challenge={}&redirect_uri=urn:InstalledApplication&loginRequestStep={step}",
            p.challenge
        )
    };
    let form = [
        ("csrfTokenTextbox", p.csrf.as_str()),
        ("directoryComboBox", "local"),
        ("usernameTextbox", ADMIN_USER),
        ("passwordTextbox", ADMIN_PASSWORD),
    ];
    let mut last = Value::Null;
    for step in [1, 3, 6] {
        let r = c
            .post(login(step))
            .header("Cookie", format!("CsrfToken={}", p.csrf))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "step {step}");
        last = r.json().await.unwrap_or(Value::Null);
    }
    let relying = last["RelyingPartyUrl"].as_str().unwrap();
    let code = relying.split("code=").nth(1).unwrap();
    let tok: Value = c
        .post(format!("https://{host}/RSTS/oauth2/token"))
        .json(
            &json!({"grant_type": "authorization_code", "redirect_uri": "urn:InstalledApplication",
            "code": code, "code_verifier": p.verifier}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .post(url(host, "Token/LoginResponse"))
        .json(&json!({"StsAccessToken": tok["access_token"]}))
        .send()
        .await
        .unwrap();
    let v: Value = json_of(r, 200).await;
    v["UserToken"].as_str().unwrap().to_string()
}

async fn json_of(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{v}");
    v
}

async fn get(c: &Client, host: &str, t: &str, path: &str) -> Response {
    c.get(url(host, path)).bearer_auth(t).send().await.unwrap()
}

async fn post(c: &Client, host: &str, t: &str, path: &str, body: Value) -> Response {
    c.post(url(host, path))
        .bearer_auth(t)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A POST without a body (the cluster actions take none).
async fn action(c: &Client, host: &str, t: &str, path: &str) -> Response {
    c.post(url(host, path)).bearer_auth(t).send().await.unwrap()
}

async fn new_asset(c: &Client, host: &str, t: &str, name: &str) -> Response {
    post(
        c,
        host,
        t,
        "Assets",
        json!({"Name": name, "NetworkAddress": "10.9.9.9", "PlatformId": 521}),
    )
    .await
}

async fn assert_error(r: Response, status: u16, code: i64) {
    let v = json_of(r, status).await;
    assert_eq!(v["Code"], code, "{v}");
    assert!(v["Message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

/// Ids of the leaders in `Cluster/Members` as `host` answers it.
async fn leaders(c: &Client, host: &str, t: &str) -> Vec<String> {
    let members = json_of(get(c, host, t, "Cluster/Members").await, 200).await;
    members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["IsLeader"] == true)
        .map(|m| m["Id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_member_lists_the_members_and_one_leader() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let info = emu.connection().spp.members.clone();
    assert_eq!(info.len(), 3);
    assert_eq!(info[0].host, emu.spp_host());
    assert_eq!(emu.member_hosts().len(), 3);
    let t = admin_token(&c, &emu).await;
    for (i, m) in info.iter().enumerate() {
        let members = json_of(get(&c, &m.host, &t, "Cluster/Members").await, 200).await;
        let ids: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = info.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, want);
        assert_eq!(leaders(&c, &m.host, &t).await, vec![info[0].id.clone()]);
        let me = json_of(get(&c, &m.host, &t, "Cluster/Members/Self").await, 200).await;
        assert_eq!(me["Id"], m.id.as_str());
        assert_eq!(me["IsLeader"], i == 0);
        let state = if i == 0 {
            "Online"
        } else {
            "ReplicaWithQuorum"
        };
        assert_eq!(me["Health"]["State"], state, "{me}");
        assert_eq!(me["Health"]["ClusterCommunication"]["Status"], "Healthy");
        let one = json_of(
            get(&c, &m.host, &t, &format!("Cluster/Members/{}", info[1].id)).await,
            200,
        )
        .await;
        assert_eq!(one["IsLeader"], false);
        let status = json_of(get(&c, &m.host, &t, "Cluster/Status").await, 200).await;
        assert_eq!(status["Operation"], "None");
    }
    // The query options apply (safeguard-ps finds the primary this way).
    let primary = json_of(
        get(
            &c,
            &info[2].host,
            &t,
            "Cluster/Members?filter=IsLeader%20eq%20true&fields=Id",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(primary, json!([{"Id": info[0].id}]));
}

#[tokio::test]
async fn a_lone_appliance_is_a_cluster_of_one() {
    let emu = start().await;
    let c = client(&emu);
    assert_eq!(emu.connection().spp.members.len(), 1);
    let t = admin_token(&c, &emu).await;
    let host = emu.spp_host();
    assert_eq!(
        leaders(&c, &host, &t).await,
        vec![emu.connection().spp.members[0].id.clone()]
    );
    json_of(new_asset(&c, &host, &t, "alone").await, 201).await;
}

#[tokio::test]
async fn a_replica_refuses_writes_and_sees_the_primarys() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let hosts = emu.member_hosts();
    let t = admin_token(&c, &emu).await;
    assert_error(new_asset(&c, &hosts[1], &t, "on-replica").await, 403, 60418).await;
    let r = c
        .delete(url(&hosts[2], "Assets/1"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, 60418).await;
    assert_eq!(emu.control().replica_write_refusals(), 2);
    let created = json_of(new_asset(&c, &hosts[0], &t, "on-primary").await, 201).await;
    let id = created["Id"].as_i64().unwrap();
    for host in &hosts[1..] {
        let seen = json_of(get(&c, host, &t, &format!("Assets/{id}")).await, 200).await;
        assert_eq!(seen["Name"], "on-primary");
    }
}

#[tokio::test]
async fn a_replica_serves_sign_in_me_access_requests_and_a2a() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let replica = emu.member_hosts()[2].clone();
    let t = sign_in(&c, &replica).await;
    let me = json_of(get(&c, &replica, &t, "Me").await, 200).await;
    assert_eq!(me["Name"], ADMIN_USER);
    // The user's own stored objects are configuration.
    let r = c
        .delete(url(&replica, "Me/Photo"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, 60418).await;
    // The break-glass policy lets the administrator check out at once.
    let request = json!({"AccountId": emu.control().password_account_id(),
        "AccessRequestType": "Password", "ReasonComment": "on a replica", "RequestedDurationHours": 1});
    let r = json_of(post(&c, &replica, &t, "AccessRequests", request).await, 200).await;
    assert!(r["Id"].as_str().is_some(), "{r}");
    // A2A retrieval with the client certificate.
    let keys = emu.connection().spp.a2a.clone();
    let r = cert_client(&emu)
        .get(format!(
            "https://{replica}/service/a2a/v4/Credentials?type=password"
        ))
        .header("Authorization", format!("A2A {}", keys.password_api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await, json!(PASSWORD_ACCOUNT_PASSWORD));
    // Signing out is served too.
    let r = c
        .post(url(&replica, "Token/Logout"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn promote_moves_the_leader_and_locks_the_cluster_for_the_failover() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let info = emu.connection().spp.members.clone();
    let t = admin_token(&c, &emu).await;
    let path = |i: usize| format!("Cluster/Members/{}/Promote", info[i].id);
    // The primary cannot be promoted; an unknown id is not a member.
    assert_error(action(&c, &info[1].host, &t, &path(0)).await, 400, 60522).await;
    assert_error(
        action(&c, &info[0].host, &t, "Cluster/Members/NOPE/Promote").await,
        400,
        60453,
    )
    .await;

    let promoted = json_of(action(&c, &info[0].host, &t, &path(1)).await, 200).await;
    assert_eq!(promoted["Id"], info[1].id.as_str());
    assert_eq!(promoted["IsLeader"], true);
    assert_eq!(emu.primary(), 1);
    for m in &info {
        assert_eq!(leaders(&c, &m.host, &t).await, vec![info[1].id.clone()]);
    }
    let status = json_of(get(&c, &info[2].host, &t, "Cluster/Status").await, 200).await;
    assert_eq!(status["Operation"], "Failover");
    assert_eq!(status["OwnerId"], info[1].id.as_str());
    // The old primary is a replica now; during the failover the new one
    // refuses writes and a second promotion.
    assert_error(new_asset(&c, &info[0].host, &t, "old").await, 403, 60418).await;
    assert_error(new_asset(&c, &info[1].host, &t, "early").await, 400, 60910).await;
    assert_error(action(&c, &info[1].host, &t, &path(2)).await, 400, 60910).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let status = json_of(get(&c, &info[0].host, &t, "Cluster/Status").await, 200).await;
    assert_eq!(status["Operation"], "None");
    json_of(new_asset(&c, &info[1].host, &t, "new").await, 201).await;
    let old = json_of(
        get(&c, &info[0].host, &t, "Cluster/Members/Self").await,
        200,
    )
    .await;
    assert_eq!(old["Health"]["State"], "ReplicaWithQuorum");
}

#[tokio::test]
async fn a_stopped_member_refuses_connections_and_comes_back() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let hosts = emu.member_hosts();
    let t = admin_token(&c, &emu).await;
    // A pooled connection to the member exists before it stops.
    json_of(get(&c, &hosts[1], &t, "Me").await, 200).await;
    emu.stop_member(1).await.unwrap();
    let err = client(&emu)
        .get(url(&hosts[1], "Me"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(c
        .get(url(&hosts[1], "Me"))
        .bearer_auth(&t)
        .send()
        .await
        .is_err());
    let members = json_of(get(&c, &hosts[0], &t, "Cluster/Members").await, 200).await;
    assert_eq!(members[1]["Health"]["State"], "Offline", "{members}");
    assert_eq!(
        members[0]["Health"]["ClusterConnectivity"]["Status"],
        "Sick"
    );
    // A stopped member cannot be promoted.
    let id = emu.connection().spp.members[1].id.clone();
    let r = action(&c, &hosts[0], &t, &format!("Cluster/Members/{id}/Promote")).await;
    assert_error(r, 400, 60417).await;
    assert!(matches!(
        emu.stop_member(7).await,
        Err(EmulatorError::NoSuchMember(7))
    ));

    emu.restart_member(1).unwrap();
    let me = json_of(get(&client(&emu), &hosts[1], &t, "Me").await, 200).await;
    assert_eq!(me["Name"], ADMIN_USER);
    let members = json_of(get(&c, &hosts[2], &t, "Cluster/Members").await, 200).await;
    assert_eq!(members[1]["Health"]["State"], "ReplicaWithQuorum");
}

#[tokio::test]
async fn a_locked_cluster_refuses_writes_until_the_lock_ends() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let hosts = emu.member_hosts();
    let t = admin_token(&c, &emu).await;
    emu.lock_cluster("Patch", Duration::from_millis(1500));
    let status = json_of(get(&c, &hosts[1], &t, "Cluster/Status").await, 200).await;
    assert_eq!(status["Operation"], "Patch");
    assert_eq!(status["Nodes"].as_array().unwrap().len(), 3);
    assert_error(new_asset(&c, &hosts[0], &t, "locked").await, 400, 60910).await;
    // Reads and access requests go on.
    json_of(get(&c, &hosts[0], &t, "Assets").await, 200).await;
    let request = json!({"AccountId": emu.control().password_account_id(),
        "AccessRequestType": "Password", "ReasonComment": "during a patch", "RequestedDurationHours": 1});
    json_of(
        post(&c, &hosts[1], &t, "AccessRequests", request).await,
        200,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    json_of(new_asset(&c, &hosts[0], &t, "unlocked").await, 201).await;

    // ForceComplete ends a lock at once.
    emu.lock_cluster("Patch", Duration::from_secs(600));
    assert_error(new_asset(&c, &hosts[0], &t, "again").await, 400, 60910).await;
    let status = json_of(
        action(&c, &hosts[0], &t, "Cluster/Status/ForceComplete").await,
        200,
    )
    .await;
    assert_eq!(status["Operation"], "None");
    json_of(new_asset(&c, &hosts[0], &t, "forced").await, 201).await;
}

/// Waits until a fresh connection to `host` succeeds (`up`) or is refused.
async fn wait_reachable(emu: &Emulator, host: &str, up: bool) {
    for _ in 0..100 {
        let r = client(emu)
            .get(format!("https://{host}/service/notification/v4/Status"))
            .send()
            .await;
        if r.is_ok() == up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{host} did not become {}",
        if up { "reachable" } else { "unreachable" }
    );
}

#[tokio::test]
async fn the_http_face_stops_starts_and_locks() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let hosts = emu.member_hosts();
    let t = admin_token(&c, &emu).await;
    let admin = |path: &str| format!("https://{}/emulator/{path}", hosts[0]);
    let r = c
        .post(admin("cluster/members/2/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["running"], false);
    wait_reachable(&emu, &hosts[2], false).await;
    let members = json_of(get(&c, &hosts[0], &t, "Cluster/Members").await, 200).await;
    assert_eq!(members[2]["Health"]["State"], "Offline");
    let r = c
        .post(admin("cluster/members/2/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["running"], true);
    wait_reachable(&emu, &hosts[2], true).await;
    json_of(get(&c, &hosts[2], &t, "Me").await, 200).await;
    let r = c
        .post(admin("cluster/members/9/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = c
        .post(admin("cluster/lock"))
        .json(&json!({"operation": "AuditLogSync", "ms": 600000}))
        .send()
        .await
        .unwrap();
    json_of(r, 200).await;
    let status = json_of(get(&c, &hosts[1], &t, "Cluster/Status").await, 200).await;
    assert_eq!(status["Operation"], "AuditLogSync");
    assert_error(new_asset(&c, &hosts[0], &t, "locked").await, 400, 60910).await;
    let r = c
        .post(admin("cluster/lock"))
        .json(&json!({"ms": 0}))
        .send()
        .await
        .unwrap();
    json_of(r, 200).await;
    json_of(new_asset(&c, &hosts[0], &t, "unlocked").await, 201).await;
}

/// Each member answers the anonymous notification `Status` as itself (its
/// id, its role), and `Status/Cluster` reports the members that run.
#[tokio::test]
async fn each_member_reports_its_own_status_anonymously() {
    let emu = start_cluster(3).await;
    let c = client(&emu);
    let hosts = emu.member_hosts();
    let ids: Vec<String> = emu
        .connection()
        .spp
        .members
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let status = |host: String| {
        let c = c.clone();
        async move {
            let r = c
                .get(format!("https://{host}/service/notification/v4/Status"))
                .send()
                .await
                .unwrap();
            json_of(r, 200).await
        }
    };
    for (i, host) in hosts.iter().enumerate() {
        let s = status(host.clone()).await;
        assert_eq!(s["ApplianceId"], ids[i], "{s}");
        assert_eq!(s["IsPrimary"], i == 0, "{s}");
        assert_eq!(s["IsReplica"], i != 0, "{s}");
        assert_eq!(s["IpAddress"], "127.0.0.1");
    }
    emu.stop_member(2).await.unwrap();
    let r = c
        .get(format!(
            "https://{}/service/notification/v4/Status/Cluster",
            hosts[1]
        ))
        .send()
        .await
        .unwrap();
    let all = json_of(r, 200).await;
    let listed: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ApplianceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()], "{all}");
    let t = admin_token(&c, &emu).await;
    let promote = format!("Cluster/Members/{}/Promote", ids[1]);
    json_of(action(&c, &hosts[1], &t, &promote).await, 200).await;
    assert_eq!(status(hosts[1].clone()).await["IsPrimary"], true);
    assert_eq!(status(hosts[0].clone()).await["IsReplica"], true);
}
