//! What Lambda's event source mapping and EventBridge do on AWS: poll the queue in batches of ten,
//! call save, delete what succeeded (partial batch responses); and call notify for result events,
//! retrying a failed invocation with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::invoke as invoke_json;
use futures::future::BoxFuture;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::ports::StoreError;
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

/// Makes the store's deferred saves durable ([`EmbeddedStore::checkpoint`](notes_handlers::embedded::EmbeddedStore::checkpoint)).
pub type Checkpoint = Arc<dyn Fn() -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

/// How long a processed message may wait for the checkpoint that lets it be deleted: the saves of
/// every batch in that time share one durable commit. Far below any visibility timeout, so a
/// message is never delivered again only because its checkpoint was late.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Processed messages awaiting the checkpoint of their saves.
#[derive(Default)]
struct Unsettled {
    ids: Vec<String>,
    since: Option<Instant>,
}

impl Unsettled {
    fn add(&mut self, ids: Vec<String>) {
        if !ids.is_empty() {
            self.since.get_or_insert_with(Instant::now);
            self.ids.extend(ids);
        }
    }

    fn due(&self) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= CHECKPOINT_EVERY)
    }

    /// Checkpoints and hands over the ids that may now be deleted; none when the checkpoint failed
    /// (their messages are delivered again once their visibility timeout ends).
    async fn settle(&mut self, checkpoint: &Checkpoint) -> Vec<String> {
        self.since = None;
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return ids;
        }
        match checkpoint().await {
            Ok(()) => ids,
            Err(e) => {
                tracing::error!(error = %e, messages = ids.len(), "the store could not make saves durable; their messages stay queued and will be redelivered");
                Vec::new()
            }
        }
    }
}

/// Polls the queue until `stop` flips, finishing the batch in hand before it returns. Saves are
/// deferred (they commit without waiting for the disk); a batch's messages are deleted only after
/// `checkpoint` has made them durable — every [`CHECKPOINT_EVERY`], and at once when the queue is
/// idle — in the same write that receives the next batch. A crash loses no message whose save did
/// not reach the disk.
pub async fn save_poller(
    deps: Arc<Deps>,
    queue: LocalQueue,
    queued: Arc<Notify>,
    checkpoint: Checkpoint,
    mut stop: watch::Receiver<bool>,
) {
    let mut done: Vec<String> = Vec::new();
    let mut unsettled = Unsettled::default();
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
            if unsettled.since.is_some() {
                done = unsettled.settle(&checkpoint).await;
                continue;
            }
            tokio::select! {
                _ = queued.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        unsettled.add(process_batch(&deps, &batch).await);
        if unsettled.due() {
            done = unsettled.settle(&checkpoint).await;
        }
    }
    done.extend(unsettled.settle(&checkpoint).await);
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

#[cfg(test)]
mod tests {
    use super::*;
    use notes_handlers::deps::Settings;
    use notes_handlers::domain::clock::now_iso;
    use notes_handlers::domain::note::NoteId;
    use notes_handlers::embedded::{self, EmbeddedStore, StaticSecret};
    use tokio::sync::Semaphore;

    struct Rig {
        _dir: tempfile::TempDir,
        deps: Arc<Deps>,
        queue: LocalQueue,
        ids: Vec<NoteId>,
        /// One permit lets one checkpoint finish.
        gate: Arc<Semaphore>,
        /// Where `note-saved` goes: kept open, or announcing it fails and save asks for a retry.
        _events: mpsc::UnboundedReceiver<NoteEvent>,
        stop: watch::Sender<bool>,
        poller: tokio::task::JoinHandle<()>,
    }

    /// A poller over three queued notes whose checkpoints wait for `gate`, then succeed or fail.
    async fn rig(checkpoints_fail: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            LocalQueue::open(&dir.path().join("queue.redb"), Duration::from_secs(30), 3).unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb"))
            .unwrap()
            .with_deferred_saves();
        let (deps, _, events) = embedded::deps(
            store,
            Arc::new(StaticSecret::new(*b"0123456789abcdef0123456789abcdef")),
            Settings::default(),
        );
        let deps = Arc::new(deps);
        let ids: Vec<NoteId> = (0..3)
            .map(|i| NoteId::parse(&format!("{}-abcd123{i}", 1_780_000_000_000i64 + i)).unwrap())
            .collect();
        for id in &ids {
            let event = NoteEvent::Created {
                note_id: id.clone(),
                username: "ada".into(),
                content: "hello".into(),
                is_public: false,
                timestamp: now_iso(),
            };
            let body = envelope(&event).to_string();
            queue
                .sending(Which::Main, &body, None, Duration::ZERO)
                .await
                .unwrap();
        }
        let gate = Arc::new(Semaphore::new(0));
        let checkpoint: Checkpoint = {
            let gate = gate.clone();
            Arc::new(move || {
                let gate = gate.clone();
                Box::pin(async move {
                    gate.acquire().await.unwrap().forget();
                    if checkpoints_fail {
                        Err(StoreError::new(
                            "making deferred saves durable",
                            "disk gone",
                        ))
                    } else {
                        Ok(())
                    }
                })
            })
        };
        let (stop, stop_rx) = watch::channel(false);
        let queued = Arc::new(Notify::new());
        let poller = tokio::spawn(save_poller(
            deps.clone(),
            queue.clone(),
            queued.clone(),
            checkpoint,
            stop_rx,
        ));
        queued.notify_one();
        Rig {
            _dir: dir,
            deps,
            queue,
            ids,
            gate,
            _events: events,
            stop,
            poller,
        }
    }

    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn all_saved(rig: &Rig) -> bool {
        for id in &rig.ids {
            if rig.deps.notes.get_note("ada", id).await.unwrap().is_none() {
                return false;
            }
        }
        true
    }

    /// The order that makes deferred saves safe: saved (and readable) first, deleted from the queue
    /// only once the checkpoint after them has returned.
    #[tokio::test]
    async fn messages_are_deleted_only_after_the_checkpoint_of_their_saves() {
        let rig = rig(false).await;
        eventually("all three saved", async || all_saved(&rig).await).await;
        // Ten checkpoint periods with the checkpoint held: nothing may be deleted meanwhile.
        tokio::time::sleep(CHECKPOINT_EVERY * 10).await;
        let depth = rig.queue.depth().unwrap();
        assert_eq!(
            (depth.visible, depth.in_flight),
            (0, 3),
            "received and saved, but not deleted before the checkpoint"
        );

        rig.gate.add_permits(1_000);
        eventually("the queue emptied", async || {
            rig.queue.queued_count().unwrap() == 0
        })
        .await;
        rig.stop.send(true).unwrap();
        rig.poller.await.unwrap();
    }

    /// A checkpoint that fails deletes nothing: the messages stay for redelivery, however often
    /// the poller tries.
    #[tokio::test]
    async fn a_failed_checkpoint_leaves_the_messages_queued() {
        let rig = rig(true).await;
        eventually("all three saved", async || all_saved(&rig).await).await;
        rig.gate.add_permits(1_000);
        tokio::time::sleep(CHECKPOINT_EVERY * 10).await;
        assert_eq!(rig.queue.queued_count().unwrap(), 3);
        rig.stop.send(true).unwrap();
        rig.poller.await.unwrap();
        assert_eq!(
            rig.queue.queued_count().unwrap(),
            3,
            "nor does stopping delete them"
        );
    }
}
