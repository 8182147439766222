//! Joining SPS to SPP ([`SpsClient::join_spp`]) against the emulator over
//! real HTTPS: the join end to end, and the failure of every step as a typed
//! error naming the step.
//!
//! Run: `cargo test --no-default-features --features notification,a2a --test sps_join`.

mod common;

use std::time::Duration;

use safeguard_emulator::sps::SpsFault;
use safeguard_emulator::Emulator;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::sps::{JoinOptions, JoinStep, SpsClient, SpsError};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{Error, ExposeSecret, SafeguardClient, Service};
use serde_json::{json, Value};

fn tls(emu: &Emulator) -> TlsOptions {
    TlsOptions::default().with_ca_pem(emu.ca_pem()).expect("CA")
}

fn sps(emu: &Emulator) -> SpsClient {
    let c = emu.connection().sps.clone();
    SpsClient::builder(emu.sps_host())
        .credentials(c.user, c.password)
        .tls(tls(emu))
        .build()
        .expect("SPS client")
}

/// Options trusting the emulator's CA, verifying at once.
fn options(emu: &Emulator) -> JoinOptions {
    JoinOptions::default()
        .tls(tls(emu))
        .verify(Some(Duration::from_secs(5)))
}

/// The step and the underlying error of a failed join.
fn failed_step(e: &Error) -> (JoinStep, &Error) {
    match e {
        Error::Sps(SpsError::Join { step, source }) => (*step, source.as_ref()),
        other => panic!("not a join error: {other:?}"),
    }
}

async fn session_modules(spp: &SafeguardClient) -> Vec<Value> {
    spp.get(Service::Core, "Cluster/SessionModules")
        .send_json()
        .await
        .expect("SPP lists its session modules")
}

#[tokio::test]
async fn join_end_to_end_and_spp_lists_the_sps() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let sps = sps(&emu);
    assert!(!emu.sps().clustering_enabled() && !emu.sps().is_promoted());
    assert!(session_modules(&spp).await.is_empty());

    let report = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect("the join succeeds");
    assert!(report.enabled_clustering && report.promoted);
    assert_eq!(report.spp_address, emu.spp_host());
    // The verified chain: the server certificate, then the emulator's CA.
    let chain = openssl::x509::X509::stack_from_pem(report.spp_chain.as_bytes()).unwrap();
    assert_eq!(chain.len(), 2);
    let ca = openssl::x509::X509::from_pem(emu.ca_pem().as_bytes()).unwrap();
    assert_eq!(chain[1].to_der().unwrap(), ca.to_der().unwrap());
    assert_eq!(
        report.sps_answer["spp"].as_str(),
        Some(emu.spp_host().as_str())
    );

    // SPS: clustering on, promoted, joined (committed: no transaction left open).
    let sps_emu = emu.sps();
    assert!(sps_emu.clustering_enabled() && sps_emu.is_promoted());
    assert_eq!(sps_emu.joined_spp(), Some(emu.spp_host()));
    assert!(!sps.in_transaction());
    let cluster = sps
        .get_json("configuration/local_services/cluster")
        .await
        .unwrap();
    assert_eq!(cluster["body"]["enabled"], json!(true));
    assert_eq!(
        cluster["body"]["listen_address"].as_str(),
        Some("nic1.interfaces.8f1c0d2e.addresses.5a9e7b31")
    );

    // SPP: lists the SPS under Cluster/SessionModules, and by id.
    let module = report.session_module.expect("verified");
    assert_eq!(module["NodeId"].as_str(), Some(sps_emu.node_id().as_str()));
    assert_eq!(module["SpsNetworkAddress"], json!("127.0.0.1"));
    assert_eq!(module["Trusted"], json!(true));
    let listed = session_modules(&spp).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["NodeId"], module["NodeId"]);
    let id = module["Id"].as_i64().expect("an id");
    let by_id: Value = spp
        .get(Service::Core, &format!("Cluster/SessionModules/{id}"))
        .send_json()
        .await
        .expect("by id");
    assert_eq!(by_id["NodeId"], module["NodeId"]);
    assert_eq!(
        by_id["SppSslPemEncodedCertificateChain"].as_str(),
        Some(report.spp_chain.as_str())
    );

    // Again: clustering and promotion are already done; SPP refuses with
    // 60657 (already joined), relayed by SPS.
    let e = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("already joined");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Join);
    assert_eq!(e.sps().and_then(SpsError::join_step), Some(JoinStep::Join));
    let api = source.sps_error().expect("an SPS answer");
    assert_eq!(api.details["response"]["Code"], json!(60657));
    assert_eq!(session_modules(&spp).await.len(), 1);
    // The token never shows in the error.
    let token = spp.user_token().await.unwrap();
    let shown = format!("{e:?} {e}");
    assert!(!shown.contains(token.expose_secret()));

    // safeguard-ps finds a session cluster with this filter
    // (`Get-SafeguardSessionCluster`) and splits it with a DELETE
    // (`Split-SafeguardSessionCluster`); the SPS can then join again.
    let found: Vec<Value> = spp
        .get(Service::Core, "Cluster/SessionModules")
        .query(&[
            (
                "filter",
                "(SpsHostName eq '127.0.0.1') or (SpsNetworkAddress eq '127.0.0.1')",
            ),
            ("fields", "Id,NodeId,SpsNetworkAddress,Trusted"),
        ])
        .unwrap()
        .send_json()
        .await
        .expect("filtered");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["Id"], json!(id));
    spp.delete(Service::Core, &format!("Cluster/SessionModules/{id}"))
        .send()
        .await
        .expect("split");
    assert!(session_modules(&spp).await.is_empty());
    let again = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect("joins again");
    assert!(!again.enabled_clustering && !again.promoted);
    assert_eq!(session_modules(&spp).await.len(), 1);
}

