//! One SignalR connection: negotiate, websocket upgrade, handshake, then the
//! read loop with client pings and the dead-connection timer.
//!
//! What differs between hubs (address, Authorization header, how the TLS
//! stream is opened, how to sign in again) sits behind [`HubConnector`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::signalr::{self, FrameReader, Message, NegotiateResponse};
use super::{Event, EventsError, ListenerOptions};
use crate::error::ApiError;
use crate::{Error, Result, SafeguardClient};

/// A byte stream a websocket can run on (TLS over TCP, in practice).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

/// What a hub needs from its owner.
pub(crate) trait HubConnector: Send + Sync + 'static {
    /// `name[:port]` of the appliance.
    fn host(&self) -> &str;
    /// The hub path (`/service/event/signalr`).
    fn hub_path(&self) -> &'static str;
    /// The Authorization header for negotiate and the upgrade.
    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue>>;
    /// Sends `POST url` with the header; the status and body.
    fn negotiate(
        &self,
        url: String,
        authorization: HeaderValue,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes)>>;
    /// Opens a TLS stream to the host for the websocket.
    fn open(&self) -> BoxFuture<'_, Result<BoxIo>>;
    /// Signs in again (after a 401). A no-op where there is no token.
    fn reauthenticate(&self) -> BoxFuture<'_, Result<()>>;
}

/// The user hub over the client's bearer token and rustls settings.
pub(crate) struct UserHub {
    client: SafeguardClient,
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
}

impl UserHub {
    pub(crate) fn new(client: SafeguardClient) -> Self {
        Self {
            client,
            tls: Mutex::new(None),
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut cached = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let config = Arc::new(self.client.tls_options().rustls_config()?);
        *cached = Some(config.clone());
        Ok(config)
    }
}

impl HubConnector for UserHub {
    fn host(&self) -> &str {
        self.client.host()
    }

    fn hub_path(&self) -> &'static str {
        super::USER_HUB_PATH
    }

    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue>> {
        Box::pin(async move {
            let token = self.client.bearer_token().await?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| Error::Config("the user token is not a valid header value".into()))?;
            value.set_sensitive(true);
            Ok(value)
        })
    }

    fn negotiate(
        &self,
        url: String,
        authorization: HeaderValue,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes)>> {
        Box::pin(async move {
            // The negotiate carries the user token: no redirect is followed.
            let limits = self.client.limits();
            let sent = self
                .client
                .secret_http()
                .post(url)
                .header(http::header::AUTHORIZATION, authorization)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::CONTENT_LENGTH, "0")
                .send();
            let label = "POST /service/event/signalr/negotiate";
            let response = limits
                .head(|| label.to_owned(), async {
                    sent.await.map_err(Error::from_reqwest)
                })
                .await?;
            crate::limits::read_body(response, label, limits).await
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<BoxIo>> {
        Box::pin(async move {
            let config = self.tls_config()?;
            let (name, port) = split_host(self.host());
            let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
                .await
                .map_err(|e| EventsError::Connect(format!("{}: {e}", self.host())))?;
            let _ = tcp.set_nodelay(true);
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| Error::Config(format!("bad host name {name:?}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| Error::Tls(crate::error::error_chain(&e)))?;
            Ok(Box::new(tls) as BoxIo)
        })
    }

    fn reauthenticate(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.client.refresh())
    }
}

/// `name[:port]` or `[v6][:port]` into the name (without brackets) and the
/// port (443 when absent).
pub(crate) fn split_host(host: &str) -> (String, u16) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(443);
            return (name.to_owned(), port);
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(p) => (name.to_owned(), p),
            Err(_) => (host.to_owned(), 443),
        },
        _ => (host.to_owned(), 443),
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The listener asked it to stop.
    Stopped,
    /// It broke, timed out or was closed by the hub.
    Failed(Error),
}

/// A connection that has been answered by the handshake.
pub(crate) struct Connection {
    ws: WebSocketStream<BoxIo>,
    reader: FrameReader,
    pending: Vec<Vec<u8>>,
    hub_path: &'static str,
}

/// Negotiates, opens the websocket and completes the handshake, within
/// `options.connect_timeout`.
pub(crate) async fn connect(
    hub: &dyn HubConnector,
    options: &ListenerOptions,
) -> Result<Connection> {
    match tokio::time::timeout(options.connect_timeout, connect_inner(hub, options)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!(
            "connecting to the event hub {} took longer than {:?}",
            hub.hub_path(),
            options.connect_timeout
        ))),
    }
}

