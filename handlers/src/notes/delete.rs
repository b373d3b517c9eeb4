//! `DELETE /notes/{noteId}` → deletes the caller's own note (both copies of a public one), found by
//! key; publishes `note-deleted`.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::clock::{now_iso, now_millis};
use crate::domain::events::NoteEvent;
use crate::domain::note::TOMBSTONE_MS;
use crate::http::{self, HttpRequest, HttpResponse};

use super::update::{not_found, note_id_param};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let claims = http::authenticate(deps, req).await?;
        let note_id = note_id_param(req, "delete")?;
        let note = deps
            .notes
            .delete_note(&claims.username, &note_id, now_millis() + TOMBSTONE_MS)
            .await?
            .ok_or_else(|| not_found("delete"))?;
        let deleted_at = now_iso();
        let event = NoteEvent::Deleted {
            note_id: note_id.clone(),
            username: claims.username.clone(),
            is_public: note.is_public,
            deleted_at: deleted_at.clone(),
            timestamp: deleted_at.clone(),
        };
        super::announce_change(deps, &event).await;
        Ok(http::json_response(
            deps,
            200,
            &json!({"message": "Note deleted successfully", "noteId": note_id, "deletedAt": deleted_at}),
        ))
    })
    .await)
}
