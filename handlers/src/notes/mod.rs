//! The notes routes and the event-driven save.

pub mod delete;
pub mod get;
pub mod get_public;
pub mod publish;
pub mod save;
pub mod update;

use std::time::Duration;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::events::NoteEvent;

/// Attempts for one event before the caller is told it failed.
const PUBLISH_ATTEMPTS: u32 = 3;

/// Publishes one event, retrying entries the bus refused (`FailedEntryCount > 0`) and calls that
/// failed, with a short backoff. A refusal that outlives the retries is an error, never a silent
/// success.
pub async fn publish_reliably(deps: &Deps, event: &NoteEvent) -> Result<(), AppError> {
    let mut last = String::new();
    for attempt in 0..PUBLISH_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        match deps.bus.publish(std::slice::from_ref(event)).await {
            Ok(report) if report.all_accepted() => return Ok(()),
            Ok(report) => {
                let f = &report.failed[0];
                last = format!("entry refused: {} {}", f.code, f.message);
                tracing::warn!(attempt, event = event.detail_type(), note_id = %event.note_id(),
                    code = %f.code, reason = %f.message, "event bus refused the entry");
            }
            Err(e) => {
                last = e.chain().to_string();
                tracing::warn!(attempt, event = event.detail_type(), error = %last, "publishing failed");
            }
        }
    }
    Err(AppError::Unavailable(format!(
        "publishing {} for note {} failed after {PUBLISH_ATTEMPTS} attempts: {last}",
        event.detail_type(),
        event.note_id()
    )))
}
