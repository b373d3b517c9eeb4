//! `GET /notes/public` → everyone's public notes, newest first, 50 a page, paged by `cursor`. No auth.

use lambda_runtime::{Error, LambdaEvent};

use super::{page_body, page_request};
use crate::deps::Deps;
use crate::domain::cursor::DEFAULT_PAGE_SIZE;
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let page = page_request(req, Some(DEFAULT_PAGE_SIZE))?;
        let page = deps.notes.list_public_notes(&page).await?;
        Ok(http::json_response(
            deps,
            200,
            &page_body(&page, |n| n.public_view()),
        ))
    })
    .await)
}
