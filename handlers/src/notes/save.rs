//! save-note: SQS batches of `note-created` events (EventBridge envelopes in the message bodies).
//! Each record on its own (concurrently); idempotent by `noteId` with a conditional write; failures reported in
//! `batchItemFailures`; on the last delivery a failing note publishes `note-failed` to its author.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use tracing::Instrument as _;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::clock::{now_iso, now_millis, parse_iso_millis};
use crate::domain::events::NoteEvent;
use crate::domain::note::Note;
use crate::ports::{FailReason, Metric, Saved, StoreError};

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now, and `note-saved` published.
    Saved,
    /// Stored by an earlier delivery; nothing more to do (or the missed `note-saved` sent now).
    Duplicate,
    /// Leave the message on the queue: SQS redelivers it, and after the last attempt it goes to the DLQ.
    Retry(String),
}

pub async fn handle(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    // The records are independent notes: stored side by side, the batch takes as long as its
    // slowest write instead of the sum of them (and the embedded store commits them together).
    let records = &event.payload.records;
    // Each record goes on in its own note's trace (SQS's AWSTraceHeader, from publish), or in this
    // invocation's when it has none.
    let outcomes = futures::future::join_all(records.iter().map(|r| {
        let header = r
            .attributes
            .get("AWSTraceHeader")
            .cloned()
            .or_else(crate::trace::current);
        let span = tracing::info_span!(
            "record",
            message_id = r.message_id.as_deref().unwrap_or_default(),
            note_id = tracing::field::Empty
        );
        crate::trace::within(header, process(deps, r).instrument(span))
    }))
    .await;
    for (record, outcome) in records.iter().zip(outcomes) {
        let id = record.message_id.clone().unwrap_or_default();
        match &outcome {
            Outcome::Saved | Outcome::Duplicate => {
                tracing::info!(message_id = %id, outcome = ?outcome, "record processed");
            }
            Outcome::Retry(reason) => {
                tracing::warn!(message_id = %id, reason = %reason, "record failed; left for redelivery");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    Ok(response)
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Why a message is not a `note-created` event.
#[derive(Debug, thiserror::Error)]
pub enum BadMessage {
    #[error("message has no body")]
    NoBody,
    #[error("message body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("message is not a note event: {0}")]
    NotANoteEvent(serde_json::Error),
    #[error("expected note-created, got {0}")]
    NotCreated(&'static str),
}

/// The `note-created` event inside an SQS message body (an EventBridge envelope, or the bare event).
pub fn parse_created(body: &str) -> Result<NoteEvent, BadMessage> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(BadMessage::NotJson)?;
    let detail = value.get("detail").cloned().unwrap_or(value);
    let event: NoteEvent = serde_json::from_value(detail).map_err(BadMessage::NotANoteEvent)?;
    match event {
        NoteEvent::Created { .. } => Ok(event),
        other => Err(BadMessage::NotCreated(other.detail_type())),
    }
}

/// Why a stored note's `note-saved` did not go out.
#[derive(Debug, thiserror::Error)]
enum AnnounceError {
    #[error(transparent)]
    Publish(#[from] AppError),
    #[error("{}", .0.chain())]
    Mark(#[from] StoreError),
}

pub async fn process(deps: &Deps, record: &SqsMessage) -> Outcome {
    let last_delivery = receive_count(record) >= deps.settings.max_receive_count;
    let unreadable = |bad: BadMessage| {
        if last_delivery {
            deps.metrics
                .record(Metric::NotesFailed(FailReason::Unreadable));
        }
        Outcome::Retry(bad.to_string())
    };
    let Some(body) = record.body.as_deref() else {
        return unreadable(BadMessage::NoBody);
    };
    let event = match parse_created(body) {
        Ok(e) => e,
        Err(bad) => return unreadable(bad),
    };
    let NoteEvent::Created {
        note_id,
        username,
        content,
        is_public,
        timestamp,
    } = event
    else {
        unreachable!("parse_created returns note-created only")
    };
    tracing::Span::current().record("note_id", note_id.as_str());
    let saved_at = now_iso();
    let note = Note {
        created_at: note_id.created_at(),
        note_id,
        username,
        content,
        is_public,
        status: "saved".to_owned(),
        saved_at,
        updated_at: None,
    };
    let now = now_millis();
    let lease_until = now + deps.settings.announce_lease_ms;
    let saved = match deps.notes.save_if_absent(&note, lease_until).await {
        Ok(saved) => saved,
        Err(e) => {
            let reason = e.chain().to_string();
            // Only a note that could not be stored is a failed note; on the last delivery its
            // author hears of it.
            if last_delivery {
                deps.metrics.record(Metric::NotesFailed(FailReason::Store));
                announce_failure(deps, &note, &reason).await;
            }
            return Outcome::Retry(reason);
        }
    };
    let (outcome, to_announce) = match saved {
        Saved::Created => {
            deps.metrics.record(Metric::NotesSaved);
            if let Some(created) = parse_iso_millis(&timestamp) {
                deps.metrics
                    .record(Metric::SaveLatency((now_millis() - created).max(0) as f64));
            }
            (Outcome::Saved, Some(note))
        }
        Saved::Deleted => {
            tracing::info!(note_id = %note.note_id, "redelivered note was deleted by its owner; not stored again");
            return Outcome::Duplicate;
        }
        // Stored by an earlier delivery. If its note-saved never went out and no delivery is
        // announcing it now, this one does.
        Saved::AlreadyExists => match deps
            .notes
            .claim_announcement(&note.username, &note.note_id, now, lease_until)
            .await
        {
            Ok(claimed) => (Outcome::Duplicate, claimed),
            Err(e) => return Outcome::Retry(e.chain().to_string()),
        },
    };
    let Some(stored) = to_announce else {
        return outcome;
    };
    match announce(deps, &stored).await {
        Ok(()) => outcome,
        // Stored but not announced: redelivery announces it once the lease runs out.
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn announce(deps: &Deps, stored: &Note) -> Result<(), AnnounceError> {
    let event = NoteEvent::Saved {
        note_id: stored.note_id.clone(),
        username: stored.username.clone(),
        content: stored.content.clone(),
        is_public: stored.is_public,
        saved_at: stored.saved_at.clone(),
        timestamp: now_iso(),
    };
    super::publish_reliably(deps, &event).await?;
    deps.notes
        .mark_notified(&stored.username, &stored.note_id)
        .await?;
    Ok(())
}

async fn announce_failure(deps: &Deps, note: &Note, reason: &str) {
    let event = NoteEvent::Failed {
        note_id: note.note_id.clone(),
        username: note.username.clone(),
        error: "Your note could not be saved".to_owned(),
        timestamp: now_iso(),
    };
    tracing::error!(note_id = %note.note_id, reason = %reason, "note failed on its last delivery");
    if let Err(e) = super::publish_reliably(deps, &event).await {
        tracing::error!(note_id = %note.note_id, error = %e, "note-failed not published");
    }
}
