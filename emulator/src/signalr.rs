//! ASP.NET Core SignalR (JSON hub protocol) for the user event hub
//! `/service/event/signalr` and the A2A hub `/service/a2a/signalr`, over the
//! three transports ASP.NET Core serves: WebSockets, Server-Sent Events and
//! long polling (the last two with POSTs for what the client sends), per
//! `src/SignalR/docs/specs/TransportProtocols.md` in dotnet/aspnetcore. Every
//! request of every transport is authenticated like the negotiate (bearer
//! token, or client certificate and A2A key), and every transport gets the
//! same events, faults (drop, close, silence, outage) and shutdown.
//!
//! During an A2A hub outage (`Control::a2a_hub_outage`) the A2A hub answers
//! every request 503 (negotiate, websocket upgrade, polls and streams alike)
//! and drops its connections; the user hub is not affected.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use crate::api::{api_error, authorization_denied, bad_method, no_route, ok, Ctx};
use crate::state::{App, Event, HttpHubConn, HttpTransport};

const RS: char = '\u{1e}';

/// Event names the A2A hub forwards.
const A2A_EVENTS: [&str; 3] = [
    "AssetAccountPasswordUpdated",
    "AssetAccountSshKeyUpdated",
    "AccountApiKeySecretUpdated",
];

/// Who is listening.
enum Listener {
    User,
    A2a(HashSet<i64>),
}

async fn authenticate(ctx: &mut Ctx, a2a: bool) -> Result<Listener, Response> {
    if !a2a {
        ctx.user()?;
        return Ok(Listener::User);
    }
    let Some(cert) = ctx.client_certificate().await else {
        return Err(authorization_denied());
    };
    let Some(keys) = crate::api::a2a_keys(ctx) else {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            60108,
            "Authorization is required for this request. Send 'Authorization: A2A <api key> ...'.",
        ));
    };
    let mut accounts = HashSet::new();
    for key in keys {
        let owner = ctx.app.db().api_key_owner(&key);
        let Some((reg, acct)) = owner else {
            return Err(api_error(
                StatusCode::FORBIDDEN,
                60096,
                "Invalid API key or the API key is not authorized for this request.",
            ));
        };
        crate::api::registration_accepts(ctx, reg, &cert)?;
        accounts.insert(acct);
    }
    Ok(Listener::A2a(accounts))
}

pub(crate) async fn handle(ctx: &mut Ctx, a2a: bool) -> Response {
    if a2a && ctx.app.a2a_hub_down() {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            50000,
            "The A2A event service is unavailable (injected outage).",
        );
    }
    let tail: Vec<String> = ctx.lower.iter().skip(3).cloned().collect();
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    match tail.as_slice() {
        ["negotiate"] => {
            if ctx.method() != Method::POST {
                return bad_method(ctx);
            }
            if let Err(r) = authenticate(ctx, a2a).await {
                return r;
            }
            negotiate(ctx)
        }
        [] => {
            let listener = match authenticate(ctx, a2a).await {
                Ok(l) => l,
                Err(r) => return r,
            };
            // How ASP.NET Core's HttpConnectionDispatcher tells the transports
            // apart: a GET with `Accept: text/event-stream` is Server-Sent
            // Events, a websocket upgrade is WebSockets, any other GET is a
            // long poll; POST sends, DELETE ends a long-polling connection.
            let method = ctx.method().clone();
            if method == Method::GET {
                if is_websocket_upgrade(ctx) {
                    websocket(ctx, listener).await
                } else if accepts_event_stream(ctx) {
                    server_sent_events(ctx, listener)
                } else {
                    long_poll(ctx, listener).await
                }
            } else if method == Method::POST {
                send(ctx).await
            } else if method == Method::DELETE {
                delete(ctx)
            } else {
                plain(StatusCode::METHOD_NOT_ALLOWED, "")
            }
        }
        _ => no_route(ctx),
    }
}

