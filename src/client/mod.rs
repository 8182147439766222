//! [`SafeguardClient`]: the handle a service keeps for its whole life.
//!
//! It signs in with an [`Auth`] strategy, keeps the user token (as a
//! `SecretString`), refreshes it when the appliance says it is nearly spent
//! or answers 401 (once, single-flight: a hundred concurrent calls that hit
//! expiry cause one sign-in), and offers both the generated typed clients
//! ([`core`](SafeguardClient::core), ...) and generic verbs for any endpoint
//! ([`get`](SafeguardClient::get), [`stream`](SafeguardClient::stream),
//! [`download`](SafeguardClient::download), [`upload`](SafeguardClient::upload),
//! [`paginate`](SafeguardClient::paginate)).
//!
//! One idea per file:
//!
//! - this file: the handle, [`Service`], sign-in and sign-out calls, the
//!   typed clients, the generic verbs and paging;
//! - `builder.rs`: [`SafeguardClientBuilder`];
//! - `session.rs`: the session behind every clone (sign-in, the token's
//!   life cycle, refresh, sending and replaying after a 401);
//! - `request.rs`: [`RequestBuilder`] and [`ApiResponse`];
//! - `transfer.rs`: [`download`](SafeguardClient::download),
//!   [`upload`](SafeguardClient::upload) and [`UploadSource`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::auth::Auth;
use crate::error::{DecodeError, Error, Result};
use crate::host::Host;
use crate::limits::Limits;
use crate::tls::TlsOptions;
#[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
use crate::transport::Transport;

mod builder;
mod request;
mod session;
mod transfer;

pub use builder::SafeguardClientBuilder;
pub use request::{ApiResponse, RequestBuilder};
pub use transfer::{UploadProgress, UploadSource};

use session::{Refresh, Session};

/// The header in which the appliance reports the token's remaining minutes.
pub const TOKEN_LIFETIME_HEADER: &str = "X-TokenLifetimeRemaining";

/// An appliance service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `core`: most of the product.
    Core,
    /// `appliance`: appliance-local operations (backups, networking, time).
    Appliance,
    /// `notification`: anonymous status.
    Notification,
    /// `a2a`: application to application.
    A2a,
    /// `management`: the anonymous disaster-recovery and support interface,
    /// which keeps answering while the appliance is in maintenance. Calls to
    /// it never carry the user token and never sign in (the vendor's .NET
    /// SDK reaches it with an anonymous authenticator,
    /// `ManagementServiceAuthenticator.IsAnonymous`). There is no generated
    /// client for it: use the generic verbs. On hardware it listens on the
    /// MGMT interface and on cloud VMs on port 9337 (.NET `Service.Management`
    /// doc comment): name that address with
    /// [`SafeguardClientBuilder::management_host`].
    Management,
}

impl Service {
    /// The service's path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Core => "core",
            Service::Appliance => "appliance",
            Service::Notification => "notification",
            Service::A2a => "a2a",
            Service::Management => "management",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client of one Safeguard appliance. Cheap to clone; clones share the
/// connection pool and the token.
///
/// ```no_run
/// use safeguard_sdk::{auth::PkceAuth, SafeguardClient, Service};
/// # async fn run() -> safeguard_sdk::Result<()> {
/// let client = SafeguardClient::builder("safeguard.example.com")
///     .auth(PkceAuth::new("local", "Admin", "Admin123"))
///     .ca_file("ca.pem")?
///     .build()?;
/// client.login().await?;
/// let me: serde_json::Value = client.get(Service::Core, "Me").send().await?.json().await?;
/// let users = client.core().users_get_users().limit(10).send().await?;
/// println!("{} sees {} users", me["DisplayName"], users.len());
/// client.logout().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SafeguardClient {
    session: Arc<Session>,
    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    generated: Arc<Generated>,
}

