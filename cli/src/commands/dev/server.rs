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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// A connection's place under the cap, held by whatever serves it: its requests, and the WebSocket
/// it may become (which outlives the HTTP connection that upgraded).
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// What a connection past the cap gets, before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 86\r\n\r\n{\"message\":\"The dev server has too many open connections; please retry in a moment\"}\n";

/// The most of a request body read before answering: past it, 413 and the connection closed.
/// Above the API's own 256 KiB limit, so that a body a little too large is read and refused with a
/// 413 the client can see, rather than a connection reset while it is still sending.
pub const MAX_READ_BODY: usize = 1024 * 1024;

/// Every route: reads the request's body whole (within [`MAX_READ_BODY`] and `limit` of time)
/// before anything answers. An answer sent while the client is still sending would reach it as a
/// reset connection, and a client that sends its body slowly would hold the connection for ever.
pub async fn read_body_first(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
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
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_READ_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Ok(Err(_)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body is larger than {} KiB (or was cut off)",
                MAX_READ_BODY / 1024
            ),
        ),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} s",
                limit.as_secs()
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
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
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
