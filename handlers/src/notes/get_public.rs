//! `GET /notes/public` → everyone's public notes, newest first, 50 a page, paged by `cursor`. No auth.

use lambda_runtime::{Error, LambdaEvent};

use super::page_body;
use crate::deps::Deps;
use crate::domain::cursor::{DEFAULT_PAGE_SIZE, PageRequest};
use crate::domain::feed::{FeedCursor, FeedRequest};
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        // The feed's cursor holds a position per shard; the limit is the other lists' rule.
        let limit = PageRequest::from_query(None, http::query(req, "limit"), DEFAULT_PAGE_SIZE)?
            .limit
            .min(DEFAULT_PAGE_SIZE);
        let after = http::query(req, "cursor")
            .filter(|c| !c.is_empty())
            .map(FeedCursor::decode)
            .transpose()?;
        let page = deps
            .notes
            .list_public_notes(&FeedRequest::new(after, limit))
            .await?;
        Ok(http::json_response(
            deps,
            200,
            &page_body(&page, |n| n.public_view()),
        ))
    })
    .await)
}
