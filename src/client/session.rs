//! The session behind a [`SafeguardClient`](super::SafeguardClient) and all
//! its clones: sign-in, the token's life cycle (its recorded lifetime, the
//! early refresh, the refresh after a 401), and sending with the token.

use std::future::Future;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::future::Either;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::auth::rsts::{ProviderIds, Sts};
use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::limits::{self, Limits};
use crate::tls::TlsOptions;
use crate::transport::{BoxFuture, Execute};

use super::TOKEN_LIFETIME_HEADER;

/// A user token and the `Authorization` value that carries it, built once
/// per sign-in instead of once per request (one copy of the secret in a
/// header, marked sensitive so that HTTP tracing never prints it).
pub(super) struct Bearer {
    pub(super) token: SecretString,
    header: HeaderValue,
}

impl Bearer {
    fn new(token: SecretString) -> Result<Self> {
        let header = crate::secret::header(&["Bearer ", token.expose_secret()])
            .ok_or_else(|| Error::Config("the user token is not a valid header value".into()))?;
        Ok(Self { token, header })
    }

    /// The `Authorization` value (a clone shares the one copy of the token).
    pub(super) fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// Puts the token on `request`.
    pub(super) fn authorize(&self, request: &mut reqwest::Request) {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
    }
}

/// What a sign-in under the sign-in lock may skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresh {
    /// Sign in whatever happened before (an explicit `login()`, which also
    /// ends a sign-out).
    Force,
    /// Sign in unless another task already did since this generation (the
    /// generation a caller saw when it decided a new token was needed), or
    /// the client was signed out.
    UnlessNewer(u64),
    /// The token is nearly spent but still valid: as `UnlessNewer`, and
    /// not again within [`Session::early_retry`] of a failed early refresh.
    Early(u64),
}

/// The token and what is known of it.
struct TokenState {
    token: Option<Arc<Bearer>>,
    /// Bumped at every sign-in: a refresh after a 401 happens only if no
    /// other task signed in since the failed request was sent.
    generation: u64,
    /// Minutes remaining as last reported, and when.
    lifetime: Option<(u64, Instant)>,
    /// Set by a sign-out, cleared by a sign-in: until then no call signs in
    /// by itself.
    signed_out: bool,
    /// When an early refresh last failed.
    early_refresh_failed: Option<Instant>,
}

/// The token's state, the lock that makes sign-ins single-flight, and
/// what sign-ins learn on the way (the provider ids).
pub(super) struct Tokens {
    state: RwLock<TokenState>,
    sign_in: Mutex<()>,
    providers: ProviderIds,
}

impl Tokens {
    /// No token yet, or the caller's (a [`TokenAuth`](crate::auth::TokenAuth) client).
    pub(super) fn new(initial: Option<SecretString>) -> Result<Self> {
        let token = initial.map(Bearer::new).transpose()?.map(Arc::new);
        Ok(Self {
            state: RwLock::new(TokenState {
                token,
                generation: 0,
                lifetime: None,
                signed_out: false,
                early_refresh_failed: None,
            }),
            sign_in: Mutex::new(()),
            providers: ProviderIds::default(),
        })
    }
}

/// Everything a client's clones share.
pub(crate) struct Session {
    /// The cluster's members and which takes what, for a cluster client.
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
    pub(super) host: Host,
    /// Where [`Service::Management`](super::Service::Management) is
    /// reached, when not at `host`.
    pub(super) management_host: Option<Host>,
    pub(super) http: reqwest::Client,
    /// `http` without redirects, for requests that carry a secret of their own.
    pub(super) secret_http: reqwest::Client,
    pub(super) limits: Limits,
    pub(super) tls: TlsOptions,
    /// The proxy policy, the environment read when the client was built.
    pub(super) proxy: crate::proxy::Rules,
    pub(super) auth: Auth,
    pub(super) api_version: String,
    pub(super) refresh_margin: Duration,
    pub(super) timeout: Option<Duration>,
    pub(super) tokens: Tokens,
}

