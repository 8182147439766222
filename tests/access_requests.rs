//! The privileged-access workflow through the typed core client, against the
//! emulator's seeded entitlement: the plain user requests the password
//! account's password, the administrator approves, the requester checks the
//! password out, checks in and closes; out-of-order steps surface as typed
//! errors with the appliance's status and code.

mod common;

use safeguard_emulator as emu_consts;
use safeguard_sdk::api::core::types::{
    AccessRequestRole, AccessRequestRoleKnown, AccessRequestState, AccessRequestStateKnown,
    AccessRequestType, AccessRequestTypeKnown, NewAccessRequest,
};
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::Error;

fn state(s: &Option<AccessRequestState>) -> String {
    s.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn is(s: &Option<AccessRequestState>, known: AccessRequestStateKnown) -> bool {
    state(s) == AccessRequestState::from(known).to_string()
}

#[tokio::test]
async fn request_approve_check_out_check_in_close_with_the_typed_client() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let requester = common::client(
        &emu,
        PkceAuth::new("local", emu_consts::PLAIN_USER, emu_consts::PLAIN_PASSWORD),
    );
    requester.login().await.unwrap();

    // The requester's entitlement: the seeded password account.
    let ents = requester
        .core()
        .me_get_access_request_entitlements()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ents.len(), 1, "{ents:?}");
    let account = ents[0].account.as_ref().unwrap();
    assert_eq!(account.name.as_deref(), Some(emu_consts::PASSWORD_ACCOUNT));
    let account_id = account.id.unwrap();

    let created = requester
        .core()
        .access_requests_create()
        .body(NewAccessRequest {
            account_id: Some(account_id),
            asset_id: account.asset_id,
            access_request_type: Some(AccessRequestType::from(AccessRequestTypeKnown::Password)),
            reason_comment: Some("typed client test".into()),
            requested_duration_hours: Some(1),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        is(&created.state, AccessRequestStateKnown::PendingApproval),
        "{created:?}"
    );
    assert_eq!(created.required_approval_count, Some(1));
    assert_eq!(created.duration_in_minutes, Some(60));
    let id = created.id.clone().unwrap();

    // The requester may not approve their own request: 403.
    let err: Error = requester
        .core()
        .access_requests_approve()
        .id(id.clone())
        .body("self")
        .send()
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, Error::Authorization(_)), "{err:?}");

    // The approver sees it and approves.
    let actionable = admin
        .core()
        .me_get_actionable_requests()
        .send()
        .await
        .unwrap()
        .into_inner();
    let waiting = actionable.approver.unwrap_or_default();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id.as_deref(), Some(id.as_str()));
    let approved = admin
        .core()
        .access_requests_approve()
        .id(id.clone())
        .body("approved")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        is(&approved.state, AccessRequestStateKnown::RequestAvailable),
        "{approved:?}"
    );
    assert_eq!(approved.approved_by_me, Some(true));

    // Check out: the password, typed as a string.
    let password = requester
        .core()
        .access_requests_check_out_password()
        .id(id.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(password, emu_consts::PASSWORD_ACCOUNT_PASSWORD);
    let now = requester
        .core()
        .access_requests_get_by_id()
        .id(id.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(is(&now.state, AccessRequestStateKnown::PasswordCheckedOut));
    assert_eq!(now.was_checked_out, Some(true));

    let checked_in = requester
        .core()
        .access_requests_check_in()
        .id(id.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(is(
        &checked_in.state,
        AccessRequestStateKnown::RequestCheckedIn
    ));
    let closed = requester
        .core()
        .access_requests_close()
        .id(id.clone())
        .body("done")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        is(&closed.state, AccessRequestStateKnown::Complete),
        "{closed:?}"
    );

    // The requester's buckets, the approver set, and the administrator's
    // views of roles and policies all decode as their typed answers.
    let mine = requester
        .core()
        .me_get_actionable_requests_by_request_role()
        .access_request_role(AccessRequestRole::from(AccessRequestRoleKnown::Requester))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        mine.is_empty(),
        "a completed request needs no action: {mine:?}"
    );
    let sets = requester
        .core()
        .access_requests_get_approver_set()
        .id(id.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sets[0].required_approvers, Some(1));
    let assets = requester
        .core()
        .me_get_access_request_assets()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(assets[0].name.as_deref(), Some(emu_consts::ASSET_NAME));
    let asset = requester
        .core()
        .me_get_access_request_asset()
        .asset_id(assets[0].id.unwrap())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asset.id, assets[0].id);
    let my_roles = requester
        .core()
        .me_get_my_roles()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(my_roles.len(), 1);
    let roles = admin.core().roles_get().send().await.unwrap().into_inner();
    let role_id = roles[0].id.unwrap();
    assert_eq!(roles[0].id, my_roles[0].id);
    assert_eq!(roles[0].user_count, Some(1));
    let members = admin
        .core()
        .roles_get_members()
        .id(role_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members[0].name.as_deref(), Some(emu_consts::PLAIN_USER));
    let policies = admin
        .core()
        .roles_get_password_policies()
        .id(role_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    let policy_id = policies[0].id.unwrap();
    assert_eq!(policies[0].role_id, Some(role_id));
    let policy = admin
        .core()
        .access_policies_get_access_policy_by_id()
        .id(policy_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    let approvers = &policy.approver_sets.as_ref().unwrap()[0];
    assert_eq!(
        approvers.approvers.as_ref().unwrap()[0].name.as_deref(),
        Some(emu_consts::ADMIN_USER)
    );
    let scope = admin
        .core()
        .access_policies_get_scope_items()
        .id(policy_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scope[0].id, Some(account_id));
    let all = admin
        .core()
        .access_policies_get_access_policies()
        .send()
        .await
        .unwrap()
        .into_inner();
    // The requester's policy and the administrator's two break-glass ones.
    assert_eq!(all.len(), 3);
    let listed = admin
        .core()
        .access_requests_get()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.len(), 1);

    // Out of order: a closed request cannot be checked out again.
    let err: Error = requester
        .core()
        .access_requests_check_out_password()
        .id(id.clone())
        .send()
        .await
        .unwrap_err()
        .into();
    let api = err.api_error().expect("an appliance error");
    assert_eq!(api.status.as_u16(), 400, "{err:?}");
    assert_eq!(api.code, Some(90400), "{err:?}");
}
