//! The HTTP server under `dev`, with the limits a server facing other programs needs: at most
//! `max_connections` connections at once (past it, a short 503 and the socket closed, so real
//! requests are not starved of file descriptors), and a deadline for a request's headers — from the
//! connection's start or the end of its previous response — so sockets that never finish their
//! headers, or sit idle, are closed. WebSockets, once upgraded, are not timed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Connections refused past `max_connections` since the start (read by `load`, through the
    /// runbook API, to tell dev's cap from the app's limits).
    pub refused: Arc<std::sync::atomic::AtomicU64>,
}

/// A connection's place under the cap, held by whatever serves it: its requests, and the WebSocket
/// it may become (which outlives the HTTP connection that upgraded).
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// The body of what a connection past the cap gets.
const BUSY_BODY: &str =
    "{\"message\":\"The dev server has too many open connections; please retry in a moment\"}\n";

/// What a connection past the cap gets, before it is closed: a 503 whose `content-length` is its
/// body's.
fn busy_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    )
    .into_bytes()
}

/// The most of a request body read before answering: past it, 413 and the connection closed.
/// Above the API's own 256 KiB limit, so that a body a little too large is read and refused with a
/// 413 the client can see, rather than a connection reset while it is still sending.
pub const MAX_READ_BODY: usize = 1024 * 1024;

/// The most request-body bytes held in memory at once, across all connections: a request that
/// would take more is refused (503) rather than read. Room for 64 bodies of [`MAX_READ_BODY`].
pub const BODY_BUDGET: usize = 64 * MAX_READ_BODY;

/// How [`read_body_first`] reads bodies: within `timeout`, and holding their bytes against a budget
/// shared by every connection.
#[derive(Clone)]
pub struct BodyLimits {
    pub timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl BodyLimits {
    pub fn new(timeout: Duration) -> BodyLimits {
        BodyLimits::with_budget(timeout, BODY_BUDGET)
    }

    pub fn with_budget(timeout: Duration, bytes: usize) -> BodyLimits {
        BodyLimits {
            timeout,
            budget: Arc::new(Semaphore::new(bytes)),
            budget_bytes: bytes,
        }
    }

    /// `bytes` more of the budget, added to what `held` holds; `None` when the budget has not that
    /// much left.
    fn take(&self, bytes: usize, held: &mut Option<OwnedSemaphorePermit>) -> Option<()> {
        if bytes == 0 {
            return Some(());
        }
        let more = self
            .budget
            .clone()
            .try_acquire_many_owned(u32::try_from(bytes).ok()?)
            .ok()?;
        match held {
            Some(h) => h.merge(more),
            None => *held = Some(more),
        }
        Some(())
    }
}

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    Busy,
}

/// Every route (inside the Host check, so a request for another host is refused unread): reads the
/// request's body whole (within [`MAX_READ_BODY`] and `limits.timeout` of time) before anything
/// answers. An answer sent while the client is still sending would reach it as a reset connection,
/// and a client that sends its body slowly would hold the connection for ever. The bytes read are
/// held against a budget shared by all connections until the request is answered: when it is spent,
/// 503, and the rest is not read.
pub async fn read_body_first(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let refuse = |status: StatusCode, message: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONNECTION, "close"),
            ],
            serde_json::json!({"message": message}).to_string(),
        )
            .into_response()
    };
    let (parts, mut body) = req.into_parts();
    let mut held = None;
    let read = async {
        // Taken from the budget as bytes arrive, not as `content-length` promises them: a client
        // that announces a large body and sends none holds nothing.
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Unread::TooLarge)?.into_data() else {
                continue;
            };
            if buf.len() + data.len() > MAX_READ_BODY {
                return Err(Unread::TooLarge);
            }
            limits.take(data.len(), &mut held).ok_or(Unread::Busy)?;
            buf.extend_from_slice(&data);
        }
        Ok(buf)
    };
    let outcome = tokio::time::timeout(limits.timeout, read).await;
    match outcome {
        Ok(Ok(bytes)) => {
            let resp = next
                .run(axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes),
                ))
                .await;
            drop(held);
            resp
        }
        Ok(Err(Unread::TooLarge)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body is larger than {} KiB (or was cut off)",
                MAX_READ_BODY / 1024
            ),
        ),
        Ok(Err(Unread::Busy)) => {
            tracing::warn!(
                budget_mib = limits.budget_bytes / (1024 * 1024),
                "request bodies in memory reached their budget: answering 503"
            );
            let mut resp = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The dev server is reading too many request bodies at once; please retry in a moment"
                    .to_owned(),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} s",
                limits.timeout.as_secs()
            ),
        ),
    }
}