/// The generated clients of a [`SafeguardClient`], made on first use: a
/// typed call then costs no allocation for its client. They hold the
/// session, not the `SafeguardClient`, so nothing here forms a cycle.
#[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
#[derive(Default)]
struct Generated {
    #[cfg(feature = "core")]
    core: std::sync::OnceLock<crate::api::core::Client>,
    #[cfg(feature = "appliance")]
    appliance: std::sync::OnceLock<crate::api::appliance::Client>,
    #[cfg(feature = "notification")]
    notification: std::sync::OnceLock<crate::api::notification::Client>,
}

impl fmt::Debug for SafeguardClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeguardClient")
            .field("host", &self.session.host)
            .field("auth", &self.session.auth)
            .field("tls", &self.session.tls)
            .finish_non_exhaustive()
    }
}

impl SafeguardClient {
    /// Starts building a client of the appliance at `host` (a name or an
    /// address, with an optional `:port`).
    pub fn builder(host: impl Into<String>) -> SafeguardClientBuilder {
        SafeguardClientBuilder::new(host.into())
    }

    /// A client over a session (see [`SafeguardClientBuilder::build`]).
    fn with_session(session: Session) -> Self {
        Self {
            session: Arc::new(session),
            #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
            generated: Arc::default(),
        }
    }

    /// The appliance.
    pub fn host(&self) -> &Host {
        &self.session.host
    }

    /// What the client knows of its cluster's members (see
    /// [`SafeguardClientBuilder::cluster`]); empty for a client of one
    /// appliance.
    pub fn cluster_members(&self) -> Vec<crate::cluster::ClusterMember> {
        self.session
            .cluster
            .as_ref()
            .map(|c| c.members())
            .unwrap_or_default()
    }

    /// Checks the cluster's members now (their role and whether they
    /// answer) and looks for members not known yet; a no-op for a client of
    /// one appliance. Requests do this by themselves after a failure and
    /// every [`ClusterOptions::refresh_every`](crate::cluster::ClusterOptions::refresh_every).
    pub async fn refresh_cluster(&self) {
        if let Some(cluster) = &self.session.cluster {
            cluster
                .check(&self.session.http, &self.session.limits)
                .await;
        }
    }

    /// The member an event hub connects to: the appliance, or a cluster
    /// member that serves reads.
    pub(crate) async fn reading_host(&self) -> Host {
        self.session.reading_host().await
    }

    /// Tells a cluster client that `host` failed (an event hub could not
    /// reach it), so that the next choice is another member.
    pub(crate) fn member_failed(&self, host: &Host) {
        if let Some(cluster) = &self.session.cluster {
            cluster.failed(host, "an event hub could not reach it");
        }
    }

    /// The API version of the generic verbs.
    pub fn api_version(&self) -> &str {
        &self.session.api_version
    }

