//! `POST /auth/signup` → 201, or 409 when the name is taken — by any spelling with the same
//! normalised form (`Alice` once `alice` exists).

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::clock::now_iso;
use crate::domain::password;
use crate::domain::user::{Credentials, Purpose, UserRecord};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::ports::Created;

pub async fn handle(deps: &Deps, event: LambdaEvent<HttpRequest>) -> Result<HttpResponse, Error> {
    let req = &event.payload;
    Ok(http::respond(deps, req, || async {
        let creds = Credentials::from_json(&http::json_body(req)?, Purpose::SignUp)?;
        let user = UserRecord {
            username: creds.username.clone(),
            password_hash: password::hash_async(creds.password).await?,
            created_at: now_iso(),
        };
        match deps.users.create_user(&user).await? {
            Created::Created => {
                tracing::info!(username = %user.username, "user created");
                Ok(http::json_response(
                    deps,
                    201,
                    &json!({"message": "User created successfully", "username": user.username}),
                ))
            }
            Created::AlreadyExists => Err(AppError::Conflict("User already exists".to_owned())),
        }
    })
    .await)
}