/// A default for `--max-connections`: 1,024, or fewer when the process may not open that many
/// files (leaving room for the databases, logs and the connections past the cap being refused).
pub fn default_max_connections() -> usize {
    const WANTED: usize = 1024;
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own and reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            let files = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
            return WANTED.min(files.saturating_sub(64).max(16));
        }
    }
    WANTED
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, asks every connection
/// to finish its request in hand, and waits for them at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused_since_log = 0u64;
    let mut accept_failures = 0u32;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                accept_failures = 0;
                a
            }
            Err(e) => {
                // Out of file descriptors (EMFILE) or the like: wait for connections to close
                // rather than spin; say so once per streak.
                if accept_failures == 0 {
                    tracing::warn!(error = %e, "cannot accept connections for now; retrying");
                }
                accept_failures = accept_failures.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(
                    50 * u64::from(accept_failures.min(20)),
                ))
                .await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            limits
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            refused_since_log += 1;
            if refused_since_log == 1 || refused_since_log.is_multiple_of(1000) {
                tracing::warn!(
                    max = limits.max_connections,
                    refused = refused_since_log,
                    "connection limit reached: answering 503 (raise it with --max-connections)"
                );
            }
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    stream.write_all(&busy_response()),
                )
                .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        if open.available_permits() > 0 {
            refused_since_log = 0;
        }
        // Small answers and WebSocket frames go out at once, not after the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let slot = ConnectionSlot(Arc::new(permit));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req.extensions_mut().insert(slot.clone());
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(
                        app.oneshot(req.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|e| match e {}),
                    )
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let mut conn = pin!(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
            );
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: all permits back means all connections done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, open.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    #[test]
    fn the_busy_answer_says_its_own_length() {
        let busy = String::from_utf8(busy_response()).unwrap();
        let (head, body) = busy.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{busy:?}");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["message"].is_string(), "{json}");
    }

    fn app(limits: BodyLimits) -> Router {
        Router::new()
            .route(
                "/",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            )
            .layer(axum::middleware::from_fn_with_state(
                limits,
                read_body_first,
            ))
    }

    async fn post(app: &Router, body: Vec<u8>, declare: bool) -> (StatusCode, String) {
        let mut req = Request::post("/");
        if declare {
            req = req.header("content-length", body.len());
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn bodies_in_memory_share_one_budget() {
        let limits = BodyLimits::with_budget(Duration::from_secs(5), 1000);
        let app = app(limits.clone());
        for declare in [true, false] {
            assert_eq!(
                post(&app, vec![b'a'; 600], declare).await,
                (StatusCode::OK, "600".to_owned())
            );
            let (status, body) = post(&app, vec![b'a'; 1001], declare).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                json["message"].as_str().unwrap().contains("too many"),
                "{json}"
            );
        }
        // A body in parts takes from the budget part by part, and gives it all back.
        let parts = (0..3).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 400]));
        let resp = app
            .clone()
            .oneshot(
                Request::post("/")
                    .body(Body::from_stream(futures::stream::iter(parts)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(limits.budget.available_permits(), 1000);
        // What a request in hand holds is not there for another.
        let mut held = None;
        limits.take(700, &mut held).unwrap();
        assert_eq!(
            post(&app, vec![b'a'; 400], true).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(post(&app, vec![b'a'; 300], false).await.0, StatusCode::OK);
        drop(held);
        assert_eq!(
            limits.budget.available_permits(),
            1000,
            "every byte is given back once answered"
        );
        assert_eq!(post(&app, vec![b'a'; 1000], true).await.0, StatusCode::OK);
        let (status, _) = post(&app, vec![b'a'; 2000], true).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a body past what is left of the budget"
        );
        let big = app_with_budget(BODY_BUDGET);
        let (status, _) = post(&big, vec![b'a'; MAX_READ_BODY + 1], true).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    fn app_with_budget(bytes: usize) -> Router {
        app(BodyLimits::with_budget(Duration::from_secs(5), bytes))
    }
}