/// `POST [hub]/negotiate`: the connection id (and token for version 1) and
/// the three transports, as ASP.NET Core SignalR answers (TransportProtocols.md
/// in dotnet/aspnetcore, "POST [endpoint-base]/negotiate request").
fn negotiate(ctx: &mut Ctx) -> Response {
    let requested = match ctx.q("negotiateversion") {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n.clamp(0, 1),
            // HttpConnectionDispatcher.ProcessNegotiate's answer to a
            // version that is not an integer (a 200 with an `error`).
            Err(_) => {
                return ok(
                    &json!({"error": "The client requested a non-integer protocol version."}),
                )
            }
        },
    };
    let version = if ctx.app.negotiate_v0.load(Ordering::SeqCst) {
        0
    } else {
        requested
    };
    let connection_id = crate::state::random_token(16);
    let token = crate::state::random_token(16);
    // Version 1 connects with the (secret) connectionToken, version 0 with
    // the connectionId.
    let id = if version == 1 { &token } else { &connection_id };
    ctx.app
        .db()
        .signalr_ids
        .insert(id.clone(), std::time::Instant::now());
    let transports = json!([
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]);
    let mut v = json!({"negotiateVersion": version, "connectionId": connection_id,
        "availableTransports": transports});
    if version == 1 {
        v["connectionToken"] = json!(token);
    }
    ok(&v)
}

fn is_websocket_upgrade(ctx: &Ctx) -> bool {
    ctx.header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

fn accepts_event_stream(ctx: &Ctx) -> bool {
    ctx.parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// A `text/plain` answer, as the SignalR dispatcher writes its errors.
fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The mandatory `id` of the HTTP transports (400 without it).
fn connection_id(ctx: &Ctx) -> Result<String, Response> {
    match ctx.q("id").filter(|id| !id.is_empty()) {
        Some(id) => Ok(id.to_string()),
        None => Err(plain(StatusCode::BAD_REQUEST, "Connection ID required")),
    }
}

fn no_connection() -> Response {
    plain(StatusCode::NOT_FOUND, "No Connection with that ID")
}

fn http_conns(app: &App) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HttpHubConn>>> {
    app.hub_http.lock().unwrap_or_else(|p| p.into_inner())
}

async fn websocket(ctx: &mut Ctx, listener: Listener) -> Response {
    if let Some(id) = ctx.q("id") {
        if ctx.app.db().signalr_ids.remove(id).is_none() {
            return no_connection();
        }
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut ctx.parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let app = ctx.app.clone();
    let member = crate::api::cluster::member(ctx);
    upgrade.on_upgrade(move |socket| run(app, Pipe::Ws(Box::new(socket)), listener, member))
}

/// The connection a Server-Sent Events stream or a long poll names: an
/// existing one of the same transport, or a negotiated id whose first
/// transport request this is (the hub starts; `true`).
fn attach(
    ctx: &Ctx,
    transport: HttpTransport,
    listener: Listener,
) -> Result<(Arc<HttpHubConn>, bool), Response> {
    let id = connection_id(ctx)?;
    let app = &ctx.app;
    if let Some(conn) = http_conns(app).get(&id) {
        if conn.transport != transport {
            // HttpConnectionDispatcher.EnsureConnectionStateAsync.
            return Err(plain(
                StatusCode::BAD_REQUEST,
                "Cannot change transports mid-connection",
            ));
        }
        return Ok((conn.clone(), false));
    }
    if app.db().signalr_ids.remove(&id).is_none() {
        return Err(no_connection());
    }
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (poll_gen, _) = watch::channel(0);
    let conn = Arc::new(HttpHubConn {
        transport,
        incoming: Mutex::new(Some(in_tx)),
        outgoing: tokio::sync::Mutex::new(Some(out_rx)),
        poll_gen,
        polls: AtomicUsize::new(0),
        last_poll: Mutex::new(Instant::now()),
        aborted: AtomicBool::new(false),
        ended: AtomicBool::new(false),
    });
    http_conns(app).insert(id.clone(), conn.clone());
    let pipe = Pipe::Http {
        conn: conn.clone(),
        rx: in_rx,
        tx: out_tx,
    };
    let app = app.clone();
    let member = crate::api::cluster::member(ctx);
    tokio::spawn(async move {
        run(app.clone(), pipe, listener, member).await;
        if transport == HttpTransport::ServerSentEvents {
            http_conns(&app).remove(&id);
        }
        // A long-polling connection stays until a poll has seen its end
        // (204); housekeeping removes it otherwise.
    });
    Ok((conn, true))
}

/// `GET [hub]?id=...` with `Accept: text/event-stream`: one response that
/// carries every hub message as an SSE event (`data:` lines and a blank
/// line), after a `:` comment line that ASP.NET Core writes first
/// (ServerSentEventsServerTransport, "Workaround for a Firefox bug where
/// EventSource won't fire the open event").
fn server_sent_events(ctx: &mut Ctx, listener: Listener) -> Response {
    let (conn, _) = match attach(ctx, HttpTransport::ServerSentEvents, listener) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(rx) = conn.outgoing.try_lock().ok().and_then(|mut o| o.take()) else {
        // A second stream for the same connection.
        return plain(StatusCode::CONFLICT, "");
    };
    let opening = futures::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b":\r\n"))
    });
    let events = futures::stream::unfold((rx, conn), |(mut rx, conn)| async move {
        match rx.recv().await {
            Some(msg) => Some((Ok(bytes::Bytes::from(sse_event(&msg))), (rx, conn))),
            None if conn.aborted.load(Ordering::SeqCst) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "connection dropped",
                )),
                (rx, conn),
            )),
            None => None,
        }
    });
    let body = Body::from_stream(opening.chain(events).take_while_ok());
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,no-store"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    r
}

