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
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::listener::EventSender;
use super::signalr::{self, FrameReader, Message, NegotiateResponse};
use super::{Delivery, Event, EventsError, ListenerOptions};
use crate::call_span::CallSpan;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::{Error, Host, Result, SafeguardClient};

/// A byte stream a websocket can run on (TLS over TCP, in practice).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

/// What a hub needs from its owner.
pub(crate) trait HubConnector: Send + Sync + 'static {
    /// The appliance member in use now (for a cluster, it may change
    /// between connections: each connection asks again).
    fn host(&self) -> Host;
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
    /// The owner's limits: `connect_timeout` bounds opening the websocket.
    fn limits(&self) -> Limits;
}

/// The user hub over the client's bearer token and rustls settings.
pub(crate) struct UserHub {
    client: SafeguardClient,
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
    /// The member of the connection being made (a cluster client's hub
    /// chooses one per connection; the appliance otherwise).
    member: Mutex<Option<Host>>,
}

impl UserHub {
    pub(crate) fn new(client: SafeguardClient) -> Self {
        Self {
            client,
            tls: Mutex::new(None),
            member: Mutex::new(None),
        }
    }

    /// Tells a cluster client that the member of this connection failed,
    /// so that the next connection goes to another.
    fn member_failed(&self) {
        self.client.member_failed(&self.host());
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
    fn host(&self) -> Host {
        let member = self.member.lock().unwrap_or_else(|p| p.into_inner());
        member.clone().unwrap_or_else(|| self.client.host().clone())
    }

    fn hub_path(&self) -> &'static str {
        super::USER_HUB_PATH
    }

    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue>> {
        Box::pin(self.client.bearer_header())
    }

    /// A cluster client's hub chooses the member of the connection here, as
    /// the A2A hub does: one that serves reads, and the websocket then goes
    /// to the same one (a SignalR connection id belongs to the member that
    /// issued it).
    fn negotiate(
        &self,
        url: String,
        authorization: HeaderValue,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes)>> {
        Box::pin(async move {
            let member = self.client.reading_host().await;
            let mut url = url::Url::parse(&url)
                .map_err(|e| Error::Config(format!("bad hub address {url}: {e}")))?;
            member.point(&mut url)?;
            *self.member.lock().unwrap_or_else(|p| p.into_inner()) = Some(member);
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
                    sent.await.map_err(|e| {
                        if e.is_connect() {
                            self.member_failed();
                        }
                        Error::from_reqwest(e)
                    })
                })
                .await?;
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                self.member_failed();
            }
            crate::limits::read_body(response, label, limits).await
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<BoxIo>> {
        Box::pin(async move {
            let config = self.tls_config()?;
            let host = self.host();
            // Directly or through the client's proxy (a CONNECT tunnel);
            // TLS runs end to end with the appliance either way.
            let via = self.client.proxy_rules().server_for(host.name());
            let tcp = crate::proxy::connect(via, host.name(), host.port())
                .await
                .map_err(|e| match e {
                    crate::proxy::ConnectFailure::Direct(e) => {
                        self.member_failed();
                        Error::from(EventsError::Connect(format!("{}: {e}", host.endpoint())))
                    }
                    crate::proxy::ConnectFailure::Proxy(p) => p.to_error(),
                })?;
            let server_name = rustls::pki_types::ServerName::try_from(host.name().to_owned())
                .map_err(|e| Error::Config(format!("bad host name {:?}: {e}", host.name())))?;
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

    fn limits(&self) -> Limits {
        *self.client.limits()
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
    let negotiating = CallSpan::new("events", "POST", &format!("{path}/negotiate"));
    let negotiation = async {
        let (status, body) = hub
            .negotiate(
                hub.host()
                    .url(&format!("{path}/negotiate?negotiateVersion=1")),
                authorization.clone(),
            )
            .await?;
        negotiating.status(status.as_u16());
        if !status.is_success() {
            return Err(Error::from_api(ApiError::from_parts(
                status,
                format!("POST {path}/negotiate"),
                body,
            )));
        }
        Ok(body)
    };
    let body = negotiating.run(negotiation, |_| None).await?;
    drop(negotiating);
    let negotiated = NegotiateResponse::parse(&body)?;
    if !negotiated.offers_websockets() {
        return Err(EventsError::WebSocket("the hub does not offer websockets".into()).into());
    }
    let id: String =
        url::form_urlencoded::byte_serialize(negotiated.connection_key().as_bytes()).collect();
    let target = format!("{path}?id={id}");
    // The upgrade: the span's status is 101 once the hub switched protocols.
    let upgrading = CallSpan::new("events", "GET", path);
    let opening = async {
        let opening = open_websocket(hub, &target, &authorization, options);
        match hub.limits().connect_timeout {
            None => opening.await,
            Some(limit) => match tokio::time::timeout(limit, opening).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(format!(
                    "opening the websocket of the event hub {path} (TCP, TLS, upgrade and \
                     handshake) took longer than {limit:?} (Limits::connect_timeout)"
                ))),
            },
        }
    };
    upgrading
        .run(opening, |_| Some(StatusCode::SWITCHING_PROTOCOLS.as_u16()))
        .await
}

/// TCP and TLS, the websocket upgrade, then the SignalR handshake.
async fn open_websocket(
    hub: &dyn HubConnector,
    target: &str,
    authorization: &HeaderValue,
    options: &ListenerOptions,
) -> Result<Connection> {
    let path = hub.hub_path();
    let io = hub.open().await?;
    // The member asked after `open`: the one the stream goes to.
    let io = upgrade(io, &hub.host(), target, authorization, path).await?;
    let limit = options.max_record_size.max(1024);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit.saturating_mul(4)))
        .max_frame_size(Some(limit.saturating_mul(4)));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Client, Some(config)).await;
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