    /// The sign-in strategy.
    pub fn auth(&self) -> &Auth {
        &self.session.auth
    }

    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.session.http
    }

    /// `http` without redirects, for requests that carry a secret of their
    /// own (the events negotiate).
    pub(crate) fn secret_http(&self) -> &reqwest::Client {
        &self.session.secret_http
    }

    /// What the client accepts from the appliance.
    pub fn limits(&self) -> &Limits {
        &self.session.limits
    }

    pub(crate) fn tls_options(&self) -> &TlsOptions {
        &self.session.tls
    }

    /// The proxy policy, the environment read when the client was built.
    pub(crate) fn proxy_rules(&self) -> &crate::proxy::Rules {
        &self.session.proxy
    }

    /// The sensitive `Authorization: Bearer <user token>` value, signing in
    /// first when there is none (the token's one header copy, shared).
    pub(crate) async fn bearer_header(&self) -> Result<reqwest::header::HeaderValue> {
        self.session
            .current_token()
            .await
            .map(|(t, _)| t.header().clone())
    }

    /// Signs in now, also after a [`logout`](Self::logout) (a no-op for
    /// anonymous clients; for a token client it only checks that the token
    /// is there, which it no longer is after a logout:
    /// [`Error::CannotRefresh`]).
    pub async fn login(&self) -> Result<()> {
        match self.session.auth {
            Auth::Anonymous => Ok(()),
            Auth::Token(_) if self.session.token().is_none() => Err(self.session.cannot_refresh()),
            Auth::Token(_) => Ok(()),
            _ => self.session.refresh(Refresh::Force).await.map(|_| ()),
        }
    }

    /// Signs in again now. Strategies that cannot sign in without a person or
    /// a new token answer [`Error::CannotRefresh`]; after a
    /// [`logout`](Self::logout), [`Error::SignedOut`].
    pub async fn refresh(&self) -> Result<()> {
        if !self.session.auth.can_refresh() {
            return Err(self.session.cannot_refresh());
        }
        let generation = self.session.generation();
        self.session
            .refresh(Refresh::UnlessNewer(generation))
            .await
            .map(|_| ())
    }

    /// The current user token, if signed in (as PySafeguard's `user_token`);
    /// it stays wrapped as a secret.
    pub async fn user_token(&self) -> Option<SecretString> {
        self.session
            .token()
            .map(|t| SecretString::from(t.token.expose_secret().to_owned()))
    }

    /// Whether the client holds a user token.
    pub async fn is_signed_in(&self) -> bool {
        self.session.token().is_some()
    }

    /// Signs out: the appliance invalidates the token, and the client forgets
    /// it. A sign-in in flight ends first (and its token is the one signed
    /// out). Until [`login`](Self::login), calls fail with
    /// [`Error::SignedOut`] instead of signing in again by themselves.
    pub async fn logout(&self) -> Result<()> {
        let Some(token) = self.session.sign_out().await else {
            return Ok(());
        };
        let mut request = self
            .session
            .http
            .post(self.url(Service::Core, "Token/Logout"))
            .header(reqwest::header::ACCEPT, "application/json")
            .build()
            .map_err(Error::from_reqwest)?;
        token.authorize(&mut request);
        let limits = &self.session.limits;
        limits
            .head(|| "POST Token/Logout".to_owned(), async {
                let response = self.session.execute_within_limits(request, false).await?;
                request::check(response, limits).await.map(|_| ())
            })
            .await
    }

    /// Minutes the current token has left, as the appliance reports them
    /// ([`TOKEN_LIFETIME_HEADER`] on authenticated answers): from the last
    /// answer that said so, less the minutes elapsed since, or with a
    /// request when no answer said so yet; `None` when not signed in.
    pub async fn token_lifetime_remaining(&self) -> Result<Option<u64>> {
        if self.session.token().is_none() {
            return Ok(None);
        }
        if let Some(minutes) = self.session.recorded_lifetime() {
            return Ok(Some(minutes));
        }
        let response = self.get(Service::Core, "LoginMessage").send_raw().await?;
        Ok(session::lifetime_minutes(response.headers()))
    }

    /// `https://host/service/{service}/{api_version}/{path}` (for
    /// [`Service::Management`], the
    /// [management host](SafeguardClientBuilder::management_host) when one
    /// was named).
    pub fn url(&self, service: Service, path: &str) -> String {
        let host = match (&self.session.management_host, service) {
            (Some(management), Service::Management) => management,
            _ => &self.session.host,
        };
        format!(
            "https://{}/service/{}/{}/{}",
            host.authority(),
            service,
            self.session.api_version,
            path.trim_start_matches('/')
        )
    }

    /// A generated client of `service` over this client's connections and
    /// session; `with_inner` is that client's constructor.
    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    fn make_generated<C>(
        &self,
        service: Service,
        with_inner: fn(&str, reqwest::Client, safeguard_api::Inner) -> C,
    ) -> C {
        with_inner(
            &self.session.host.url(&format!("/service/{service}")),
            self.http().clone(),
            Transport::new(self.session.clone()).into(),
        )
    }

    /// The generated client of the core service, sharing this client's
    /// connections and token. Made on first use and shared by this client's
    /// clones; clone it to keep one of your own.
    #[cfg(feature = "core")]
    pub fn core(&self) -> &crate::api::core::Client {
        self.generated.core.get_or_init(|| {
            self.make_generated(Service::Core, crate::api::core::Client::with_inner)
        })
    }

    /// The generated client of the appliance service (see [`SafeguardClient::core`]).
    #[cfg(feature = "appliance")]
    pub fn appliance(&self) -> &crate::api::appliance::Client {
        self.generated.appliance.get_or_init(|| {
            self.make_generated(
                Service::Appliance,
                crate::api::appliance::Client::with_inner,
            )
        })
    }

    /// The generated client of the notification service (see [`SafeguardClient::core`]).
    #[cfg(feature = "notification")]
    pub fn notification(&self) -> &crate::api::notification::Client {
        self.generated.notification.get_or_init(|| {
            self.make_generated(
                Service::Notification,
                crate::api::notification::Client::with_inner,
            )
        })
    }

    /// A request of any method to any endpoint of a service. A request of
    /// [`Service::Management`] is sent without the token.
    pub fn request(&self, method: Method, service: Service, path: &str) -> RequestBuilder {
        let request = RequestBuilder::new(self.clone(), method, self.url(service, path));
        if service == Service::Management {
            request.anonymous()
        } else {
            request
        }
    }

    /// `GET` an endpoint.
    pub fn get(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::GET, service, path)
    }

    /// `POST` to an endpoint.
    pub fn post(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::POST, service, path)
    }

    /// `PUT` to an endpoint.
    pub fn put(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::PUT, service, path)
    }

    /// `DELETE` an endpoint.
    pub fn delete(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, service, path)
    }

    /// Sends a request and returns the answer with its body unread, for
    /// streaming large bodies (`bytes_stream`). Error answers fail.
    pub async fn stream(
        &self,
        method: Method,
        service: Service,
        path: &str,
    ) -> Result<ApiResponse> {
        self.request(method, service, path).send().await
    }

    /// Every item of a list endpoint, fetched page by page (`page`/`limit`
    /// query parameters) as a `Stream`, stopping after the last page.
    pub fn paginate<T: DeserializeOwned + Send + 'static>(
        &self,
        service: Service,
        path: &str,
        page_size: u32,
        query: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let client = self.clone();
        let path = path.to_owned();
        let max_pages = self.session.limits.max_pages;
        crate::paging::walk(page_size, max_pages, move |page, limit| {
            let client = client.clone();
            let path = path.clone();
            let query = query.clone();
            async move {
                let response = client
                    .get(service, &path)
                    .query(&query)?
                    .query(&[("page", page.to_string()), ("limit", limit.to_string())])?
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                let items = serde_json::from_slice::<Vec<T>>(&body)
                    .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))?;
                Ok((items, crate::paging::PageIds::of_json(&body)))
            }
        })
    }
}