impl Session {
    /// The token state for reading. Held for a few instructions, never across
    /// an await, so a plain lock is enough; a poisoned lock (a panic while
    /// holding it cannot leave the state half-written) is used as it is.
    fn state(&self) -> RwLockReadGuard<'_, TokenState> {
        self.tokens.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The token state for writing (see [`Session::state`]).
    fn state_mut(&self) -> RwLockWriteGuard<'_, TokenState> {
        self.tokens.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The token held now, if any.
    pub(super) fn token(&self) -> Option<Arc<Bearer>> {
        self.state().token.clone()
    }

    /// The sign-in generation now (see [`Refresh::UnlessNewer`]).
    pub(super) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Signs out: forgets the token and returns it (for the appliance to
    /// invalidate). Under the sign-in lock, so that a sign-in in flight
    /// ends first and its token is the one returned; after it, no call
    /// signs in by itself until [`Refresh::Force`] (`login()`).
    pub(super) async fn sign_out(&self) -> Option<Arc<Bearer>> {
        let _guard = self.tokens.sign_in.lock().await;
        let mut state = self.state_mut();
        // An anonymous client has nothing to sign out of.
        state.signed_out = !matches!(self.auth, Auth::Anonymous);
        state.lifetime = None;
        state.early_refresh_failed = None;
        state.token.take()
    }

    /// Minutes the token has left by the last answer that said so, less the
    /// whole minutes elapsed since; `None` when no answer said so yet.
    pub(super) fn recorded_lifetime(&self) -> Option<u64> {
        self.state()
            .lifetime
            .map(|(minutes, at)| minutes.saturating_sub(at.elapsed().as_secs() / 60))
    }

    /// The error for a strategy that cannot sign in again by itself.
    pub(super) fn cannot_refresh(&self) -> Error {
        Error::CannotRefresh {
            strategy: self.auth.name(),
            reason: self.auth.why_no_refresh(),
        }
    }

    fn sts<'a>(&'a self, host: &'a Host) -> Sts<'a> {
        Sts {
            http: &self.secret_http,
            host,
            limits: &self.limits,
            providers: &self.tokens.providers,
        }
    }

    /// The member a sign-in or an event hub goes to: the builder's host, or
    /// for a cluster client a member that serves reads.
    pub(super) async fn reading_host(&self) -> Host {
        match &self.cluster {
            Some(cluster) => cluster.reading_member(&self.http, &self.limits).await,
            None => self.host.clone(),
        }
    }

    /// Runs the strategy's sign-in and installs the new token. A cluster
    /// client signs in on a member that serves, and on the next one when
    /// that member cannot be reached (nothing was sent to it).
    async fn sign_in(&self) -> Result<Arc<Bearer>> {
        let members = self.cluster.as_ref().map_or(1, |c| c.members().len());
        let mut tries = 0;
        loop {
            let host = self.reading_host().await;
            tries += 1;
            match self.sign_in_at(&host).await {
                Err(Error::Transport(e)) if e.is_connect() && tries < members => {
                    if let Some(cluster) = &self.cluster {
                        cluster.failed(&host, "it could not be reached to sign in");
                    }
                }
                signed_in => return signed_in,
            }
        }
    }

    /// [`Session::sign_in`] through the rSTS of `host`.
    async fn sign_in_at(&self, host: &Host) -> Result<Arc<Bearer>> {
        let span =
            tracing::info_span!("safeguard.sign_in", strategy = self.auth.name(), host = %host);
        let signed_in = async {
            let sts = self.sts(host);
            let sts_token = match &self.auth {
                Auth::Anonymous | Auth::Token(_) => return Err(self.cannot_refresh()),
                Auth::Password(a) => sts.password(a).await?,
                Auth::Pkce(a) => sts.pkce(a).await?,
                Auth::DeviceCode(a) => sts.device_code(a).await?,
                Auth::BrowserPkce(a) => sts.browser_pkce(a).await?,
                Auth::Certificate(a) => {
                    sts.certificate(a, &self.tls, &self.proxy, self.timeout)
                        .await?
                }
            };
            let user_token = Arc::new(Bearer::new(sts.login_response(&sts_token).await?)?);
            let mut state = self.state_mut();
            state.token = Some(user_token.clone());
            state.generation += 1;
            state.lifetime = None;
            state.signed_out = false;
            state.early_refresh_failed = None;
            tracing::info!("signed in");
            Ok(user_token)
        }
        .instrument(span)
        .await;
        if signed_in.is_err() {
            // The provider may have been renamed or removed: look it up
            // again next time.
            self.tokens.providers.forget();
        }
        signed_in
    }

    /// How long after a failed early refresh the next is tried: a quarter
    /// of the refresh margin (30 s by default), at least a second. Calls
    /// meanwhile use the current token without waiting for a sign-in.
    fn early_retry(&self) -> Duration {
        (self.refresh_margin / 4).max(Duration::from_secs(1))
    }

    /// Whether the token is nearly spent, by the last reported lifetime,
    /// and an early refresh is worth trying now.
    fn early_refresh_due(&self, state: &TokenState) -> bool {
        self.auth.can_refresh()
            && state.lifetime.is_some_and(|(minutes, at)| {
                time_left(minutes, at.elapsed()) <= self.refresh_margin
            })
            && state
                .early_refresh_failed
                .is_none_or(|at| at.elapsed() >= self.early_retry())
    }

    /// Signs in under the sign-in lock, or takes the token another task
    /// got meanwhile (see [`Refresh`]).
    ///
    /// Boxed: the sign-in conversations make a future of kilobytes, and
    /// every request's future would otherwise carry (and copy) that much
    /// for a path it almost never takes.
    pub(super) fn refresh(&self, how: Refresh) -> BoxFuture<'_, Result<Arc<Bearer>>> {
        Box::pin(async move {
            let _guard = self.tokens.sign_in.lock().await;
            if let Refresh::UnlessNewer(seen) | Refresh::Early(seen) = how {
                let state = self.state();
                if state.signed_out {
                    return Err(Error::SignedOut);
                }
                if let Some(t) = &state.token {
                    // Another task signed in meanwhile, or (early) one
                    // failed to a moment ago: the token held is the answer.
                    let early_not_due =
                        matches!(how, Refresh::Early(_)) && !self.early_refresh_due(&state);
                    if state.generation != seen || early_not_due {
                        return Ok(t.clone());
                    }
                }
            }
            let signed_in = self.sign_in().await;
            if signed_in.is_err() && matches!(how, Refresh::Early(_)) {
                self.state_mut().early_refresh_failed = Some(Instant::now());
            }
            signed_in
        })
    }

