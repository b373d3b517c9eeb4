//! `GET /notes/public` → everyone's public notes, newest first, 50 a page, paged by `cursor`. No auth.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::cursor::{DEFAULT_PAGE_SIZE, PageRequest, encode_cursor};
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let mut page = PageRequest::from_query(
            http::query(req, "cursor"),
            http::query(req, "limit"),
            DEFAULT_PAGE_SIZE,
        )?;
        page.limit = page.limit.min(DEFAULT_PAGE_SIZE);
        let page = deps.notes.list_public_notes(&page).await?;
        let notes: Vec<_> = page.items.iter().map(|n| n.public_view()).collect();
        let mut body = json!({"notes": notes, "count": notes.len()});
        if let Some(next) = &page.next {
            body["cursor"] = json!(encode_cursor(next));
        }
        Ok(http::json_response(deps, 200, &body))
    })
    .await)
}
