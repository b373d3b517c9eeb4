//! The local API Gateway: HTTP requests become HTTP API (payload 2.0) events and WebSocket
//! connections become `$connect`/`$disconnect` events for the very handlers Lambda runs; their
//! answers become HTTP responses. Bodies over the limit are refused before they are read.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::invoke as invoke_json;
use axum::body::{Body, to_bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use notes_handlers::domain::AppError;
use notes_handlers::domain::clock::now_millis;
use notes_handlers::embedded::LocalNotifier;
use notes_handlers::http::MAX_BODY_BYTES;
use notes_handlers::{Deps, HandlerName, router};
use serde_json::{Value, json};

use super::frontend::Frontend;
use super::queue::LocalQueue;

#[derive(Clone)]
pub struct Gateway {
    pub deps: Arc<Deps>,
    pub notifier: LocalNotifier,
    pub queue: LocalQueue,
    pub frontend: Arc<Frontend>,
    pub move_tasks: super::aws_api::SharedMoveTasks,
    pub guard: Arc<super::guard::Guard>,
    pub counters: Arc<super::history::DevCounters>,
    pub sockets: Arc<Sockets>,
}

/// A default for `--max-sockets-per-user`: a quarter of the connection cap, at most 50, so that one
/// user (one stolen or scripted token) cannot hold every connection.
pub fn default_sockets_per_user(max_connections: usize) -> usize {
    (max_connections / 4).clamp(1, 50)
}

/// The WebSockets open, per user, and how long one may stay idle (`--ws-idle-timeout`, by default
/// API Gateway's 10 minutes with no message either way).
pub struct Sockets {
    idle_timeout: Duration,
    per_user: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One user's place among their open sockets, given back when dropped.
pub struct UserSocket {
    sockets: Arc<Sockets>,
    username: String,
}

impl Sockets {
    pub fn new(idle_timeout: Duration, per_user: usize) -> Sockets {
        Sockets {
            idle_timeout,
            per_user,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more socket of `username`, or `None` when they hold `per_user` already.
    pub fn claim(self: &Arc<Self>, username: &str) -> Option<UserSocket> {
        let mut open = self.open.lock().expect("sockets lock");
        let count = open.entry(username.to_owned()).or_default();
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(UserSocket {
            sockets: self.clone(),
            username: username.to_owned(),
        })
    }
}

impl Drop for UserSocket {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().expect("sockets lock");
        if let Some(count) = open.get_mut(&self.username) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.username);
            }
        }
    }
}

fn request_id() -> String {
    STANDARD.encode(rand::random::<[u8; 12]>())
}

fn context(handler: HandlerName, request_id: &str) -> lambda_runtime::Context {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = request_id.to_owned();
    ctx.invoked_function_arn = format!("arn:aws:lambda:local:000000000000:function:{handler}");
    ctx
}

/// `a=1&b=2&a=3` as API Gateway passes it: repeated keys joined with commas.
/// Decoded as a form (`+` is a space, `%XX` a byte, a malformed escape kept as it is).
pub fn query_parameters(raw: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    out
}

fn headers_json(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    out
}

/// The HTTP API v2 event for a request.
#[allow(clippy::too_many_arguments)]
pub fn http_event(
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    matched: &router::Matched,
    source_ip: &str,
    request_id: &str,
) -> Value {
    let now = now_millis();
    let mut ev = json!({
        "version": "2.0",
        "routeKey": matched.route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers_json(headers),
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get(header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": matched.route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": now,
        },
        "isBase64Encoded": false,
    });
    let query = query_parameters(raw_query);
    if !query.is_empty() {
        ev["queryStringParameters"] = json!(query);
    }
    if !matched.path_parameters.is_empty() {
        let params: BTreeMap<_, _> = matched.path_parameters.iter().cloned().collect();
        ev["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => ev["body"] = json!(text),
            Err(_) => {
                ev["body"] = json!(STANDARD.encode(body));
                ev["isBase64Encoded"] = json!(true);
            }
        }
    }
    ev
}

/// A handler's HTTP answer (API Gateway's proxy response) as an HTTP response.
pub fn proxy_response(resp: &Value) -> Response {
    let status = resp["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = Response::builder().status(status);
    if let Some(headers) = resp["headers"].as_object() {
        for (k, v) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                header::HeaderName::try_from(k.as_str()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                out = out.header(name, value);
            }
        }
    }
    let body = match resp["body"].as_str() {
        Some(b) if resp["isBase64Encoded"].as_bool() == Some(true) => {
            STANDARD.decode(b).unwrap_or_default()
        }
        Some(b) => b.as_bytes().to_vec(),
        None => Vec::new(),
    };
    out.body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn error(deps: &Deps, err: &AppError) -> Response {
    proxy_response(
        &serde_json::to_value(notes_handlers::http::error_response(deps, err)).unwrap_or_default(),
    )
}

/// Every API route: route, read the body within the limit, invoke, answer.
pub async fn api(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let deps = &gw.deps;
    if parts.method == Method::OPTIONS {
        return proxy_response(
            &serde_json::to_value(notes_handlers::http::preflight(deps)).unwrap_or_default(),
        );
    }
    let path = parts.uri.path().to_owned();
    let matched = match router::route(&parts.method, &path) {
        Ok(m) => m,
        Err(e) => return error(deps, &e),
    };
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "Request body is larger than the {} KiB limit",
            MAX_BODY_BYTES / 1024
        ))
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return error(deps, &too_large());
    }
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return error(deps, &too_large()),
    };
    let rid = request_id();
    let ev = http_event(
        &parts.method,
        &path,
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &bytes,
        &matched,
        &peer.ip().to_string(),
        &rid,
    );
    match invoke_json(matched.handler, deps, ev, context(matched.handler, &rid)).await {
        Ok(resp) => proxy_response(&resp),
        Err(e) => {
            tracing::error!(handler = %matched.handler, error = %e, "handler failed");
            error(deps, &AppError::internal(e))
        }
    }
}

