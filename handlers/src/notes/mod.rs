//! The notes routes and the event-driven save.

pub mod delete;
pub mod get;
pub mod get_public;
pub mod publish;
pub mod save;
pub mod update;

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::cursor::{DEFAULT_PAGE_SIZE, Page, PageRequest, encode_cursor};
use crate::domain::events::NoteEvent;
use crate::domain::note::Note;
use crate::http::{self, HttpRequest};

/// Attempts for one event before the caller is told it failed.
const PUBLISH_ATTEMPTS: u32 = 3;

/// The page a list route asks for: `cursor` and `limit` from the query, the limit capped at `max`.
pub fn page_request(req: &HttpRequest, max: Option<usize>) -> Result<PageRequest, AppError> {
    let mut page = PageRequest::from_query(
        http::query(req, "cursor"),
        http::query(req, "limit"),
        DEFAULT_PAGE_SIZE,
    )?;
    if let Some(max) = max {
        page.limit = page.limit.min(max);
    }
    Ok(page)
}

/// `{"notes": [...], "count": n, "cursor": …}`: a page of notes, each as `view` shows it.
pub fn page_body<'p, V: Serialize>(
    page: &'p Page<Note>,
    view: impl Fn(&'p Note) -> V,
) -> serde_json::Value {
    let notes: Vec<V> = page.items.iter().map(view).collect();
    let mut body = json!({"notes": notes, "count": notes.len()});
    if let Some(next) = &page.next {
        body["cursor"] = json!(encode_cursor(next));
    }
    body
}

/// After a change that is already stored: publishes its event, and only logs a failure — a lost
/// notification must not turn a stored change into an error.
pub async fn announce_change(deps: &Deps, event: &NoteEvent) {
    if let Err(e) = publish_reliably(deps, event).await {
        tracing::error!(error = %e, note_id = %event.note_id(), "{} not published", event.detail_type());
    }
}

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
