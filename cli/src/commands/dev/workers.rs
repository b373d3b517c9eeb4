//! What Lambda's event source mapping and EventBridge do on AWS: poll the queue in batches of ten,
//! call save, delete what succeeded (partial batch responses); and call notify for result events,
//! retrying a failed invocation with backoff.

use std::sync::Arc;
use std::time::Duration;

use super::invoke as invoke_json;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::{Deps, HandlerName};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::bus::envelope;
use super::queue::{LocalQueue, Message, Which};
use notes_handlers::embedded::group::Durability;

pub const BATCH_SIZE: usize = 10;
const NOTIFY_ATTEMPTS: u32 = 4;

fn context(function: &str) -> lambda_runtime::Context {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = format!("{:032x}", rand::random::<u128>());
    ctx.invoked_function_arn = format!("arn:aws:lambda:local:000000000000:function:{function}");
    ctx
}

/// An SQS event as the event source mapping builds it.
pub fn sqs_event(messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.id,
                "receiptHandle": format!("{}#{}", m.id, m.receive_count),
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at_ms.to_string(),
                    "SenderId": "local",
                    "ApproximateFirstReceiveTimestamp": m.first_received_at_ms.unwrap_or(m.sent_at_ms).to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:local:000000000000:note-processing-queue",
                "awsRegion": "local",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Runs one batch through save; the ids to delete (everything save did not report as failed).
pub async fn process_batch(deps: &Deps, batch: &[Message]) -> Vec<String> {
    match invoke_json(
        HandlerName::NotesSave,
        deps,
        sqs_event(batch),
        context("notes-save"),
    )
    .await
    {
        Ok(resp) => {
            let failed: Vec<&str> = resp["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            batch
                .iter()
                .filter(|m| !failed.contains(&m.id.as_str()))
                .map(|m| m.id.clone())
                .collect()
        }
        Err(e) => {
            // The whole invocation failed: every message stays for redelivery, as on Lambda.
            tracing::error!(error = %e, "notes-save failed; the batch will be redelivered");
            Vec::new()
        }
    }
}

/// Polls the queue until `stop` flips, finishing the batch in hand before it returns. A batch's
/// processed messages are deleted in the same write that receives the next one.
pub async fn save_poller(
    deps: Arc<Deps>,
    queue: LocalQueue,
    queued: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut done: Vec<String> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if let (Some(meter), false) = (&deps.meter, done.is_empty()) {
            meter.add("queue.delete_batch", done.len() as u64, 0);
        }
        let batch = match queue
            .delete_and_receive(std::mem::take(&mut done), BATCH_SIZE)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "deleting processed messages and receiving from the local queue failed; processed ones will be redelivered");
                Vec::new()
            }
        };
        if let (Some(meter), false) = (&deps.meter, batch.is_empty()) {
            // Empty receives are not counted: they cost by the hour (the pollers' long polls on
            // AWS), not by the note.
            meter.add(
                "queue.receive",
                batch.len() as u64,
                batch.iter().map(|m| m.body.len() as u64).sum(),
            );
        }
        if batch.is_empty() {
            tokio::select! {
                _ = queued.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        done = process_batch(&deps, &batch).await;
    }
    if done.is_empty() {
        return;
    }
    if let Some(meter) = &deps.meter {
        meter.add("queue.delete_batch", done.len() as u64, 0);
    }
    if let Err(e) = queue.deleting(Which::Main, &done, Durability::Lazy).await {
        tracing::error!(error = %e, "deleting processed messages failed; they will be redelivered")
    }
}

/// Invokes function targets (notify) for routed events, retrying failures with backoff.
pub async fn function_dispatcher(
    deps: Arc<Deps>,
    mut events: mpsc::UnboundedReceiver<(HandlerName, NoteEvent)>,
) {
    while let Some((handler, event)) = events.recv().await {
        let deps = deps.clone();
        tokio::spawn(async move {
            let payload = envelope(&event);
            for attempt in 0..NOTIFY_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                match invoke_json(handler, &deps, payload.clone(), context(handler.as_str())).await
                {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(%handler, attempt, error = %e, "invocation failed; retrying")
                    }
                }
            }
            tracing::error!(%handler, event = event.detail_type(), note_id = %event.note_id(), "giving up after {NOTIFY_ATTEMPTS} attempts");
        });
    }
}