/// One hub message as an SSE event: each line as a `data:` line, then a
/// blank line (ServerSentEventsMessageFormatter).
fn sse_event(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len() + 16);
    for line in msg.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

/// Ends a stream after its first error (which breaks the response).
trait TakeWhileOk: Stream + Sized {
    fn take_while_ok(self) -> futures::stream::BoxStream<'static, Self::Item>;
}

impl<S, T> TakeWhileOk for S
where
    S: Stream<Item = Result<T, std::io::Error>> + Send + 'static,
    T: Send + 'static,
{
    fn take_while_ok(self) -> futures::stream::BoxStream<'static, Self::Item> {
        self.scan(false, |failed, item| {
            let out = if *failed {
                None
            } else {
                *failed = item.is_err();
                Some(item)
            };
            futures::future::ready(out)
        })
        .boxed()
    }
}

/// Long-poll answers carry `application/octet-stream` and no-cache headers
/// (LongPollingServerTransport, HttpConnectionDispatcher.AddNoCacheHeaders).
fn poll_response(status: StatusCode, body: Body) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    if status == StatusCode::OK {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    );
    r
}

/// Counts a poll in progress; when the last one ends the idle clock starts.
struct PollGuard(Arc<HttpHubConn>);

impl PollGuard {
    fn new(conn: &Arc<HttpHubConn>) -> PollGuard {
        conn.polls.fetch_add(1, Ordering::SeqCst);
        PollGuard(conn.clone())
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        *self.0.last_poll.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.polls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `GET [hub]?id=...` (long polling). The first poll of a connection answers
/// 200 empty at once (ASP.NET Core flushes it "to mark the poll as
/// initialized"); later ones answer what the hub sent, 200 empty after the
/// poll timeout, or 204 once the connection has ended. A newer poll
/// supersedes a waiting one (204).
async fn long_poll(ctx: &mut Ctx, listener: Listener) -> Response {
    let (conn, first) = match attach(ctx, HttpTransport::LongPolling, listener) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let _guard = PollGuard::new(&conn);
    if first {
        return poll_response(StatusCode::OK, Body::empty());
    }
    conn.poll_gen.send_modify(|g| *g += 1);
    let mut superseded = conn.poll_gen.subscribe();
    superseded.mark_unchanged();
    let mut out = conn.outgoing.lock().await;
    let Some(rx) = out.as_mut() else {
        return no_connection();
    };
    let timeout = Duration::from_millis(ctx.app.long_poll_timeout_ms.load(Ordering::SeqCst));
    let received = tokio::select! {
        m = rx.recv() => m,
        _ = tokio::time::sleep(timeout) => return poll_response(StatusCode::OK, Body::empty()),
        _ = superseded.changed() => return poll_response(StatusCode::NO_CONTENT, Body::empty()),
    };
    match received {
        Some(mut body) => {
            while let Ok(more) = rx.try_recv() {
                body.push_str(&more);
            }
            poll_response(StatusCode::OK, Body::from(body))
        }
        None => {
            out.take();
            drop(out);
            if let Ok(id) = connection_id(ctx) {
                http_conns(&ctx.app).remove(&id);
            }
            if conn.aborted.load(Ordering::SeqCst) {
                // A dropped connection: the response breaks.
                let broken = futures::stream::once(async {
                    Err::<bytes::Bytes, _>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "connection dropped",
                    ))
                });
                poll_response(StatusCode::OK, Body::from_stream(broken))
            } else {
                poll_response(StatusCode::NO_CONTENT, Body::empty())
            }
        }
    }
}

