//! The A2A event hub (`/service/a2a/signalr`): `Authorization: A2A key1 key2 ...`
//! and the client certificate, over the certificate transport (OpenSSL, so
//! the appliance's post-handshake certificate request is answered on the
//! websocket's connection too).
//!
//! With a context of several cluster members, each connection negotiates
//! through the transport's member failover and opens its websocket to the
//! member that answered the negotiate: a listener whose member went away
//! reconnects to a live one.

/// The events the A2A hub delivers, for the accounts of the listener's API keys.
pub const A2A_EVENTS: [&str; 3] = [
    "AssetAccountPasswordUpdated",
    "AssetAccountSshKeyUpdated",
    "AccountApiKeySecretUpdated",
];

#[cfg(feature = "a2a")]
mod hub {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use http::{HeaderValue, StatusCode};

    use crate::a2a::{A2aContext, ApiKey};
    use crate::cert_transport::CertTransport;
    use crate::events::connection::{BoxIo, HubConnector};
    use crate::events::{EventListener, PersistentEventListener};
    use crate::{Error, Result};

    /// The A2A hub of one context for a set of API keys.
    pub(crate) struct A2aHub {
        transport: Arc<CertTransport>,
        authorization: Result<HeaderValue, String>,
        /// The member that answered the last negotiate: the websocket goes
        /// there (a SignalR connection id belongs to the server that gave it).
        member: Mutex<Option<crate::Host>>,
    }

    impl A2aHub {
        fn new<K: ApiKey>(context: &A2aContext, api_keys: &[K]) -> Self {
            Self {
                transport: context.cert_transport().clone(),
                authorization: authorization(api_keys),
                member: Mutex::new(None),
            }
        }

        /// The member of the last negotiate, else the transport's member in use.
        fn member(&self) -> crate::Host {
            let pinned = self.member.lock().unwrap_or_else(|p| p.into_inner());
            match pinned.as_ref() {
                Some(host) => host.clone(),
                None => self.transport.current_member().clone(),
            }
        }
    }

    /// `A2A key1 key2 ...` as a sensitive header value, built without an
    /// intermediate copy of the keys.
    fn authorization<K: ApiKey>(api_keys: &[K]) -> Result<HeaderValue, String> {
        let mut parts = vec!["A2A"];
        for key in api_keys.iter().map(|k| k.expose_api_key().trim()) {
            if !key.is_empty() {
                parts.extend([" ", key]);
            }
        }
        if parts.len() == 1 {
            return Err("an A2A event listener needs at least one API key".to_owned());
        }
        crate::secret::header(&parts)
            .ok_or_else(|| "an API key is not a valid header value".to_owned())
    }

    impl HubConnector for A2aHub {
        fn host(&self) -> crate::Host {
            self.member()
        }

        fn hub_path(&self) -> &'static str {
            super::super::A2A_HUB_PATH
        }

        fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue>> {
            let value = self.authorization.clone().map_err(Error::Config);
            Box::pin(async move { value })
        }

        fn negotiate(
            &self,
            url: String,
            authorization: HeaderValue,
        ) -> BoxFuture<'_, Result<(StatusCode, Bytes)>> {
            Box::pin(async move {
                let url = url::Url::parse(&url)
                    .map_err(|e| Error::Config(format!("bad hub address {url}: {e}")))?;
                let mut request = reqwest::Request::new(reqwest::Method::POST, url);
                let headers = request.headers_mut();
                headers.insert(http::header::AUTHORIZATION, authorization);
                headers.insert(
                    http::header::ACCEPT,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                // Any member may answer (the transport moves past one that
                // cannot be reached); the websocket follows the one that did.
                let (response, member) = self.transport.execute_on(request).await?;
                *self.member.lock().unwrap_or_else(|p| p.into_inner()) = Some(member.clone());
                crate::limits::read_body(
                    response,
                    "POST /service/a2a/signalr/negotiate",
                    self.transport.limits(),
                )
                .await
            })
        }

        fn open(&self) -> BoxFuture<'_, Result<BoxIo>> {
            Box::pin(async move {
                let stream = self.transport.connect_tls(&self.member()).await?;
                Ok(Box::new(stream) as BoxIo)
            })
        }

        fn reauthenticate(&self) -> BoxFuture<'_, Result<()>> {
            // API keys and the certificate do not expire: nothing to renew.
            Box::pin(async { Ok(()) })
        }

        fn limits(&self) -> crate::limits::Limits {
            *self.transport.limits()
        }
    }

    impl A2aContext {
        /// A listener of the A2A event hub for the accounts of `api_keys`
        /// (one or several; sent as `Authorization: A2A key1 key2 ...`),
        /// presenting this context's client certificate. It delivers the
        /// [`A2A_EVENTS`](crate::events::A2A_EVENTS).
        pub fn event_listener<K: ApiKey>(&self, api_keys: &[K]) -> EventListener {
            EventListener::with_connector(A2aHub::new(self, api_keys))
        }

        /// Like [`event_listener`](Self::event_listener), reconnecting after
        /// every drop.
        pub fn persistent_event_listener<K: ApiKey>(
            &self,
            api_keys: &[K],
        ) -> PersistentEventListener {
            PersistentEventListener::with_connector(A2aHub::new(self, api_keys))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_hub_authorization_is_sensitive_and_names_every_key() {
            let h = authorization(&[" k1 ", "", "k2"]).expect("a header");
            assert_eq!(h.to_str().unwrap(), "A2A k1 k2");
            assert!(h.is_sensitive());
            assert!(authorization::<&str>(&[]).is_err());
            assert!(authorization(&["  "]).is_err());
            let err = authorization(&["k\nsecret"]).unwrap_err();
            assert!(!err.contains("secret"), "the key is never echoed");
        }
    }
}