fn ws_event(
    route: &str,
    connection_id: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Value {
    let now = now_millis();
    let mut ev = json!({
        "headers": headers_json(headers),
        "requestContext": {
            "routeKey": route,
            "eventType": if route == "$connect" { "CONNECT" } else { "DISCONNECT" },
            "extendedRequestId": request_id(),
            "requestTime": "",
            "messageDirection": "IN",
            "stage": "local",
            "connectedAt": now,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": "127.0.0.1"},
            "requestId": request_id(),
            "domainName": "localhost",
            "connectionId": connection_id,
            "apiId": "local",
        },
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        ev["queryStringParameters"] = json!(query);
    }
    ev
}

/// `GET /ws?token=…`: `$connect` decides (401 without a valid token); messages for the connection
/// come from the notifier; closing the socket runs `$disconnect`.
pub async fn websocket(
    State(gw): State<Gateway>,
    RawQuery(raw_query): RawQuery,
    slot: Option<axum::Extension<super::server::ConnectionSlot>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = query_parameters(raw_query.as_deref().unwrap_or(""));
    let Ok(upgrade) = upgrade else {
        let err = AppError::bad_request(
            "This is the WebSocket endpoint: connect with a WebSocket client to /ws?token=<jwt>",
        );
        return error(&gw.deps, &err);
    };
    // At most `--max-sockets-per-user` sockets per user: past it, refused (429) before `$connect`
    // registers anything. A token that does not verify is left to `$connect`, which refuses it (401).
    let username = match (query.get("token"), gw.deps.token_keys().await) {
        (Some(token), Ok(keys)) => keys.verify(token).ok().map(|c| c.username),
        _ => None,
    };
    let user_socket = match &username {
        Some(name) => match gw.sockets.claim(name) {
            Some(place) => Some(place),
            None => {
                tracing::warn!(
                    username = %name,
                    max = gw.sockets.per_user,
                    "refused a WebSocket: its user has too many open (raise it with --max-sockets-per-user)"
                );
                let message = format!(
                    "Too many open WebSockets for this user (at most {}): close one and retry",
                    gw.sockets.per_user
                );
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::RETRY_AFTER, "5"),
                    ],
                    json!({ "message": message }).to_string(),
                )
                    .into_response();
            }
        },
        None => None,
    };
    let connection_id = request_id();
    let ev = ws_event("$connect", &connection_id, &query, &headers);
    let resp = match invoke_json(
        HandlerName::WebsocketConnect,
        &gw.deps,
        ev,
        context(HandlerName::WebsocketConnect, &connection_id),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return error(&gw.deps, &AppError::internal(e)),
    };
    if resp["statusCode"].as_u64() != Some(200) {
        let mut r = proxy_response(&resp);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let outbox = gw.notifier.attach(&connection_id);
    upgrade
        // API Gateway's own limits (32 KB frames, 128 KB messages). A small read buffer: tungstenite
        // zeroes the whole buffer on every read, which at the 128 KiB default costs more than a push.
        .max_frame_size(32 * 1024)
        .max_message_size(128 * 1024)
        .read_buffer_size(4 * 1024)
        .on_failed_upgrade({
            let gw = gw.clone();
            let id = connection_id.clone();
            move |e| {
                tracing::warn!(error = %e, "WebSocket upgrade failed");
                gw.notifier.detach(&id);
            }
        })
        .on_upgrade(move |socket| async move {
            // The socket keeps its place under the connection cap, and its user's, while it is open.
            let _slot = slot;
            let _user_socket = user_socket;
            serve_socket(gw, socket, connection_id, outbox, headers).await
        })
}

