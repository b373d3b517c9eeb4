//! `GET /notes` → the caller's notes, private and public, newest first, paged by `cursor`.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::cursor::{DEFAULT_PAGE_SIZE, PageRequest, encode_cursor};
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let claims = http::authenticate(deps, req).await?;
        let page = PageRequest::from_query(
            http::query(req, "cursor"),
            http::query(req, "limit"),
            DEFAULT_PAGE_SIZE,
        )?;
        let page = deps.notes.list_user_notes(&claims.username, &page).await?;
        let notes: Vec<_> = page.items.iter().map(|n| n.own_view()).collect();
        let mut body = json!({"notes": notes, "count": notes.len()});
        if let Some(next) = &page.next {
            body["cursor"] = json!(encode_cursor(next));
        }
        Ok(http::json_response(deps, 200, &body))
    })
    .await)
}
