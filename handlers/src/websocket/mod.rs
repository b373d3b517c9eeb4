//! The WebSocket API: connect (token required), disconnect, and notify (EventBridge → clients).

pub mod connect;
pub mod disconnect;
pub mod notify;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;

pub type WsRequest = ApiGatewayWebsocketProxyRequest;
pub type WsResponse = ApiGatewayProxyResponse;

/// The connection the request is about, or the 400 to answer without one.
pub fn connection_id(req: &WsRequest) -> Result<&str, Box<WsResponse>> {
    req.request_context.connection_id.as_deref().ok_or_else(|| {
        Box::new(ws_response(
            400,
            "connectionId missing from the request context",
        ))
    })
}

pub fn ws_response(status: u16, message: &str) -> WsResponse {
    let mut resp = WsResponse::default();
    resp.status_code = i64::from(status);
    resp.body = Some(Body::Text(
        serde_json::json!({ "message": message }).to_string(),
    ));
    resp
}