/// Default of [`SafeguardClientBuilder::refresh_margin`].
const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "notification")]
    #[test]
    fn generated_clients_are_made_once_and_shared_by_clones() {
        let client = SafeguardClient::builder("sg.example").build().unwrap();
        let first: *const _ = client.notification();
        assert!(std::ptr::eq(first, client.notification()));
        assert!(std::ptr::eq(first, client.clone().notification()));
        let other = SafeguardClient::builder("sg.example").build().unwrap();
        assert!(!std::ptr::eq(first, other.notification()));
    }

    #[test]
    fn urls_join_host_service_version_and_path() {
        let client = SafeguardClient::builder("sg.example:8443").build().unwrap();
        assert_eq!(
            client.url(Service::Core, "/Users"),
            "https://sg.example:8443/service/core/v4/Users"
        );
        assert_eq!(
            client.url(Service::Management, "ApplianceStatus"),
            "https://sg.example:8443/service/management/v4/ApplianceStatus"
        );
        let client = SafeguardClient::builder("sg.example")
            .management_host("10.0.0.5:9337")
            .build()
            .unwrap();
        assert_eq!(
            client.url(Service::Management, "ApplianceStatus"),
            "https://10.0.0.5:9337/service/management/v4/ApplianceStatus"
        );
        assert_eq!(
            client.url(Service::Appliance, "SystemTime"),
            "https://sg.example/service/appliance/v4/SystemTime"
        );
        assert!(SafeguardClient::builder("sg.example")
            .management_host("10.0.0.5/x")
            .build()
            .is_err());
    }
}
