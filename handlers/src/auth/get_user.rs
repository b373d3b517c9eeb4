//! `GET /auth/user` → the caller's profile, never the password hash.

use lambda_runtime::{Error, LambdaEvent};

use crate::deps::Deps;
use crate::domain::AppError;
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        http::require_authorization_header(req)?;
        let claims = http::authenticate(deps, req).await?;
        let user = deps
            .users
            .get_user(&claims.username)
            .await?
            .ok_or_else(|| AppError::NotFound("User not found".to_owned()))?;
        Ok(http::json_response(deps, 200, &user.view()))
    })
    .await)
}