/// `POST [hub]?id=...`: what the client sends on an HTTP transport (the
/// handshake first, then pings, invocations, close). 200 empty.
async fn send(ctx: &mut Ctx) -> Response {
    let id = match connection_id(ctx) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(conn) = http_conns(&ctx.app).get(&id).cloned() else {
        return no_connection();
    };
    let body = match ctx.bytes().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let sent = conn
        .incoming
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|tx| tx.send(text).is_ok());
    if sent {
        plain(StatusCode::OK, "")
    } else {
        no_connection()
    }
}

/// `DELETE [hub]?id=...`: ends a long-polling connection (202; the waiting
/// poll answers 204). Other transports: 400, as HttpConnectionDispatcher
/// answers.
fn delete(ctx: &mut Ctx) -> Response {
    let id = match connection_id(ctx) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(conn) = http_conns(&ctx.app).get(&id).cloned() else {
        return no_connection();
    };
    if conn.transport != HttpTransport::LongPolling {
        return plain(
            StatusCode::BAD_REQUEST,
            "Cannot terminate this connection using the DELETE endpoint.",
        );
    }
    conn.incoming
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    plain(StatusCode::ACCEPTED, "")
}

/// Splits complete records (terminated by 0x1E) off `buf`.
fn records(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(pos) = buf.find(RS) {
        let rec: String = buf[..pos].to_string();
        buf.drain(..pos + RS.len_utf8());
        if !rec.trim().is_empty() {
            out.push(rec);
        }
    }
    out
}

fn frame(v: &Value) -> String {
    format!("{v}{RS}")
}

/// ASP.NET Core disposes a long-polling connection nobody polls for this
/// long (`HttpConnectionDispatcherOptions`' disconnect timeout, 15 s).
const LONG_POLL_DISCONNECT: Duration = Duration::from_secs(15);

/// The client side of a hub connection: a websocket, or the channels of an
/// HTTP transport.
enum Pipe {
    Ws(Box<WebSocket>),
    Http {
        conn: Arc<HttpHubConn>,
        rx: mpsc::UnboundedReceiver<String>,
        tx: mpsc::UnboundedSender<String>,
    },
}

/// How a hub connection ends.
enum End {
    /// After a close message: a websocket close frame, or a clean end.
    Closed,
    /// Like a broken connection (injected drop, A2A hub outage).
    Dropped,
    /// The client left, or the emulator stops.
    Gone,
}