#[tokio::test]
async fn an_untrusted_spp_certificate_fails_the_chain_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let e = sps(&emu)
        .join_spp(
            &spp,
            JoinOptions::default().tls(TlsOptions::default().with_system_roots(false)),
        )
        .await
        .expect_err("the emulator's CA is not trusted");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::SppChain);
    assert!(matches!(source, Error::Tls(_)), "{source:?}");
    assert!(!emu.sps().clustering_enabled());
}

#[tokio::test]
async fn an_spp_client_that_cannot_sign_in_fails_the_token_step() {
    let emu = common::emulator().await;
    let spp = common::client(&emu, PkceAuth::new("local", "Admin", "wrong".to_string()));
    let e = sps(&emu)
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("no token");
    let (step, _) = failed_step(&e);
    assert_eq!(step, JoinStep::SppToken);
}

#[tokio::test]
async fn an_unreadable_cluster_configuration_fails_its_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    emu.sps().inject_fault(SpsFault::ConfigTreeNotAvailable);
    let e = sps(&emu)
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("fault");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::ReadClusterConfig);
    assert!(matches!(
        source,
        Error::Sps(SpsError::ConfigTreeNotAvailable(_))
    ));
}

#[tokio::test]
async fn no_nic_address_for_sps_fails_the_listen_address_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let sps = sps(&emu);
    sps.transaction(|tx| async move {
        tx.put::<_, Value>(
            "configuration/network/nics/nic1",
            &json!({"interfaces": {"@order": ["a"], "a": {"addresses": {"@order": ["b"], "b": "10.9.8.7/24"}}}}),
        )
        .await
        .map(|_| ())
    })
    .await
    .expect("nic1 moved");
    let e = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("no NIC address");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::FindListenAddress);
    assert!(matches!(source, Error::Config(_)));
    // Given explicitly, it is not searched for.
    sps.join_spp(
        &spp,
        options(&emu).listen_address("nic1.interfaces.a.addresses.b"),
    )
    .await
    .expect("joins with the given listen address");
}

#[tokio::test]
async fn a_locked_configuration_fails_enabling_clustering() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let sps = sps(&emu);
    let e = sps
        .join_spp(&spp, options(&emu).enable_clustering(false))
        .await
        .expect_err("not allowed to enable");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::EnableClustering);
    assert!(matches!(source, Error::Config(_)));

    emu.sps().set_web_gui_lock(true);
    let e = sps.join_spp(&spp, options(&emu)).await.expect_err("locked");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::EnableClustering);
    assert!(matches!(
        source,
        Error::Sps(SpsError::WebGuiOrRpcApiConfigInProgress(_))
    ));
    assert!(!emu.sps().clustering_enabled() && !sps.in_transaction());
}

#[tokio::test]
async fn an_unavailable_cluster_status_fails_its_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    emu.sps().inject_fault(SpsFault::ClusterStatusUnavailable);
    let e = sps(&emu)
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("fault");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::ReadClusterStatus);
    assert!(matches!(
        source,
        Error::Sps(SpsError::ConfigTreeNotAvailable(_))
    ));
    // Clustering was enabled (committed) before the failure.
    assert!(emu.sps().clustering_enabled() && !emu.sps().is_promoted());
}

#[tokio::test]
async fn a_node_that_cannot_be_promoted_fails_the_promote_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let sps = sps(&emu);
    let e = sps
        .join_spp(&spp, options(&emu).promote(false))
        .await
        .expect_err("not allowed to promote");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Promote);
    assert!(matches!(source, Error::Config(_)));

    emu.sps().set_promotable(false);
    let e = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("refused");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Promote);
    assert!(matches!(source, Error::Sps(SpsError::SemanticError(_))));
    // The promotion's transaction was rolled back.
    assert!(!emu.sps().is_promoted() && !sps.in_transaction());

    emu.sps().set_promotable(true);
    let report = sps.join_spp(&spp, options(&emu)).await.expect("joins");
    assert!(!report.enabled_clustering && report.promoted);
}

