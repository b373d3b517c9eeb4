//! `GET /notes` → the caller's notes, private and public, newest first, paged by `cursor`.

use lambda_runtime::{Error, LambdaEvent};

use super::{page_body, page_request};
use crate::deps::Deps;
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let claims = http::authenticate(deps, req).await?;
        let page = page_request(req, None)?;
        let page = deps.notes.list_user_notes(&claims.username, &page).await?;
        Ok(http::json_response(
            deps,
            200,
            &page_body(&page, |n| n.own_view()),
        ))
    })
    .await)
}