impl Pipe {
    /// The next text from the client; `None` when the client has gone.
    async fn recv(&mut self) -> Option<String> {
        match self {
            Pipe::Ws(socket) => loop {
                match socket.recv().await {
                    Some(Ok(Message::Text(t))) => return Some(t.as_str().to_string()),
                    Some(Ok(Message::Binary(b))) => {
                        return Some(String::from_utf8_lossy(&b).into_owned())
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
            Pipe::Http { conn, rx, tx } => loop {
                tokio::select! {
                    m = rx.recv() => return m,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        // The event stream's response was dropped, or a
                        // long-polling client stopped polling.
                        let idle = conn.transport == HttpTransport::LongPolling
                            && conn.polls.load(Ordering::SeqCst) == 0
                            && conn.last_poll.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
                                > LONG_POLL_DISCONNECT;
                        if tx.is_closed() || idle {
                            return None;
                        }
                    }
                }
            },
        }
    }

    /// Sends one text; `false` when the client has gone.
    async fn send(&mut self, text: String) -> bool {
        match self {
            Pipe::Ws(socket) => socket.send(Message::Text(text.into())).await.is_ok(),
            Pipe::Http { tx, .. } => tx.send(text).is_ok(),
        }
    }

    async fn end(self, how: End) {
        match self {
            Pipe::Ws(mut socket) => {
                if matches!(how, End::Closed) {
                    let _ = socket.send(Message::Close(None)).await;
                }
            }
            Pipe::Http { conn, .. } => {
                if matches!(how, End::Dropped) {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                conn.ended.store(true, Ordering::SeqCst);
                // Dropping the channels ends the transport's response.
            }
        }
    }
}

async fn run(app: Arc<App>, mut pipe: Pipe, listener: Listener, member: usize) {
    let end = hub(&app, &mut pipe, &listener, member).await;
    pipe.end(end).await;
}

async fn hub(app: &Arc<App>, pipe: &mut Pipe, listener: &Listener, member: usize) -> End {
    let a2a = matches!(listener, Listener::A2a(_));
    let ws = matches!(pipe, Pipe::Ws(_));
    // Subscribed before the outage is checked, so that an outage that starts
    // while this connection opens is seen one way or the other.
    let mut a2a_drop = app.a2a_hub_drop.subscribe();
    if a2a && app.a2a_hub_down() {
        return End::Dropped;
    }
    let mut buf = String::new();
    // Handshake.
    let handshake = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            buf.push_str(&pipe.recv().await?);
            if let Some(first) = records(&mut buf).into_iter().next() {
                return Some(first);
            }
        }
    })
    .await;
    let Ok(Some(first)) = handshake else {
        return End::Gone;
    };
    let parsed: Value = serde_json::from_str(&first).unwrap_or(Value::Null);
    if parsed["protocol"].as_str() != Some("json") {
        let msg = format!(
            "The protocol '{}' is not supported.",
            parsed["protocol"].as_str().unwrap_or_default()
        );
        pipe.send(frame(&json!({"error": msg}))).await;
        return End::Gone;
    }
    if parsed["version"].as_u64().unwrap_or(1) > 1 {
        pipe.send(frame(&json!({"error": "The server does not support version 2 or later of the 'json' protocol."})))
            .await;
        return End::Gone;
    }
    // Subscribed before the handshake is answered: a client that sees the
    // answer (and reports itself connected) can be dropped, and receives
    // the events emitted from then on.
    let mut events = app.events.subscribe();
    let mut drop_rx = app.ws_drop.subscribe();
    let mut close_rx = app.ws_close.subscribe();
    let mut shutdown = app.shutdown.subscribe();
    let mut cluster = app.cluster_changed.subscribe();
    if a2a && app.a2a_hub_down() {
        return End::Dropped;
    }
    if !pipe.send(format!("{{}}{RS}")).await {
        return End::Gone;
    }
    if ws {
        app.websockets.fetch_add(1, Ordering::SeqCst);
    }
    let end = serve(
        app,
        pipe,
        listener,
        &mut buf,
        Subscriptions {
            events: &mut events,
            drop_rx: &mut drop_rx,
            close_rx: &mut close_rx,
            shutdown: &mut shutdown,
            a2a_drop: &mut a2a_drop,
            cluster: &mut cluster,
            member,
        },
    )
    .await;
    if ws {
        app.websockets.fetch_sub(1, Ordering::SeqCst);
    }
    end
}

