//! The local API Gateway: HTTP requests become HTTP API (payload 2.0) events and WebSocket
//! connections become `$connect`/`$disconnect` events for the very handlers Lambda runs; their
//! answers become HTTP responses. Bodies over the limit are refused before they are read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::invoke as invoke_json;
use axum::body::{Body, to_bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
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
            // The socket keeps its place under the connection cap while it is open.
            let _slot = slot;
            serve_socket(gw, socket, connection_id, outbox, headers).await
        })
}

async fn serve_socket(
    gw: Gateway,
    socket: WebSocket,
    connection_id: String,
    mut outbox: tokio::sync::mpsc::UnboundedReceiver<String>,
    headers: HeaderMap,
) {
    let (mut tx, mut rx) = socket.split();
    loop {
        tokio::select! {
            msg = outbox.recv() => match msg {
                Some(text) => {
                    if tx.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
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
    match state.frontend.get(path).await {
        Some(resp) => resp,
        None => api(state, peer, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
