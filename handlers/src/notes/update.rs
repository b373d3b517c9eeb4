//! `PUT /notes/{noteId}` → replaces the content of the caller's own note, found by key; publishes
//! `note-updated`. Someone else's note and an unknown id are the same 404.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::clock::now_iso;
use crate::domain::events::NoteEvent;
use crate::domain::note::{NoteEdit, NoteId};
use crate::http::{self, HttpRequest, HttpResponse};

pub fn not_found(verb: &str) -> AppError {
    AppError::NotFound(format!(
        "Note not found or you do not have permission to {verb} it"
    ))
}

/// The `{noteId}` of the path; a malformed id is the same 404 as someone else's note.
pub fn note_id_param(req: &HttpRequest, verb: &str) -> Result<NoteId, AppError> {
    let note_id = http::path_param(req, "noteId")
        .ok_or_else(|| AppError::bad_request("noteId path parameter is required"))?;
    NoteId::parse(note_id).map_err(|_| not_found(verb))
}

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let claims = http::authenticate(deps, req).await?;
        let note_id = note_id_param(req, "update")?;
        let edit = NoteEdit::from_json(&http::json_body(req)?)?;
        let updated_at = now_iso();
        let note = deps
            .notes
            .update_content(&claims.username, &note_id, &edit.content, &updated_at)
            .await?
            .ok_or_else(|| not_found("update"))?;
        let event = NoteEvent::Updated {
            note_id: note_id.clone(),
            username: claims.username.clone(),
            content: note.content.clone(),
            is_public: note.is_public,
            updated_at: updated_at.clone(),
            timestamp: updated_at.clone(),
        };
        super::announce_change(deps, &event).await;
        Ok(http::json_response(
            deps,
            200,
            &json!({"message": "Note updated successfully", "noteId": note_id,
                    "content": note.content, "updatedAt": updated_at}),
        ))
    })
    .await)
}
