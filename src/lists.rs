//! Typed page streams for the list calls services use most: users, assets,
//! asset accounts and access requests.
//!
//! Each walks the generated call page by page (see [`crate::paging`]) with an
//! optional filter (the appliance's syntax: `Name eq 'x' and Disabled eq false`).
//!
//! ```no_run
//! # async fn run(client: safeguard_sdk::SafeguardClient) -> safeguard_sdk::Result<()> {
//! use futures::TryStreamExt;
//! let disabled: Vec<_> = client.list_users(Some("Disabled eq true")).try_collect().await?;
//! # Ok(()) }
//! ```

use futures::Stream;

use crate::api::core::types;
use crate::error::Result;
use crate::paging::pages;
use crate::SafeguardClient;

/// The page size of the typed list streams.
pub const PAGE_SIZE: u32 = 200;

macro_rules! typed_list {
    ($(#[$doc:meta])* $name:ident, $call:ident, $item:ty) => {
        $(#[$doc])*
        pub fn $name(&self, filter: Option<&str>) -> impl Stream<Item = Result<$item>> + Send + 'static {
            let client = self.clone();
            let filter = filter.map(str::to_owned);
            pages(PAGE_SIZE, move |page, limit| {
                let client = client.clone();
                let filter = filter.clone();
                async move {
                    let core = client.core();
                    let mut call = core.$call().page(page as i32).limit(limit as i32);
                    if let Some(f) = filter {
                        call = call.filter(f);
                    }
                    Ok(call.send().await?.into_inner())
                }
            })
        }
    };
}

impl SafeguardClient {
    typed_list!(
        /// Every user (`GET core/v4/Users`), page by page.
        list_users, users_get_users, types::User
    );
    typed_list!(
        /// Every asset (`GET core/v4/Assets`), page by page.
        list_assets, assets_get_all_assets, types::Asset
    );
    typed_list!(
        /// Every asset account (`GET core/v4/AssetAccounts`), page by page.
        list_asset_accounts, asset_accounts_get_all_accounts, types::AssetAccount
    );
    typed_list!(
        /// Every access request visible to the caller (`GET core/v4/AccessRequests`), page by page.
        list_access_requests, access_requests_get, types::AccessRequest
    );
}
