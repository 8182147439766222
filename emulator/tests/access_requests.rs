//! The privileged-access workflow: entitlements, policies, requester views,
//! access requests through every state, refusals of out-of-order steps, and
//! the events each transition publishes.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::{Client, Response};
use safeguard_emulator::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_openssl::SslStream<tokio::net::TcpStream>>;

async fn token(
    c: &Client,
    emu: &Emulator,
    user: &str,
    password: &str,
    otp: Option<&str>,
) -> String {
    let sts = pkce_access_token(c, emu, "local", user, password, otp).await;
    user_token(c, emu, &sts).await
}

async fn requester_token(c: &Client, emu: &Emulator) -> String {
    token(c, emu, PLAIN_USER, PLAIN_PASSWORD, None).await
}

async fn outsider_token(c: &Client, emu: &Emulator) -> String {
    token(c, emu, MFA_USER, MFA_PASSWORD, Some(MFA_OTP)).await
}

async fn get(c: &Client, emu: &Emulator, t: &str, path: &str) -> Response {
    c.get(core(emu, path)).bearer_auth(t).send().await.unwrap()
}

async fn post(c: &Client, emu: &Emulator, t: &str, path: &str, body: Option<Value>) -> Response {
    let r = c.post(core(emu, path)).bearer_auth(t);
    let r = match body {
        Some(b) => r.json(&b),
        None => r,
    };
    r.send().await.unwrap()
}

async fn put(c: &Client, emu: &Emulator, t: &str, path: &str, body: Value) -> Response {
    c.put(core(emu, path))
        .bearer_auth(t)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{v}");
    v
}