#[tokio::test]
async fn spp_refusals_fail_the_join_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    let sps = sps(&emu);

    // A chain that is not SPP's.
    let (cert, _) = common::self_signed("not-spp");
    let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
    let e = sps
        .join_spp(&spp, options(&emu).spp_chain(pem))
        .await
        .expect_err("wrong chain");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Join);
    assert!(matches!(source, Error::Sps(SpsError::SemanticError(_))));
    assert_eq!(
        source.sps_error().and_then(|a| a.path()),
        Some("/api/cluster/spp/spp_cert_chain")
    );

    // An address SPS cannot reach SPP at.
    let e = sps
        .join_spp(&spp, options(&emu).spp_address("127.0.0.1:1"))
        .await
        .expect_err("wrong address");
    let (step, _) = failed_step(&e);
    assert_eq!(step, JoinStep::Join);

    // An expired token: SPS relays SPP's 401.
    emu.control().expire_all_tokens();
    let e = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("expired token");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Join);
    let api = source.sps_error().expect("an SPS answer");
    assert_eq!(api.details["status"], json!(401));
    assert_eq!(api.details["response"]["Code"], json!(60108));
    assert!(emu.sps().joined_spp().is_none());
}

#[tokio::test]
async fn spp_failing_to_list_fails_the_verify_step() {
    let emu = common::emulator().await;
    let spp = common::admin(&emu).await;
    // The chain is read with a handshake and the token is held: the first
    // HTTP request to SPP is the verification.
    emu.control().fail_next(1, 500);
    let e = sps(&emu)
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("SPP fails");
    let (step, source) = failed_step(&e);
    assert_eq!(step, JoinStep::Verify);
    assert_eq!(source.status().map(|s| s.as_u16()), Some(500));
    // The join itself went through.
    assert_eq!(emu.sps().joined_spp(), Some(emu.spp_host()));
    assert_eq!(session_modules(&spp).await.len(), 1);
}

#[test]
fn the_blocking_facade_joins() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt.block_on(common::emulator());
    let admin = &emu.connection().spp.admin;
    let spp = safeguard_sdk::blocking::SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()
        .unwrap();
    spp.login().unwrap();
    let c = emu.connection().sps.clone();
    let sps = safeguard_sdk::sps::blocking::SpsClient::builder(emu.sps_host())
        .credentials(c.user, c.password)
        .tls(tls(&emu))
        .build()
        .unwrap();
    let report = sps.join_spp(&spp, options(&emu)).expect("joins");
    assert!(report.session_module.is_some());
    assert_eq!(emu.sps().joined_spp(), Some(emu.spp_host()));
}

/// The `details` of an SPS answer relaying SPP's refusal at the join step.
fn relayed(e: &Error) -> (i64, i64) {
    let (step, source) = failed_step(e);
    assert_eq!(step, JoinStep::Join, "{e}");
    let api = source.sps_error().expect("an SPS answer");
    (
        api.details["status"].as_i64().expect("SPP's status"),
        api.details["response"]["Code"]
            .as_i64()
            .expect("SPP's code"),
    )
}

#[tokio::test]
async fn spp_side_refusals_are_relayed_by_sps() {
    let emu = common::emulator_with(|c| c.cluster_members = 2).await;
    let sps = sps(&emu);

    // A token whose user is not an appliance administrator.
    let auditor = common::client(
        &emu,
        PkceAuth::new("local", "Auditor", "Auditor1!".to_string()),
    );
    auditor.login().await.expect("the auditor signs in");
    let e = sps
        .join_spp(&auditor, options(&emu))
        .await
        .expect_err("not an appliance administrator");
    assert_eq!(relayed(&e), (403, 60101));

    let spp = common::admin(&emu).await;
    // A replica's address.
    let replica = emu.member_hosts()[1].clone();
    let e = sps
        .join_spp(&spp, options(&emu).spp_address(replica))
        .await
        .expect_err("a replica");
    assert_eq!(relayed(&e), (403, 60418));

    // A cluster-wide operation in progress.
    emu.lock_cluster("Patch", Duration::from_secs(30));
    let e = sps.join_spp(&spp, options(&emu)).await.expect_err("locked");
    assert_eq!(relayed(&e), (400, 60910));

    // Maintenance.
    emu.control().set_maintenance(true);
    let e = sps
        .join_spp(&spp, options(&emu))
        .await
        .expect_err("maintenance");
    assert_eq!(relayed(&e), (503, 50000));
    assert!(emu.sps().joined_spp().is_none());
}
