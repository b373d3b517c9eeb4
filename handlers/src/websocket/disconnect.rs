//! `$disconnect`: removes every row of the connection, under its own user.

use lambda_runtime::{Error, LambdaEvent};

use super::{WsRequest, WsResponse, ws_response};
use crate::deps::Deps;

pub async fn handle(deps: &Deps, event: LambdaEvent<WsRequest>) -> Result<WsResponse, Error> {
    let req = &event.payload;
    let connection_id = match super::connection_id(req) {
        Ok(id) => id,
        Err(refused) => return Ok(*refused),
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
