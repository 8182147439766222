//! The A2A event hub (`/service/a2a/signalr`): `Authorization: A2A key1 key2 ...`
//! and the client certificate.

/// The events the A2A hub delivers, for the accounts of the listener's API keys.
pub const A2A_EVENTS: [&str; 3] = [
    "AssetAccountPasswordUpdated",
    "AssetAccountSshKeyUpdated",
    "AccountApiKeySecretUpdated",
];