async fn connect_inner(hub: &dyn HubConnector, options: &ListenerOptions) -> Result<Connection> {
    let path = hub.hub_path();
    let authorization = hub.authorization().await?;
    let (status, body) = hub
        .negotiate(
            format!("https://{}{path}/negotiate?negotiateVersion=1", hub.host()),
            authorization.clone(),
        )
        .await?;
    if !status.is_success() {
        return Err(Error::from_api(ApiError::from_parts(
            status,
            format!("POST {path}/negotiate"),
            body,
        )));
    }
    let negotiated = NegotiateResponse::parse(&body)?;
    if !negotiated.offers_websockets() {
        return Err(EventsError::WebSocket("the hub does not offer websockets".into()).into());
    }
    let id: String =
        url::form_urlencoded::byte_serialize(negotiated.connection_key().as_bytes()).collect();
    let url = format!("wss://{}{path}?id={id}", hub.host());
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Config(format!("bad hub address {url}: {e}")))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization);
    let io = hub.open().await?;
    let limit = options.max_record_size.max(1024);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit.saturating_mul(4)))
        .max_frame_size(Some(limit.saturating_mul(4)));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|e| upgrade_error(e, path))?;
    ws.send(WsMessage::binary(signalr::handshake_request()))
        .await
        .map_err(ws_error)?;
    let mut reader = FrameReader::new(options.max_record_size);
    loop {
        let records = match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => reader.push(t.as_bytes())?,
            Some(Ok(WsMessage::Binary(b))) => reader.push(&b)?,
            Some(Ok(WsMessage::Close(_))) | None => return Err(EventsError::ConnectionLost.into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_error(e)),
        };
        let mut records = records.into_iter();
        if let Some(first) = records.next() {
            signalr::parse_handshake_response(&first)?;
            return Ok(Connection {
                ws,
                reader,
                pending: records.collect(),
                hub_path: path,
            });
        }
    }
}

fn upgrade_error(e: tungstenite::Error, path: &str) -> Error {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let body = response.body().clone().map(Bytes::from).unwrap_or_default();
            Error::from_api(ApiError::from_parts(status, format!("GET {path}"), body))
        }
        tungstenite::Error::Tls(e) => Error::Tls(e.to_string()),
        other => ws_error(other),
    }
}

fn ws_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            EventsError::ConnectionLost.into()
        }
        other => EventsError::WebSocket(other.to_string()).into(),
    }
}

impl Connection {
    /// Reads until the connection ends or `stop` turns true (or its sender
    /// is dropped), passing events to `events`, pinging every
    /// `ping_interval` and declaring the connection dead after
    /// `server_timeout` of silence.
    pub(crate) async fn run(
        mut self,
        options: &ListenerOptions,
        events: &mpsc::Sender<Event>,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        for record in std::mem::take(&mut self.pending) {
            if let Err(e) = handle_record(&record, events).await {
                return End::Failed(e);
            }
        }
        let ping_frame = Message::Ping.encode();
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(
            Instant::now() + options.ping_interval,
            options.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let dead_at = last_heard + options.server_timeout;
            tokio::select! {
                biased;
                _ = stopped(stop) => {
                    self.close().await;
                    return End::Stopped;
                }
                msg = self.ws.next() => {
                    last_heard = Instant::now();
                    let data = match msg {
                        Some(Ok(WsMessage::Text(t))) => Bytes::from(t),
                        Some(Ok(WsMessage::Binary(b))) => b,
                        Some(Ok(WsMessage::Close(_))) | None => {
                            return End::Failed(EventsError::ConnectionLost.into())
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return End::Failed(ws_error(e)),
                    };
                    let records = match self.reader.push(&data) {
                        Ok(r) => r,
                        Err(e) => return End::Failed(e.into()),
                    };
                    for record in records {
                        if let Err(e) = handle_record(&record, events).await {
                            return End::Failed(e);
                        }
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = self.ws.send(WsMessage::binary(ping_frame.clone())).await {
                        return End::Failed(ws_error(e));
                    }
                }
                _ = tokio::time::sleep_until(dead_at) => {
                    tracing::warn!(hub = self.hub_path, timeout = ?options.server_timeout, "event hub silent; dropping the connection");
                    return End::Failed(EventsError::ServerTimeout(options.server_timeout).into());
                }
            }
        }
    }

    /// Says goodbye politely, but does not wait long for the other side.
    async fn close(&mut self) {
        let bye = Message::Close {
            error: None,
            allow_reconnect: false,
        }
        .encode();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.ws.send(WsMessage::binary(bye)).await;
            let _ = self.ws.close(None).await;
        })
        .await;
    }
}

/// Resolves when `stop` turns true or its sender is dropped.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Parses one record; events go to `events`; a close message ends the connection.
async fn handle_record(record: &[u8], events: &mpsc::Sender<Event>) -> Result<()> {
    match Message::parse(record) {
        Ok(Message::Invocation {
            target, arguments, ..
        }) => {
            let found = Event::from_invocation(&target, &arguments);
            if found.is_empty() {
                tracing::debug!(%target, "ignoring an invocation without events");
            }
            for event in found {
                // A closed channel means the listener is going away.
                let _ = events.send(event).await;
            }
            Ok(())
        }
        Ok(Message::Ping) | Ok(Message::Other { .. }) => Ok(()),
        Ok(Message::Close {
            error,
            allow_reconnect,
        }) => Err(EventsError::ClosedByHub {
            error,
            allow_reconnect,
        }
        .into()),
        Err(e) => {
            // One unreadable record is logged, not fatal: the framing is intact.
            tracing::warn!(error = %e, "ignoring an unreadable SignalR record");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("127.0.0.1:8443"), ("127.0.0.1".into(), 8443));
        assert_eq!(split_host("sg.example.com"), ("sg.example.com".into(), 443));
        assert_eq!(split_host("[::1]:9443"), ("::1".into(), 9443));
        assert_eq!(split_host("[::1]"), ("::1".into(), 443));
        assert_eq!(split_host("::1"), ("::1".into(), 443));
        assert_eq!(split_host("host:notaport"), ("host:notaport".into(), 443));
    }
}
