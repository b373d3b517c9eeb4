//! `POST /auth/login` → 200 with a token; 401 with the same text for an unknown user and a wrong
//! password, in the same time.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::password;
use crate::domain::token::now_secs;
use crate::domain::user::{Credentials, Purpose};
use crate::http::{self, HttpRequest, HttpResponse};

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let creds = Credentials::from_json(&http::json_body(req)?, Purpose::Login)?;
        let keys = deps.token_keys().await?;
        let user = deps.users.get_user(&creds.username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        if !password::verify_async(creds.password, stored).await {
            return Err(AppError::Unauthorized(
                "Invalid username or password".to_owned(),
            ));
        }
        // The account's name as first typed, whatever spelling logged in: notes and sockets are
        // keyed by it.
        let Some(user) = user else {
            return Err(AppError::Unauthorized(
                "Invalid username or password".to_owned(),
            ));
        };
        let token = keys.issue(&user.username, now_secs())?;
        tracing::info!(username = %user.username, "login succeeded");
        Ok(http::json_response(
            deps,
            200,
            &json!({"message": "Login successful", "token": token, "username": user.username}),
        ))
    })
    .await)
}
