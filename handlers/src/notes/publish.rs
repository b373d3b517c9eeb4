//! `POST /notes` → validates, publishes `note-created`, answers 202. Saving happens downstream.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;
use tracing::Instrument as _;

use crate::deps::Deps;
use crate::domain::clock::{iso_millis, now_millis};
use crate::domain::events::NoteEvent;
use crate::domain::note::{NewNote, NoteId};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::ports::Metric;

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let claims = http::authenticate(deps, req).await?;
        let note = NewNote::from_json(&http::json_body(req)?)?;
        let now = now_millis();
        let note_id = NoteId::generate(now);
        let created = NoteEvent::Created {
            note_id: note_id.clone(),
            username: claims.username.clone(),
            content: note.content,
            is_public: note.is_public,
            timestamp: iso_millis(now),
        };
        let span = tracing::info_span!("note", note_id = %note_id);
        super::publish_reliably(deps, &created)
            .instrument(span)
            .await?;
        deps.metrics.record(Metric::NotesPublished);
        tracing::info!(note_id = %note_id, username = %claims.username, "note submitted");
        Ok(http::json_response(
            deps,
            202,
            &json!({"message": "Note submitted for processing", "noteId": note_id, "status": "pending"}),
        ))
    })
    .await)
}