/// How long, once a close frame is sent, the peer has to answer with its own.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Serves an open socket until either side closes it, or it is idle (no message either way, as API
/// Gateway counts) for `--ws-idle-timeout`. Either way the closing handshake is finished (RFC 6455 §5.5.1):
/// a client's close frame is echoed, and an idle socket gets one (1001, "Going away") and a moment
/// for the client's answer.
async fn serve_socket(
    gw: Gateway,
    socket: WebSocket,
    connection_id: String,
    mut outbox: tokio::sync::mpsc::UnboundedReceiver<String>,
    headers: HeaderMap,
) {
    let (mut tx, mut rx) = socket.split();
    let idle = tokio::time::sleep(gw.sockets.idle_timeout);
    tokio::pin!(idle);
    let mut wait_for_close = false;
    loop {
        tokio::select! {
            msg = outbox.recv() => match msg {
                Some(text) => {
                    if tx.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + gw.sockets.idle_timeout);
                }
                None => break,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(WsMessage::Close(_))) => {
                    // tungstenite has queued the echo of the client's close frame: send it.
                    let _ = tokio::time::timeout(CLOSE_WAIT, tx.close()).await;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => idle
                    .as_mut()
                    .reset(tokio::time::Instant::now() + gw.sockets.idle_timeout),
            },
            () = &mut idle => {
                tracing::info!(connection_id, "closing an idle WebSocket");
                let close = WsMessage::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "Idle timeout".into(),
                }));
                wait_for_close =
                    matches!(tokio::time::timeout(CLOSE_WAIT, tx.send(close)).await, Ok(Ok(())));
                break;
            }
        }
    }
    if wait_for_close {
        // The client's close frame, or the end: whatever else it sends is dropped.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(msg)) = rx.next().await {
                if matches!(msg, WsMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    gw.notifier.detach(&connection_id);
    let ev = ws_event("$disconnect", &connection_id, &BTreeMap::new(), &headers);
    if let Err(e) = invoke_json(
        HandlerName::WebsocketDisconnect,
        &gw.deps,
        ev,
        context(HandlerName::WebsocketDisconnect, &connection_id),
    )
    .await
    {
        tracing::warn!(error = %e, "disconnect failed");
    }
}

/// Another method on `/ws` or `/config.json`: 405 with a message, like every other refusal.
pub async fn method_not_allowed(State(gw): State<Gateway>, method: Method) -> Response {
    let mut resp = error(
        &gw.deps,
        &AppError::MethodNotAllowed(format!("{method} is not allowed here: use GET")),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// `config.json` for the frontend: this server's own API and WebSocket URLs, as the browser reached it.
pub async fn config(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:3000");
    let body = json!({"apiUrl": format!("http://{host}"), "wsUrl": format!("ws://{host}/ws")});
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Everything that is not `/ws` or `/config.json`: AWS API calls (an `X-Amz-Target` header) go to the
/// local AWS APIs, the app's paths to the handlers, the rest to the frontend.
pub async fn fallback(
    state: State<Gateway>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if req.method() == Method::POST && req.headers().contains_key("x-amz-target") {
        return super::aws_api::serve(
            &state.queue,
            &state.move_tasks,
            &state.guard,
            Some(&state.counters),
            req,
        )
        .await;
    }
    let path = req.uri().path();
    let is_api = path == "/notes"
        || path.starts_with("/notes/")
        || path.starts_with("/auth/")
        || path == "/auth";
    if is_api || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return api(state, peer, req).await;
    }
    // The single-page app's routes are for a browser asking for a page; anything else that names
    // no file (`curl /note`, a fetch with a mistyped path) gets the API's JSON 404.
    let found = if accepts_html(req.headers()) {
        state.frontend.get(path).await
    } else {
        state.frontend.file(path).await
    };
    match found {
        Some(resp) => resp,
        None => api(state, peer, req).await,
    }
}

/// A browser's navigation: its Accept names `text/html` (fetch, curl and SDKs send `*/*` or JSON).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/html")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_holds_at_most_their_share_of_sockets() {
        let sockets = Arc::new(Sockets::new(Duration::from_secs(600), 2));
        let first = sockets.claim("ada").unwrap();
        let _second = sockets.claim("ada").unwrap();
        assert!(sockets.claim("ada").is_none(), "the third is refused");
        let _bob = sockets.claim("bob").expect("another user is not");
        drop(first);
        let _again = sockets
            .claim("ada")
            .expect("a closed socket gives its place back");
        assert!(sockets.claim("ada").is_none());
        assert_eq!(default_sockets_per_user(1024), 50);
        assert_eq!(default_sockets_per_user(50), 12);
        assert_eq!(default_sockets_per_user(2), 1);
    }

    #[test]
    fn query_strings_decode_like_api_gateway() {
        let q = query_parameters("token=a%2Bb%3D&x=1&x=2&flag&sp=a+b");
        assert_eq!(q["token"], "a+b=");
        assert_eq!(q["x"], "1,2");
        assert_eq!(q["flag"], "");
        assert_eq!(q["sp"], "a b");
        let odd = query_parameters("bad=%zz%4&utf8=%C3%A9&broken=%FF");
        assert_eq!(odd["bad"], "%zz%4", "a malformed escape stays as it is");
        assert_eq!(odd["utf8"], "é");
        assert_eq!(
            odd["broken"], "\u{FFFD}",
            "bytes that are not UTF-8 become U+FFFD"
        );
    }
}
