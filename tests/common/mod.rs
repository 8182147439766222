//! Shared set-up of the integration tests: an emulator on loopback and
//! clients that trust its CA.
#![allow(dead_code)]

use safeguard_emulator::{Emulator, EmulatorConfig};
use safeguard_sdk::auth::{Auth, PkceAuth};
use safeguard_sdk::SafeguardClient;

/// Starts an emulator with `config` adjusted by `adjust`.
pub async fn emulator_with(adjust: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut config = EmulatorConfig::default();
    adjust(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// Starts an emulator with the default configuration.
pub async fn emulator() -> Emulator {
    emulator_with(|_| {}).await
}

/// A client of `emu` that trusts its CA and signs in with `auth`.
pub fn client(emu: &Emulator, auth: impl Into<Auth>) -> SafeguardClient {
    SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .expect("CA parses")
        .auth(auth)
        .build()
        .expect("client builds")
}

/// A client of `emu` signed in as the seeded admin with PKCE.
pub async fn admin(emu: &Emulator) -> SafeguardClient {
    let c = &emu.connection().spp.admin;
    let client = client(
        emu,
        PkceAuth::new("local", c.user.clone(), c.password.clone()),
    );
    client.login().await.expect("admin signs in");
    client
}

/// A fresh self-signed certificate (EC P-256) and its key, signed by nobody
/// the emulator knows.
pub fn self_signed(
    common_name: &str,
) -> (
    openssl::x509::X509,
    openssl::pkey::PKey<openssl::pkey::Private>,
) {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", common_name).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}