/// The largest error answer to the upgrade read (its `Code` and `Message`).
const MAX_UPGRADE_ANSWER: usize = 64 * 1024;

/// The websocket upgrade of `target` on `io`, by hyper's HTTP/1.1 client
/// (tungstenite's own handshake logs its whole request, the
/// `Authorization` header included, at TRACE). Returns the upgraded stream.
async fn upgrade(
    io: BoxIo,
    host: &Host,
    target: &str,
    authorization: &HeaderValue,
    path: &str,
) -> Result<BoxIo> {
    let key = tungstenite::handshake::client::generate_key();
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(upgrade_failed)?;
    // Drives the connection until the upgrade hands it over.
    let driving = tokio::spawn(conn.with_upgrades());
    let request = http::Request::get(target)
        .header(http::header::HOST, host.authority())
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, key.as_str())
        .header(http::header::AUTHORIZATION, authorization.clone())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| Error::Config(format!("bad hub address {target}: {e}")))?;
    let answer = sender.send_request(request).await;
    let mut answer = match answer {
        Ok(a) => a,
        Err(e) => {
            driving.abort();
            return Err(upgrade_failed(e));
        }
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let body = http_body_util::Limited::new(answer.into_body(), MAX_UPGRADE_ANSWER);
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        driving.abort();
        return Err(Error::from_api(ApiError::from_parts(
            status,
            format!("GET {path}"),
            body,
        )));
    }
    let header = |name: http::header::HeaderName| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if !header(http::header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        || header(http::header::SEC_WEBSOCKET_ACCEPT).as_deref() != Some(accept.as_str())
    {
        driving.abort();
        return Err(
            EventsError::WebSocket("the hub's answer is not a websocket upgrade".into()).into(),
        );
    }
    let upgraded = hyper::upgrade::on(&mut answer)
        .await
        .map_err(upgrade_failed)?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

fn upgrade_failed(e: hyper::Error) -> Error {
    EventsError::WebSocket(format!(
        "the websocket upgrade failed: {}",
        crate::error::error_chain(&e)
    ))
    .into()
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
    ///
    /// It never waits for the handlers: `events` drops what does not fit
    /// (see [`queue`](super::queue)), so the connection keeps reading and
    /// pinging however slow they are.
    pub(crate) async fn run(
        mut self,
        options: &ListenerOptions,
        events: &EventSender,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        for record in std::mem::take(&mut self.pending) {
            if let Err(e) = handle_record(&record, events) {
                return End::Failed(e);
            }
        }
        let ping_frame = Message::Ping.encode();
        let ping_interval = options.ping_interval.max(Duration::from_millis(1));
        let mut last_heard = Instant::now();
        let mut ping =
            tokio::time::interval_at(later(Instant::now(), ping_interval), ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let dead_at = later(last_heard, options.server_timeout);
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
                        if let Err(e) = handle_record(&record, events) {
                            return End::Failed(e);
                        }
                    }
                }
                _ = ping.tick() => {
                    // A hub that stops reading cannot hold the loop: the
                    // send is bounded like the silence.
                    let sent = tokio::time::timeout_at(
                        dead_at,
                        self.ws.send(WsMessage::binary(ping_frame.clone())),
                    );
                    match sent.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Failed(ws_error(e)),
                        Err(_) => {
                            return End::Failed(
                                EventsError::ServerTimeout(options.server_timeout).into(),
                            )
                        }
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

/// `at + after`, or a far future when that does not fit in an `Instant`.
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Resolves when `stop` turns true or its sender is dropped.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Parses one record; events go to `events` (dropped there when its queue
/// is full); a close message ends the connection.
fn handle_record(record: &[u8], events: &EventSender) -> Result<()> {
    match Message::parse(record) {
        Ok(Message::Invocation {
            target, arguments, ..
        }) => {
            let found = Event::from_invocation(&target, &arguments);
            if found.is_empty() {
                tracing::debug!(%target, "ignoring an invocation without events");
            }
            for event in found {
                // Full: counted and reported by the queue. Closed: the
                // listener is going away.
                let size = event.approx_size();
                let _ = events.push(Delivery::Event(event, size), size);
            }
            Ok(())
        }
        Ok(Message::Ping) | Ok(Message::Other { .. }) => Ok(()),
        Ok(Message::Close { error, .. }) => Err(EventsError::ClosedByHub {
            error,
            // Only an explicit `allowReconnect: false` forbids reconnecting.
            // The SignalR clients read a missing field as false, but they
            // reconnect only when asked to; a persistent listener exists to
            // stay connected (as PySafeguard's does after any close), and a
            // server that predates the field (ASP.NET Core before 3.0) would
            // otherwise end it for good with every restart.
            allow_reconnect: signalr::stated_allow_reconnect(record).unwrap_or(true),
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
    use crate::events::listener::{EventListener, DISPATCH_QUEUE};
    use crate::events::{queue, Lagged, ListenerState};
    use proptest::prelude::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A hub at `addr` whose negotiate answers at once; the websocket goes
    /// over plain TCP to `addr`.
    struct FakeHub {
        host: Host,
        limits: Limits,
    }

    impl HubConnector for FakeHub {
        fn host(&self) -> Host {
            self.host.clone()
        }
        fn hub_path(&self) -> &'static str {
            super::super::USER_HUB_PATH
        }
        fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue>> {
            Box::pin(async { Ok(HeaderValue::from_static("Bearer x")) })
        }
        fn negotiate(
            &self,
            _: String,
            _: HeaderValue,
        ) -> BoxFuture<'_, Result<(StatusCode, Bytes)>> {
            Box::pin(async {
                Ok((
                    StatusCode::OK,
                    Bytes::from_static(br#"{"negotiateVersion":1,"connectionToken":"t"}"#),
                ))
            })
        }
        fn open(&self) -> BoxFuture<'_, Result<BoxIo>> {
            Box::pin(async move {
                let tcp = tokio::net::TcpStream::connect((self.host.name(), self.host.port()))
                    .await
                    .map_err(|e| EventsError::Connect(e.to_string()))?;
                Ok(Box::new(tcp) as BoxIo)
            })
        }
        fn reauthenticate(&self) -> BoxFuture<'_, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn limits(&self) -> Limits {
            self.limits
        }
    }

    /// Sends the upgrade to a server that answers `answer` (with
    /// `{accept}` replaced by the key's accept value); the request it read
    /// and the outcome.
    async fn upgrade_against(answer: &'static str) -> (String, Result<BoxIo>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| {
                    l.split_once(": ")
                        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
                        .map(|(_, v)| v)
                })
                .unwrap();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let answer = answer.replace("{accept}", &accept);
            tcp.write_all(answer.as_bytes()).await.unwrap();
            head
        });
        let io: BoxIo = Box::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let auth = crate::secret::header(&["Bearer ", "t0ken"]).unwrap();
        let host = Host::parse("sg.example").unwrap();
        let outcome = upgrade(io, &host, "/hub?id=1", &auth, "/hub").await;
        (server.await.unwrap(), outcome)
    }

    #[tokio::test]
    async fn the_upgrade_carries_the_token_and_is_checked() {
        let (request, outcome) = upgrade_against(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\nframes",
        )
        .await;
        assert!(
            request.starts_with("GET /hub?id=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nHost: sg.example\r\n"), "{request}");
        assert!(request.contains("\r\nAuthorization: Bearer t0ken\r\n"));
        let mut after = Vec::new();
        outcome.unwrap().read_to_end(&mut after).await.unwrap();
        assert_eq!(after, b"frames", "what came after the head is kept");

        let (_, outcome) = upgrade_against(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 21\r\n\r\n{\"Message\":\"expired\"}",
        )
        .await;
        let Err(err) = outcome else {
            panic!("a 401 upgraded")
        };
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("t0ken"));

        let (_, outcome) = upgrade_against(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
        )
        .await;
        assert!(matches!(
            outcome,
            Err(Error::Events(EventsError::WebSocket(_)))
        ));
    }

    /// A server that accepts connections and, when `upgrade`, completes the
    /// websocket upgrade; then it says nothing, ever.
    async fn silent_server(upgrade: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                if upgrade {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        held.push(tokio::spawn(async move {
                            let _ws = ws;
                            std::future::pending::<()>().await
                        }));
                    }
                } else {
                    held.push(tokio::spawn(async move {
                        let _tcp = tcp;
                        std::future::pending::<()>().await
                    }));
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_hub_cannot_hang_start_past_the_connect_limit() {
        for upgrade in [false, true] {
            let addr = silent_server(upgrade).await;
            let hub = FakeHub {
                host: Host::parse(&addr.to_string()).unwrap(),
                limits: Limits::default().connect_timeout(Some(Duration::from_millis(300))),
            };
            // The listener's own limit is far: only the client's limit can end it.
            let listener = EventListener::with_connector(hub)
                .with_options(ListenerOptions::default().connect_timeout(Duration::from_secs(600)));
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(Duration::from_secs(30), listener.start())
                .await
                .unwrap_or_else(|_| panic!("upgrade={upgrade}: start() hung"));
            match result {
                Err(Error::Timeout(m)) => {
                    assert!(m.contains("websocket") && m.contains("300ms"), "{m}")
                }
                other => panic!("upgrade={upgrade}: expected a timeout, got {other:?}"),
            }
            assert!(started.elapsed() >= Duration::from_millis(300));
            assert_eq!(listener.state(), ListenerState::Stopped);
        }
    }

    #[tokio::test]
    async fn without_a_connect_limit_the_listener_limit_still_holds() {
        let addr = silent_server(true).await;
        let hub = FakeHub {
            host: Host::parse(&addr.to_string()).unwrap(),
            limits: Limits::default().without_timeouts(),
        };
        let options = ListenerOptions::default().connect_timeout(Duration::from_millis(300));
        let result = tokio::time::timeout(Duration::from_secs(30), connect(&hub, &options))
            .await
            .expect("connect() hung");
        match result {
            Err(Error::Timeout(m)) => assert!(m.contains("event hub"), "{m}"),
            Err(other) => panic!("expected a timeout, got {other:?}"),
            Ok(_) => panic!("a silent hub answered the handshake"),
        }
    }

    /// Bytes that look like SignalR traffic: event invocations (some big),
    /// close messages, separators, junk.
    fn hub_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"{\"type\":1,\"target\":\"NotifyEventAsync\",\"arguments\":[".to_vec()),
            Just(b"{\"Name\":\"UserCreated\",\"Data\":{\"EventName\":\"X\"}}".to_vec()),
            Just(b"{\"Name\":12,\"Data\":{\"EventName\":\"AssetCreated\"}},".to_vec()),
            (0usize..3000).prop_map(|n| format!(
                "{{\"Name\":\"Big\",\"Data\":{{\"B\":\"{}\"}}}}",
                "x".repeat(n)
            )
            .into_bytes()),
            Just(b"\"{\\\"Name\\\":\\\"InString\\\"}\"".to_vec()),
            Just(b"]}\x1e".to_vec()),
            Just(b"{\"type\":7,\"error\":{\"x\":[1]},\"allowReconnect\":\"yes\"}\x1e".to_vec()),
            Just(b"{\"type\":6}\x1e".to_vec()),
            Just(vec![signalr::RECORD_SEPARATOR]),
            prop::collection::vec(any::<u8>(), 0..16),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the hub sends, split anyhow: no panic, the queue before
        /// the handlers stays within its bounds, and every event is either
        /// queued or counted as dropped.
        #[test]
        fn hub_traffic_never_panics_and_the_queue_stays_bounded(
            data in hub_bytes(),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
            budget in 0usize..20_000,
        ) {
            let dropped = Arc::new(AtomicU64::new(0));
            let (tx, mut rx) = queue::bounded(DISPATCH_QUEUE, budget, dropped.clone(), "test");
            let mut reader = FrameReader::new(4096);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.sort_unstable();
            points.push(data.len());
            let mut start = 0;
            let mut largest = 0usize;
            let mut closed = false;
            for p in points {
                let Ok(records) = reader.push(&data[start..p.max(start)]) else { break };
                start = p.max(start);
                for record in records {
                    if let Ok(Message::Invocation { target, arguments, .. }) = Message::parse(&record) {
                        for e in Event::from_invocation(&target, &arguments) {
                            largest = largest.max(e.approx_size());
                        }
                    }
                    if handle_record(&record, &tx).is_err() {
                        closed = true;
                    }
                    let (_, bytes) = rx.queued();
                    prop_assert!(bytes <= budget.max(largest), "{} > {}", bytes, budget);
                }
                if closed {
                    break;
                }
            }
            drop(tx);
            let mut got = 0u64;
            let mut lost = 0u64;
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            while let std::task::Poll::Ready(Some(item)) = rx.poll_recv(&mut cx) {
                match item {
                    Ok(_) => got += 1,
                    Err(Lagged(n)) => lost += n,
                }
            }
            prop_assert_eq!(lost, dropped.load(std::sync::atomic::Ordering::Relaxed));
            prop_assert!(got > 0 || lost == 0, "an empty queue accepts any event");
        }
    }
}
