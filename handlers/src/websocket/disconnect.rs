//! `$disconnect`: removes every row of the connection, under its own user.

use lambda_runtime::{Error, LambdaEvent};

use super::{WsRequest, WsResponse, ws_response};
use crate::deps::Deps;

pub async fn handle(deps: &Deps, event: LambdaEvent<WsRequest>) -> Result<WsResponse, Error> {
    let req = &event.payload;
    let Some(connection_id) = req.request_context.connection_id.as_deref() else {
        return Ok(ws_response(
            400,
            "connectionId missing from the request context",
        ));
    };
    match deps.connections.unregister(connection_id).await {
        Ok(removed) => {
            tracing::info!(connection_id, known = removed.is_some(), "disconnected");
            Ok(ws_response(200, "Disconnected"))
        }
        Err(e) => {
            tracing::error!(error = %e.chain(), connection_id, "removing the connection failed");
            Ok(ws_response(500, "Internal server error"))
        }
    }
}
