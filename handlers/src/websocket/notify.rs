//! notify: sends result events (`note-saved|failed|updated|deleted`) to WebSocket clients.
//!
//! Public-note events go to every connection, read from the registry's own index (required fix 6);
//! the rest to the owner's connections. Posts run with bounded concurrency. A 410 Gone removes that
//! connection under its own username (required fix 5). A connection that was throttled or answered
//! 5xx is posted to again within the invocation, after a jittered backoff — only it, never one that
//! already got the message. Only connections still failing after `notify_attempts` rounds fail the
//! invocation, so that EventBridge retries it; the client ignores an event it has already applied.

use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use serde::Serialize;
use tracing::Instrument as _;

use crate::deps::Deps;
use crate::domain::events::NoteEvent;
use crate::ports::{Connection, Metric, NotifyError, Posted};

/// What one notify invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyReport {
    pub delivered: usize,
    pub gone: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyFailure {
    #[error("the event's detail is not a note event: {0}")]
    BadEvent(String),
    #[error("looking up connections failed: {0}")]
    Registry(String),
    #[error("{retryable} of {total} posts still failing after retries; first: {first}")]
    Retry {
        retryable: usize,
        total: usize,
        first: String,
    },
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<EventBridgeEvent<serde_json::Value>>,
) -> Result<NotifyReport, Error> {
    let note_event: NoteEvent = match serde_json::from_value(event.payload.detail) {
        Ok(e) => e,
        Err(e) => {
            // A retry cannot fix an event we cannot read: log it and let it go.
            tracing::error!(error = %NotifyFailure::BadEvent(e.to_string()), detail_type = %event.payload.detail_type, "event ignored");
            return Ok(NotifyReport::default());
        }
    };
    let span = tracing::info_span!("note", note_id = %note_event.note_id());
    Ok(notify(deps, &note_event).instrument(span).await?)
}

/// First pause before posting again to connections that failed in passing; it doubles each round.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub async fn notify(deps: &Deps, event: &NoteEvent) -> Result<NotifyReport, NotifyFailure> {
    let targets = if event.is_broadcast() {
        deps.connections.all_connections().await
    } else {
        deps.connections.connections_of(event.username()).await
    }
    .map_err(|e| NotifyFailure::Registry(e.chain().to_string()))?;
    let message = event.to_detail_json();
    let total = targets.len();
    let attempts = deps.settings.notify_attempts.max(1);
    let mut report = NotifyReport::default();
    let mut pending = targets;
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=attempts {
        let mut retry = Vec::new();
        for (conn, result) in post_all(deps, pending, message.as_bytes()).await {
            match result {
                Ok(Posted::Delivered) => report.delivered += 1,
                Ok(Posted::Gone) => {
                    report.gone += 1;
                    if let Err(e) = deps.connections.remove(&conn).await {
                        tracing::warn!(connection_id = %conn.connection_id, error = %e.chain(), "removing a gone connection failed");
                    }
                }
                Err(e @ NotifyError::Retryable { .. }) => retry.push((conn, e.to_string())),
                Err(e @ NotifyError::Failed { .. }) => {
                    report.failed += 1;
                    tracing::warn!(error = %e, "post failed");
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        if attempt == attempts {
            tracing::warn!(event = event.detail_type(), note_id = %event.note_id(), total,
                delivered = report.delivered, still_failing = retry.len(), attempts,
                "posts still failing; failing the invocation for EventBridge to retry");
            return Err(NotifyFailure::Retry {
                retryable: retry.len(),
                total,
                first: retry.swap_remove(0).1,
            });
        }
        tracing::info!(
            retry = retry.len(),
            attempt,
            "posting again in {backoff:?}: {}",
            retry[0].1
        );
        tokio::time::sleep(backoff.mul_f64(rand::random_range(0.5..1.0))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        pending = retry.into_iter().map(|(conn, _)| conn).collect();
    }
    tracing::info!(event = event.detail_type(), note_id = %event.note_id(), total,
        delivered = report.delivered, gone = report.gone, failed = report.failed, "notified");
    deps.metrics
        .record(Metric::ConnectionsReached(report.delivered as u64));
    if report.gone > 0 {
        deps.metrics
            .record(Metric::StaleConnectionsRemoved(report.gone as u64));
    }
    Ok(report)
}

/// Posts `message` to each connection, a bounded number at once.
async fn post_all(
    deps: &Deps,
    targets: Vec<Connection>,
    message: &[u8],
) -> Vec<(Connection, Result<Posted, NotifyError>)> {
    futures::stream::iter(targets)
        .map(|conn| async move {
            let result = deps.notifier.post(&conn.connection_id, message).await;
            (conn, result)
        })
        .buffer_unordered(deps.settings.notify_concurrency.max(1))
        .collect()
        .await
}