    /// The token to send now: signs in when there is none (unless signed
    /// out), refreshes when the appliance said it is nearly spent. Returns
    /// the token and its generation.
    ///
    /// A failed early refresh fails no call: the current token is still
    /// valid, so it is sent (with a warning), and the refresh is tried
    /// again after [`Session::early_retry`] or after a 401. Only the call
    /// that starts an early refresh waits for it; calls meanwhile send the
    /// current token.
    pub(super) async fn current_token(&self) -> Result<(Arc<Bearer>, u64)> {
        let (token, generation, due, signed_out) = {
            let state = self.state();
            let due = self.early_refresh_due(&state);
            (state.token.clone(), state.generation, due, state.signed_out)
        };
        match token {
            Some(t) if !due => Ok((t, generation)),
            // A sign-in is in flight: the current token is still valid, and
            // no call queues behind a slow (or failing) STS.
            Some(current) if self.tokens.sign_in.try_lock().is_err() => Ok((current, generation)),
            Some(current) => match self.refresh(Refresh::Early(generation)).await {
                Ok(t) => Ok((t, self.generation())),
                Err(Error::SignedOut) => Err(Error::SignedOut),
                Err(e) => {
                    // `Error`'s messages carry no secret.
                    tracing::warn!(
                        error = %e,
                        retry_in = ?self.early_retry(),
                        "the early token refresh failed; the current token, still valid, is used"
                    );
                    Ok((current, generation))
                }
            },
            None if matches!(self.auth, Auth::Anonymous) => Err(self.cannot_refresh()),
            None if signed_out => Err(Error::SignedOut),
            None => {
                let t = self.refresh(Refresh::UnlessNewer(generation)).await?;
                Ok((t, self.generation()))
            }
        }
    }