/// Asserts the appliance's error body.
async fn error(r: Response, status: u16, code: i64) -> Value {
    let v = json_of(r, status).await;
    assert_eq!(v["Code"], code, "{v}");
    assert!(v["Message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

fn password_request(emu: &Emulator) -> Value {
    json!({"AccountId": emu.control().password_account_id(), "AccessRequestType": "Password",
           "ReasonComment": "maintenance", "RequestedDurationHours": 1})
}

async fn create(c: &Client, emu: &Emulator, t: &str) -> (String, Value) {
    let v = json_of(
        post(c, emu, t, "AccessRequests", Some(password_request(emu))).await,
        200,
    )
    .await;
    (v["Id"].as_str().unwrap().to_string(), v)
}

async fn step(c: &Client, emu: &Emulator, t: &str, id: &str, action: &str) -> Response {
    post(c, emu, t, &format!("AccessRequests/{id}/{action}"), None).await
}

async fn event_socket(emu: &Emulator, t: &str) -> Ws {
    let auth = format!("Bearer {t}");
    let v: Value = client(emu)
        .post(format!(
            "{}/service/event/signalr/negotiate?negotiateVersion=1",
            base(emu)
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["connectionToken"].as_str().unwrap();
    let stream = openssl_connect(emu, false, false).await;
    let mut req = format!("wss://{}/service/event/signalr?id={id}", emu.spp_host())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    ws
}

/// The names of the events received until `last` arrives.
async fn events_until(ws: &mut Ws, last: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {last} event; got {out:?}"));
        let Some(Ok(Message::Text(text))) = msg else {
            continue;
        };
        for rec in text.split('\u{1e}').filter(|r| !r.is_empty()) {
            let v: Value = serde_json::from_str(rec).unwrap();
            if v["type"] == 1 {
                let name = v["arguments"][0]["Name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                out.push((name.clone(), v["arguments"][0]["Data"].clone()));
                if name == last {
                    return out;
                }
            }
        }
    }
}

#[tokio::test]
async fn request_approve_check_out_check_in_close() {
    let emu = start().await;
    let c = client(&emu);
    let admin = admin_token(&c, &emu).await;
    let req_t = requester_token(&c, &emu).await;
    let mut ws = event_socket(&emu, &admin).await;

    // What the requester may request: the seeded password account.
    let ents = json_of(get(&c, &emu, &req_t, "Me/RequestEntitlements").await, 200).await;
    assert_eq!(ents.as_array().unwrap().len(), 1, "{ents}");
    assert_eq!(ents[0]["Account"]["Name"], PASSWORD_ACCOUNT);
    assert_eq!(ents[0]["Asset"]["Name"], ASSET_NAME);
    assert_eq!(
        ents[0]["Policy"]["AccessRequestProperties"]["AccessRequestType"],
        "Password"
    );
    let none = json_of(
        get(
            &c,
            &emu,
            &req_t,
            "Me/RequestEntitlements?accessRequestType=SshKey",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(none, json!([]));
    error(
        get(
            &c,
            &emu,
            &req_t,
            "Me/RequestEntitlements?accessRequestType=Nope",
        )
        .await,
        400,
        70000,
    )
    .await;
    let assets = json_of(get(&c, &emu, &req_t, "Me/AccessRequestAssets").await, 200).await;
    assert_eq!(assets[0]["Name"], ASSET_NAME);
    let asset_id = assets[0]["Id"].as_i64().unwrap();
    let one = json_of(
        get(
            &c,
            &emu,
            &req_t,
            &format!("Me/AccessRequestAssets/{asset_id}"),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(one["Id"], asset_id);
    assert_eq!(
        get(&c, &emu, &req_t, "Me/AccessRequestAssets/999999")
            .await
            .status(),
        404
    );

    // Create: the policy needs one approval.
    let (id, created) = create(&c, &emu, &req_t).await;
    assert_eq!(created["State"], "PendingApproval");
    assert_eq!(created["RequiredApprovalCount"], 1);
    assert_eq!(created["DurationInMinutes"], 60);
    assert_eq!(created["RequesterUsername"], PLAIN_USER);
    assert_eq!(created["AccountName"], PASSWORD_ACCOUNT);

    // Out of order: no check-out before approval; the requester may not approve.
    error(
        step(&c, &emu, &req_t, &id, "CheckOutPassword").await,
        400,
        90400,
    )
    .await;
    error(step(&c, &emu, &req_t, &id, "Approve").await, 403, 60101).await;
    error(step(&c, &emu, &req_t, &id, "Close").await, 400, 90400).await;

    // The approver sees it waiting for them.
    let act = json_of(get(&c, &emu, &admin, "Me/ActionableRequests").await, 200).await;
    assert_eq!(act["Approver"][0]["Id"], id.as_str(), "{act}");
    let mine = json_of(
        get(&c, &emu, &req_t, "Me/ActionableRequests/Requester").await,
        200,
    )
    .await;
    assert_eq!(mine[0]["Id"], id.as_str());
    error(
        get(&c, &emu, &admin, "Me/ActionableRequests/Nobody").await,
        400,
        70000,
    )
    .await;

    // Approve (as another user), with a comment.
    let approved = json_of(
        post(
            &c,
            &emu,
            &admin,
            &format!("AccessRequests/{id}/Approve"),
            Some(json!("go ahead")),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(approved["State"], "RequestAvailable");
    assert_eq!(approved["ApprovedByMe"], true);
    assert_eq!(approved["CurrentApprovalCount"], 1);
    error(step(&c, &emu, &admin, &id, "Approve").await, 400, 90400).await;
    error(step(&c, &emu, &req_t, &id, "CheckIn").await, 400, 90400).await;
    error(
        step(&c, &emu, &admin, &id, "CheckOutPassword").await,
        403,
        60101,
    )
    .await;

    // Check out: the password as a JSON string.
    let pw = json_of(step(&c, &emu, &req_t, &id, "CheckOutPassword").await, 200).await;
    assert_eq!(pw, json!(PASSWORD_ACCOUNT_PASSWORD));
    let now = json_of(
        get(&c, &emu, &req_t, &format!("AccessRequests/{id}")).await,
        200,
    )
    .await;
    assert_eq!(now["State"], "PasswordCheckedOut");
    assert_eq!(now["WasCheckedOut"], true);
    assert_eq!(now["ApprovedByMe"], false);
    error(step(&c, &emu, &req_t, &id, "Cancel").await, 400, 90400).await;

    // Check in, then close.
    let v = json_of(step(&c, &emu, &req_t, &id, "CheckIn").await, 200).await;
    assert_eq!(v["State"], "RequestCheckedIn");
    error(
        step(&c, &emu, &req_t, &id, "CheckOutPassword").await,
        400,
        90400,
    )
    .await;
    let v = json_of(step(&c, &emu, &req_t, &id, "Close").await, 200).await;
    assert_eq!(v["State"], "Complete");
    error(step(&c, &emu, &req_t, &id, "Close").await, 400, 90400).await;
    let actions: Vec<&str> = v["WorkflowActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ActionType"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "Initialize",
            "ApproveRequest",
            "NextState",
            "CheckOutPassword",
            "CheckInRequest",
            "CloseRequest"
        ]
    );
    assert_eq!(v["WorkflowActions"][1]["Comment"], "go ahead");

    // Listed, filtered, and the answer of every transition was published.
    let listed = json_of(
        get(
            &c,
            &emu,
            &req_t,
            "AccessRequests?filter=State%20eq%20'Complete'&fields=Id,State",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(listed, json!([{"Id": id, "State": "Complete"}]));
    error(
        get(&c, &emu, &req_t, "AccessRequests/424242").await,
        404,
        90404,
    )
    .await;
    let names: Vec<String> = events_until(&mut ws, "AccessRequestClosed")
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "AccessRequestCreated",
            "AccessRequestPendingApproval",
            "AccessRequestApprovalReceived",
            "AccessRequestApproved",
            "AccessRequestAvailable",
            "PasswordReleased",
            "AccessRequestCheckedIn",
            "AccessRequestClosed",
        ]
    );
}

#[tokio::test]
async fn outsiders_cannot_request_or_act() {
    let emu = start().await;
    let c = client(&emu);
    let req_t = requester_token(&c, &emu).await;
    let outsider = outsider_token(&c, &emu).await;
    // Not in the role: nothing to request, and a request is refused.
    assert_eq!(
        json_of(
            get(&c, &emu, &outsider, "Me/RequestEntitlements").await,
            200
        )
        .await,
        json!([])
    );
    assert_eq!(
        json_of(
            get(&c, &emu, &outsider, "Me/AccessRequestAssets").await,
            200
        )
        .await,
        json!([])
    );
    error(
        post(
            &c,
            &emu,
            &outsider,
            "AccessRequests",
            Some(password_request(&emu)),
        )
        .await,
        403,
        60101,
    )
    .await;
    // In the role, but the SSH-key account is outside the policy's scope.
    let ssh =
        json!({"AccountId": emu.control().ssh_key_account_id(), "AccessRequestType": "SshKey"});
    error(
        post(&c, &emu, &req_t, "AccessRequests", Some(ssh)).await,
        403,
        60101,
    )
    .await;
    // The seeded policy allows no emergency access.
    let mut emergency = password_request(&emu);
    emergency["IsEmergency"] = json!(true);
    error(
        post(&c, &emu, &req_t, "AccessRequests", Some(emergency)).await,
        400,
        50000,
    )
    .await;
    let bad = json!({"AccountId": emu.control().password_account_id(), "AccessRequestType": "Carrier pigeon"});
    error(
        post(&c, &emu, &req_t, "AccessRequests", Some(bad)).await,
        400,
        70000,
    )
    .await;
    // The outsider neither sees nor approves the requester's request.
    let (id, _) = create(&c, &emu, &req_t).await;
    error(step(&c, &emu, &outsider, &id, "Approve").await, 404, 90404).await;
    assert_eq!(
        json_of(get(&c, &emu, &outsider, "AccessRequests").await, 200).await,
        json!([])
    );
    let act = json_of(get(&c, &emu, &outsider, "Me/ActionableRequests").await, 200).await;
    assert_eq!(
        act,
        json!({"Admin": [], "Approver": [], "Requester": [], "Reviewer": []})
    );
    // Unauthenticated: 401.
    assert_eq!(
        c.get(core(&emu, "Me/RequestEntitlements"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn deny_acknowledge_and_cancel() {
    let emu = start().await;
    let c = client(&emu);
    let admin = admin_token(&c, &emu).await;
    let req_t = requester_token(&c, &emu).await;
    let mut ws = event_socket(&emu, &admin).await;

    let (id, _) = create(&c, &emu, &req_t).await;
    error(step(&c, &emu, &req_t, &id, "Deny").await, 403, 60101).await;
    error(step(&c, &emu, &req_t, &id, "Acknowledge").await, 400, 90400).await;
    let v = json_of(
        post(
            &c,
            &emu,
            &admin,
            &format!("AccessRequests/{id}/Deny"),
            Some(json!("no ticket")),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(v["State"], "PendingAcknowledgment");
    assert_eq!(v["WasDenied"], true);
    assert_eq!(v["NeedsAcknowledgement"], true);
    error(
        step(&c, &emu, &req_t, &id, "CheckOutPassword").await,
        400,
        90400,
    )
    .await;
    error(step(&c, &emu, &admin, &id, "Acknowledge").await, 403, 60101).await;
    let v = json_of(step(&c, &emu, &req_t, &id, "Acknowledge").await, 200).await;
    assert_eq!(v["State"], "Closed");
    assert_eq!(v["NeedsAcknowledgement"], false);

    let (id2, _) = create(&c, &emu, &req_t).await;
    error(step(&c, &emu, &admin, &id2, "Cancel").await, 403, 60101).await;
    let v = json_of(step(&c, &emu, &req_t, &id2, "Cancel").await, 200).await;
    assert_eq!(v["State"], "Closed");
    assert_eq!(v["WasCancelled"], true);
    error(step(&c, &emu, &admin, &id2, "Approve").await, 400, 90400).await;
    // A comment that is not a JSON string is refused.
    let r = post(
        &c,
        &emu,
        &req_t,
        &format!("AccessRequests/{id2}/Cancel"),
        Some(json!({"x": 1})),
    )
    .await;
    error(r, 400, 70000).await;

    let events = events_until(&mut ws, "AccessRequestCancelled").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "AccessRequestCreated",
            "AccessRequestPendingApproval",
            "AccessRequestDenied",
            "AccessRequestAcknowledged",
            "AccessRequestCreated",
            "AccessRequestPendingApproval",
            "AccessRequestCancelled",
        ]
    );
    let denied = &events[2].1;
    assert_eq!(denied["RequestId"], id.as_str());
    assert_eq!(denied["AccountName"], PASSWORD_ACCOUNT);
    assert_eq!(denied["Comment"], "no ticket");
}

#[tokio::test]
async fn roles_policies_and_review() {
    let emu = start().await;
    let c = client(&emu);
    let admin = admin_token(&c, &emu).await;
    let req_t = requester_token(&c, &emu).await;
    let outsider = outsider_token(&c, &emu).await;
    let mfa_id = emu.control().user_id(MFA_USER).unwrap();
    let admin_id = emu.control().user_id(ADMIN_USER).unwrap();

    // The seeded role and policy.
    // (Beside it, the administrator's break-glass role with two policies.)
    let all_roles = json_of(get(&c, &emu, &admin, "Roles").await, 200).await;
    assert_eq!(all_roles.as_array().unwrap().len(), 2);
    let roles = json_of(
        get(
            &c,
            &emu,
            &admin,
            "Roles?filter=Name eq 'Emulator Requesters'",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(roles.as_array().unwrap().len(), 1);
    assert_eq!(roles[0]["Members"][0]["Name"], PLAIN_USER);
    assert_eq!(roles[0]["UserCount"], 1);
    assert_eq!(roles[0]["PolicyCount"], 1);
    let policy = json_of(
        get(
            &c,
            &emu,
            &admin,
            "AccessPolicies?filter=Name eq 'Emulator Password Policy'",
        )
        .await,
        200,
    )
    .await[0]
        .clone();
    assert_eq!(policy["RoleId"], roles[0]["Id"]);
    assert_eq!(policy["ApproverProperties"]["RequireApproval"], true);
    assert_eq!(
        policy["ApproverSets"][0]["Approvers"][0]["Name"],
        ADMIN_USER
    );
    assert_eq!(policy["ScopeItems"][0]["Account"]["Name"], PASSWORD_ACCOUNT);

    // Only a PolicyAdmin writes; PUT checks the id.
    error(
        post(&c, &emu, &req_t, "Roles", Some(json!({"Name": "x"}))).await,
        403,
        60101,
    )
    .await;
    error(
        post(&c, &emu, &outsider, "Roles", Some(json!({"Name": "x"}))).await,
        403,
        60101,
    )
    .await;
    error(
        post(
            &c,
            &emu,
            &admin,
            "Roles",
            Some(json!({"Description": "no name"})),
        )
        .await,
        400,
        70000,
    )
    .await;

    // A role for the outsider, with a policy over the whole asset, no
    // approval and one reviewer.
    let role = json_of(
        post(
            &c,
            &emu,
            &admin,
            "Roles",
            Some(
                json!({"Name": "Operators", "Members": [{"Id": mfa_id, "PrincipalKind": "User"}]}),
            ),
        )
        .await,
        201,
    )
    .await;
    let role_id = role["Id"].as_i64().unwrap();
    assert_eq!(role["Members"][0]["Id"], mfa_id);
    error(
        post(
            &c,
            &emu,
            &admin,
            "Roles",
            Some(json!({"Name": "operators"})),
        )
        .await,
        400,
        50002,
    )
    .await;
    error(
        put(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}"),
            json!({"Id": role_id + 1000, "Name": "y"}),
        )
        .await,
        400,
        60102,
    )
    .await;
    let asset_id = json_of(get(&c, &emu, &admin, "Assets").await, 200).await[0]["Id"]
        .as_i64()
        .unwrap();
    let p = json_of(
        post(
            &c,
            &emu,
            &admin,
            "AccessPolicies",
            Some(json!({"Name": "Operators' passwords", "RoleId": role_id,
                "AccessRequestProperties": {"AccessRequestType": "Password"},
                "ReviewerProperties": {"RequiredReviewers": 1},
                "Reviewers": [{"Id": admin_id}],
                "ScopeItems": [{"Id": asset_id, "ScopeItemType": "Asset"}]})),
        )
        .await,
        201,
    )
    .await;
    let pid = p["Id"].as_i64().unwrap();
    assert_eq!(p["RoleName"], "Operators");
    assert_eq!(p["AssetCount"], 1);
    assert_eq!(p["ScopeItems"][0]["Asset"]["Name"], ASSET_NAME);
    assert_eq!(p["Reviewers"][0]["Name"], ADMIN_USER);
    error(
        post(
            &c,
            &emu,
            &admin,
            "AccessPolicies",
            Some(json!({"Name": "orphan", "RoleId": 999999})),
        )
        .await,
        400,
        50006,
    )
    .await;
    let policies = json_of(
        get(&c, &emu, &admin, &format!("Roles/{role_id}/Policies")).await,
        200,
    )
    .await;
    assert_eq!(policies[0]["Id"], pid);
    let role = json_of(
        get(&c, &emu, &admin, &format!("Roles/{role_id}")).await,
        200,
    )
    .await;
    assert_eq!(role["AccountCount"], 2);
    assert_eq!(role["AssetCount"], 1);
    let mine = json_of(get(&c, &emu, &outsider, "Me/Roles").await, 200).await;
    assert_eq!(mine[0]["Name"], "Operators");

    // The asset scope entitles both accounts' passwords... of the accounts
    // allowing password requests.
    let ents = json_of(
        get(&c, &emu, &outsider, "Me/RequestEntitlements").await,
        200,
    )
    .await;
    assert_eq!(ents.as_array().unwrap().len(), 2, "{ents}");

    // No approval: available at once; the review gates completion.
    let (id, v) = create(&c, &emu, &outsider).await;
    assert_eq!(v["State"], "RequestAvailable");
    assert_eq!(v["RequiredReviewerCount"], 1);
    json_of(
        step(&c, &emu, &outsider, &id, "CheckOutPassword").await,
        200,
    )
    .await;
    json_of(step(&c, &emu, &outsider, &id, "CheckIn").await, 200).await;
    error(step(&c, &emu, &admin, &id, "Review").await, 400, 90400).await;
    let v = json_of(step(&c, &emu, &outsider, &id, "Close").await, 200).await;
    assert_eq!(v["State"], "PendingReview");
    error(step(&c, &emu, &outsider, &id, "Review").await, 403, 60101).await;
    let act = json_of(
        get(&c, &emu, &admin, "Me/ActionableRequests/Reviewer").await,
        200,
    )
    .await;
    assert_eq!(act[0]["Id"], id.as_str());
    let v = json_of(step(&c, &emu, &admin, &id, "Review").await, 200).await;
    assert_eq!(v["State"], "Complete");
    assert_eq!(v["CurrentReviewerCount"], 1);

    // An expired role grants nothing; without the date it does again.
    let mut r = json_of(
        get(&c, &emu, &admin, &format!("Roles/{role_id}")).await,
        200,
    )
    .await;
    r["ExpirationDate"] = json!("2020-01-01T00:00:00Z");
    let r = json_of(
        put(&c, &emu, &admin, &format!("Roles/{role_id}"), r).await,
        200,
    )
    .await;
    assert_eq!(r["IsExpired"], true);
    assert_eq!(
        json_of(
            get(&c, &emu, &outsider, "Me/RequestEntitlements").await,
            200
        )
        .await,
        json!([])
    );
    error(
        post(
            &c,
            &emu,
            &outsider,
            "AccessRequests",
            Some(password_request(&emu)),
        )
        .await,
        403,
        60101,
    )
    .await;
    let mut r = r;
    r["ExpirationDate"] = Value::Null;
    let r = json_of(
        put(&c, &emu, &admin, &format!("Roles/{role_id}"), r).await,
        200,
    )
    .await;
    assert_eq!(r["IsExpired"], false);
    let ents = json_of(
        get(&c, &emu, &outsider, "Me/RequestEntitlements").await,
        200,
    )
    .await;
    assert_eq!(ents.as_array().unwrap().len(), 2);

    // Membership: removed, the outsider may no longer request; added back, again.
    let left = json_of(
        post(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}/Members/Remove"),
            Some(json!([{"Id": mfa_id}])),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(left, json!([]));
    error(
        post(
            &c,
            &emu,
            &outsider,
            "AccessRequests",
            Some(password_request(&emu)),
        )
        .await,
        403,
        60101,
    )
    .await;
    error(
        post(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}/Members/Swap"),
            Some(json!([{"Id": mfa_id}])),
        )
        .await,
        400,
        70000,
    )
    .await;
    let back = json_of(
        post(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}/Members/Add"),
            Some(json!([{"Id": mfa_id}])),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(back[0]["Name"], MFA_USER);
    let members = json_of(
        get(&c, &emu, &admin, &format!("Roles/{role_id}/Members")).await,
        200,
    )
    .await;
    assert_eq!(members, back);
    let set = json_of(
        put(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}/Members"),
            json!([]),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(set, json!([]));
    json_of(
        put(
            &c,
            &emu,
            &admin,
            &format!("Roles/{role_id}/Members"),
            json!([{"Id": mfa_id}]),
        )
        .await,
        200,
    )
    .await;

    // Scope: narrowed to the SSH-key account, the password account leaves it.
    let ssh_id = emu.control().ssh_key_account_id();
    let scope = json_of(
        put(
            &c,
            &emu,
            &admin,
            &format!("AccessPolicies/{pid}/ScopeItems"),
            json!([{"Id": ssh_id, "ScopeItemType": "Account"}]),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(scope[0]["Account"]["Name"], SSH_KEY_ACCOUNT);
    error(
        post(
            &c,
            &emu,
            &outsider,
            "AccessRequests",
            Some(password_request(&emu)),
        )
        .await,
        403,
        60101,
    )
    .await;
    // An approver set added: requests now wait for approval.
    let pw_id = emu.control().password_account_id();
    json_of(
        post(
            &c,
            &emu,
            &admin,
            &format!("AccessPolicies/{pid}/ScopeItems/Add"),
            Some(json!([{"Id": pw_id, "ScopeItemType": "Account"}])),
        )
        .await,
        200,
    )
    .await;
    let sets = json_of(
        post(&c, &emu, &admin, &format!("AccessPolicies/{pid}/ApproverSets/Add"),
            Some(json!([{"RequiredApprovers": 1, "Approvers": [{"Id": admin_id, "PrincipalKind": "User"}]}]))).await,
        200,
    )
    .await;
    assert_eq!(sets[0]["Approvers"][0]["Id"], admin_id);
    let mut full = json_of(
        get(&c, &emu, &admin, &format!("AccessPolicies/{pid}")).await,
        200,
    )
    .await;
    full["ApproverProperties"]["RequireApproval"] = json!(true);
    full["EmergencyAccessProperties"]["AllowEmergencyAccess"] = json!(true);
    let updated = json_of(
        put(&c, &emu, &admin, &format!("AccessPolicies/{pid}"), full).await,
        200,
    )
    .await;
    assert_eq!(updated["ApproverProperties"]["RequireApproval"], true);
    let (id, v) = create(&c, &emu, &outsider).await;
    assert_eq!(v["State"], "PendingApproval");
    assert_eq!(
        v["DurationInMinutes"], 120,
        "the policy does not let the requester choose"
    );
    // Emergency access skips the approval.
    let mut emergency = password_request(&emu);
    emergency["IsEmergency"] = json!(true);
    let e = json_of(
        post(&c, &emu, &outsider, "AccessRequests", Some(emergency)).await,
        200,
    )
    .await;
    assert_eq!(e["State"], "RequestAvailable");
    assert_eq!(e["IsEmergency"], true);
    let sets = json_of(
        get(
            &c,
            &emu,
            &outsider,
            &format!("AccessRequests/{id}/ApproverSet"),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        sets,
        json!([{"RequiredApprovers": 1, "Approvers": [{"Id": admin_id, "DisplayName": ADMIN_USER}]}])
    );

    // Deleting the role takes its policy along.
    assert_eq!(
        c.delete(core(&emu, &format!("Roles/{role_id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        get(&c, &emu, &admin, &format!("AccessPolicies/{pid}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&c, &emu, &admin, &format!("Roles/{role_id}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn expired_requests_wait_for_acknowledgement() {
    let emu = start().await;
    let c = client(&emu);
    let admin = admin_token(&c, &emu).await;
    let req_t = requester_token(&c, &emu).await;
    let mut ws = event_socket(&emu, &admin).await;
    let (id, _) = create(&c, &emu, &req_t).await;
    json_of(step(&c, &emu, &admin, &id, "Approve").await, 200).await;
    json_of(step(&c, &emu, &req_t, &id, "CheckOutPassword").await, 200).await;
    // A finished request does not expire; the checked-out one does.
    let (done, _) = create(&c, &emu, &req_t).await;
    json_of(step(&c, &emu, &req_t, &done, "Cancel").await, 200).await;
    // Over HTTP too (for programs that are not Rust).
    let r = c
        .post(format!("{}/emulator/access-requests/expire", base(&emu)))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await, json!({"expired": 1}));
    assert_eq!(emu.control().expire_access_requests(), 0);
    let v = json_of(
        get(&c, &emu, &req_t, &format!("AccessRequests/{id}")).await,
        200,
    )
    .await;
    assert_eq!(v["State"], "Expired");
    assert_eq!(v["WasExpired"], true);
    assert_eq!(v["NeedsAcknowledgement"], true);
    let closed = json_of(
        get(&c, &emu, &req_t, &format!("AccessRequests/{done}")).await,
        200,
    )
    .await;
    assert_eq!(closed["State"], "Closed");
    error(
        step(&c, &emu, &req_t, &id, "CheckOutPassword").await,
        400,
        90400,
    )
    .await;
    error(step(&c, &emu, &req_t, &id, "CheckIn").await, 400, 90400).await;
    let mine = json_of(
        get(&c, &emu, &req_t, "Me/ActionableRequests/Requester").await,
        200,
    )
    .await;
    assert_eq!(mine[0]["Id"], id.as_str());
    let v = json_of(step(&c, &emu, &req_t, &id, "Acknowledge").await, 200).await;
    assert_eq!(v["State"], "Closed");
    let events = events_until(&mut ws, "AccessRequestExpired").await;
    let (_, expired) = events.last().unwrap();
    assert_eq!(expired["RequestId"], id.as_str());
}