/// What a connected hub listens to besides its client.
struct Subscriptions<'a> {
    events: &'a mut tokio::sync::broadcast::Receiver<Event>,
    drop_rx: &'a mut watch::Receiver<u64>,
    close_rx: &'a mut watch::Receiver<(u64, Value)>,
    shutdown: &'a mut watch::Receiver<bool>,
    a2a_drop: &'a mut watch::Receiver<u64>,
    /// Changes of the cluster, and the member this hub runs on: the hub
    /// drops when its member stops.
    cluster: &'a mut watch::Receiver<u64>,
    member: usize,
}

async fn serve(
    app: &Arc<App>,
    pipe: &mut Pipe,
    listener: &Listener,
    buf: &mut String,
    subs: Subscriptions<'_>,
) -> End {
    let a2a = matches!(listener, Listener::A2a(_));
    // Long polling has an inherent keep-alive (every poll): ASP.NET Core
    // sends no pings on it.
    let pings =
        !matches!(pipe, Pipe::Http { conn, .. } if conn.transport == HttpTransport::LongPolling);
    let ping_every = Duration::from_millis(app.ping_interval_ms.load(Ordering::SeqCst).max(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            _ = ping.tick(), if pings => {
                if !app.silent.load(Ordering::SeqCst) && !pipe.send(frame(&json!({"type": 6}))).await {
                    return End::Gone;
                }
            }
            ev = subs.events.recv() => {
                let ev: Event = match ev {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return End::Gone,
                };
                if app.silent.load(Ordering::SeqCst) {
                    continue;
                }
                // An event that raced the outage's start: the outage wins.
                if a2a && app.a2a_hub_down() {
                    return End::Dropped;
                }
                let wanted = match listener {
                    Listener::User => true,
                    Listener::A2a(accounts) => {
                        A2A_EVENTS.iter().any(|n| n.eq_ignore_ascii_case(&ev.name))
                            && ev.account_id.is_some_and(|a| accounts.contains(&a))
                    }
                };
                if wanted {
                    let msg = json!({"type": 1, "target": "NotifyEventAsync",
                        "arguments": [{"Name": ev.name, "Data": ev.data}]});
                    if !pipe.send(frame(&msg)).await {
                        return End::Gone;
                    }
                }
            }
            msg = pipe.recv() => {
                let Some(text) = msg else { return End::Gone };
                if app.silent.load(Ordering::SeqCst) {
                    continue;
                }
                buf.push_str(&text);
                let mut close = false;
                for rec in records(buf) {
                    let v: Value = serde_json::from_str(&rec).unwrap_or(Value::Null);
                    match v["type"].as_u64() {
                        Some(7) => close = true,
                        Some(1) | Some(4) => {
                            if let Some(id) = v["invocationId"].as_str() {
                                let target = v["target"].as_str().unwrap_or_default();
                                let reply = json!({"type": 3, "invocationId": id,
                                    "error": format!("Unknown hub method '{target}'")});
                                pipe.send(frame(&reply)).await;
                            }
                        }
                        _ => {}
                    }
                }
                if close {
                    return End::Gone;
                }
            }
            _ = subs.close_rx.changed() => {
                // A hub close message, then the end of the connection.
                let msg = subs.close_rx.borrow_and_update().1.clone();
                pipe.send(frame(&msg)).await;
                return End::Closed;
            }
            _ = subs.drop_rx.changed() => {
                // Dropped without a close frame, like a broken connection.
                return End::Dropped;
            }
            _ = subs.a2a_drop.changed(), if a2a => {
                // The start of an A2A hub outage: dropped the same way.
                return End::Dropped;
            }
            _ = subs.shutdown.changed() => return End::Gone,
            _ = subs.cluster.changed() => {
                let running = app.cluster().members.get(subs.member).is_none_or(|m| m.running);
                if !running {
                    // Its appliance went away: as a broken connection.
                    return End::Dropped;
                }
            }
        }
    }
}