    /// Records the token lifetime an answer reports ([`TOKEN_LIFETIME_HEADER`]).
    fn note_token_lifetime(&self, response: &reqwest::Response) {
        let Some(m) = lifetime_minutes(response.headers()) else {
            return;
        };
        // Almost every answer repeats the minutes already recorded: keep the
        // first sighting (it under-estimates what is left, so a refresh can
        // only come early) and take the write lock only when they change,
        // so concurrent calls do not queue on it.
        let unchanged = |state: &TokenState| state.lifetime.is_some_and(|(seen, _)| seen == m);
        if unchanged(&self.state()) {
            return;
        }
        let mut state = self.state_mut();
        if !unchanged(&state) {
            state.lifetime = Some((m, Instant::now()));
        }
    }

    /// [`Session::send`], or without the token when `anonymous` (the
    /// management service: no token is sent and no sign-in happens).
    pub(super) async fn send_as(
        &self,
        request: reqwest::Request,
        streamed: bool,
        anonymous: bool,
    ) -> Result<reqwest::Response> {
        if anonymous {
            self.execute_within_limits(request, streamed).await
        } else {
            self.send(request, streamed).await
        }
    }

    /// Sends with the bearer token; on a 401, signs in again (once,
    /// single-flight) and resends when the body can be replayed.
    ///
    /// `streamed`: the answer's body goes to the caller unread (its head and
    /// its silences are then bounded here); otherwise the caller reads it
    /// whole within the answer timeout.
    pub(super) async fn send(
        &self,
        mut request: reqwest::Request,
        streamed: bool,
    ) -> Result<reqwest::Response> {
        if matches!(self.auth, Auth::Anonymous) {
            return self.execute_within_limits(request, streamed).await;
        }
        let (token, generation) = self.current_token().await?;
        // Only a strategy that can sign in again replays after a 401.
        let replay = if self.auth.can_refresh() {
            request.try_clone()
        } else {
            None
        };
        token.authorize(&mut request);
        let response = self.execute_within_limits(request, streamed).await?;
        self.note_token_lifetime(&response);
        // No replay copy: a strategy that cannot sign in again, or a
        // streamed body.
        match replay.filter(|_| response.status() == StatusCode::UNAUTHORIZED) {
            Some(replay) => {
                // The 401's connection goes back while the sign-in runs.
                drop(response);
                self.resend(replay, generation, streamed).await
            }
            None => Ok(response),
        }
    }

    /// After a 401: signs in again (unless another task did since
    /// `generation`) and sends `replay`. Boxed, like [`Session::refresh`]:
    /// a second request's future in every request's for the rare 401.
    fn resend(
        &self,
        mut replay: reqwest::Request,
        generation: u64,
        streamed: bool,
    ) -> BoxFuture<'_, Result<reqwest::Response>> {
        Box::pin(async move {
            tracing::debug!("401: signing in again");
            let token = self.refresh(Refresh::UnlessNewer(generation)).await?;
            token.authorize(&mut replay);
            let response = self.execute_within_limits(replay, streamed).await?;
            self.note_token_lifetime(&response);
            Ok(response)
        })
    }

    /// Sends `request` within the [`Limits`] (see [`limits::send_within`]);
    /// a cluster client's to the member its route calls for (see
    /// [`crate::cluster`]).
    pub(super) fn execute_within_limits(
        &self,
        request: reqwest::Request,
        streamed: bool,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send + '_ {
        match &self.cluster {
            None => Either::Left(limits::send_within(
                &self.http,
                &self.limits,
                self.host.authority(),
                request,
                streamed,
            )),
            Some(cluster) => {
                Either::Right(
                    Box::pin(cluster.send(&self.http, &self.limits, request, streamed))
                        as BoxFuture<'_, _>,
                )
            }
        }
    }
}

