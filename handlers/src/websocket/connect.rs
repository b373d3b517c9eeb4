//! `$connect` with `?token=<jwt>`: the token is verified (required fix 1) and the connection
//! registered under its user; without a valid token the connection is refused with 401.

use lambda_runtime::{Error, LambdaEvent};

use super::{WsRequest, WsResponse, ws_response};
use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::clock::{now_iso, now_millis};
use crate::ports::{CONNECTION_TTL_SECS, Connection};

pub async fn handle(deps: &Deps, event: LambdaEvent<WsRequest>) -> Result<WsResponse, Error> {
    let req = &event.payload;
    let connection_id = match super::connection_id(req) {
        Ok(id) => id,
        Err(refused) => return Ok(*refused),
    };
    let Some(token) = req
        .query_string_parameters
        .first("token")
        .filter(|t| !t.is_empty())
    else {
        return Ok(ws_response(
            401,
            "A token query parameter is required: connect with ?token=<jwt>",
        ));
    };
    let claims = match deps.token_keys().await {
        Ok(keys) => keys.verify(token),
        Err(e) => Err(e),
    };
    let claims = match claims {
        Ok(c) => c,
        Err(e @ AppError::Unauthorized(_)) => {
            // A run of these after a deploy: clients hold tokens signed with another secret.
            tracing::warn!(reason = %e.public_message(), "refused a connection: its token is not valid here");
            return Ok(ws_response(401, &e.public_message()));
        }
        Err(e) => {
            tracing::error!(error = %e, "connect could not verify the token");
            return Ok(ws_response(e.status(), &e.public_message()));
        }
    };
    let connection = Connection {
        connection_id: connection_id.to_owned(),
        username: claims.username.clone(),
        connected_at: now_iso(),
        ttl: now_millis() / 1000 + CONNECTION_TTL_SECS,
    };
    if let Err(e) = deps.connections.register(&connection).await {
        tracing::error!(error = %e.chain(), connection_id, "registering the connection failed");
        return Ok(ws_response(500, "Internal server error"));
    }
    tracing::info!(connection_id, username = %claims.username, "connected");
    Ok(ws_response(200, "Connected"))
}