impl Execute for Session {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        self.send(request, false)
    }

    fn execute_stream(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        self.send(request, true)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// What is left of a token that had `minutes` left `elapsed` ago; any
/// number of minutes a server reports gives an answer (saturating).
fn time_left(minutes: u64, elapsed: Duration) -> Duration {
    Duration::from_secs(minutes.saturating_mul(60)).saturating_sub(elapsed)
}

/// The minutes left on the token, as an answer's [`TOKEN_LIFETIME_HEADER`] says.
pub(super) fn lifetime_minutes(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(TOKEN_LIFETIME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SafeguardClient;
    use reqwest::Method;

    proptest::proptest! {
        /// Whatever a server puts in `X-TokenLifetimeRemaining`, reading it
        /// and computing what is left neither panics nor wraps around.
        #[test]
        fn any_token_lifetime_header_is_read_without_panic(value in "\\PC{0,30}", minutes in proptest::num::u64::ANY, elapsed in 0u64..(1 << 40)) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(TOKEN_LIFETIME_HEADER, v);
                let _ = lifetime_minutes(&headers);
            }
            headers.insert(TOKEN_LIFETIME_HEADER, HeaderValue::from(minutes));
            proptest::prop_assert_eq!(lifetime_minutes(&headers), Some(minutes));
            let left = time_left(minutes, Duration::from_secs(elapsed));
            let expected = u128::from(minutes) * 60;
            proptest::prop_assert!(
                u128::from(left.as_secs()) == expected.saturating_sub(u128::from(elapsed)).min(u128::from(u64::MAX))
                    || minutes.checked_mul(60).is_none(),
                "{} minutes, {} s elapsed: {:?} left", minutes, elapsed, left
            );
        }
    }

    #[test]
    fn the_bearer_header_is_built_once_and_marked_sensitive() {
        let bearer = Bearer::new(SecretString::from("abc.def")).unwrap();
        assert_eq!(bearer.header.to_str().unwrap(), "Bearer abc.def");
        assert!(bearer.header.is_sensitive());
        let mut request = reqwest::Request::new(
            Method::GET,
            "https://sg.example/service/core/v4/Me".parse().unwrap(),
        );
        bearer.authorize(&mut request);
        bearer.authorize(&mut request);
        let values: Vec<_> = request.headers().get_all(AUTHORIZATION).iter().collect();
        assert_eq!(values.len(), 1, "authorizing twice replaces, never appends");
        assert!(values[0].is_sensitive());
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_configuration_error() {
        let err = Bearer::new(SecretString::from("line\nbreak"))
            .err()
            .expect("a newline cannot go in a header");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(
            !format!("{err}").contains("break"),
            "the token is never echoed"
        );
    }

    #[test]
    fn a_request_future_does_not_carry_the_sign_in_conversations() {
        let client = SafeguardClient::builder("sg.example").build().unwrap();
        let request = reqwest::Request::new(Method::GET, "https://sg.example/x".parse().unwrap());
        let sign_in = std::mem::size_of_val(&client.session.sign_in());
        let send = std::mem::size_of_val(&client.session.send(request, false));
        // Every call moves its future into a box: the rare sign-in after a
        // 401 is a box of its own instead of kilobytes in every request.
        assert!(
            send < sign_in,
            "a request's future ({send} B) holds the sign-in's ({sign_in} B)"
        );
    }
}
