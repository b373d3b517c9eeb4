//! API Gateway Management API: `PostToConnection` on the WebSocket API's stage endpoint.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::is_throttling;
use crate::ports::{Notifier, NotifyError, Posted};

#[derive(Clone, Debug)]
pub struct ApiGatewayNotifier {
    client: std::sync::Arc<super::lazy::LazyClient<Client>>,
}

/// The management endpoint for a WebSocket API: `https://{host}/{stage}` from the API endpoint
/// (`wss://` or `https://`, with or without the stage already appended).
pub fn management_endpoint(api_endpoint: &str, stage: &str) -> String {
    let trimmed = api_endpoint.trim_end_matches('/');
    let https = match trimmed.split_once("://") {
        Some(("wss", rest)) => format!("https://{rest}"),
        Some(("ws", rest)) => format!("http://{rest}"),
        Some(_) => trimmed.to_owned(),
        None => format!("https://{trimmed}"),
    };
    let stage = stage.trim_matches('/');
    if stage.is_empty() || https.ends_with(&format!("/{stage}")) {
        https
    } else {
        format!("{https}/{stage}")
    }
}

impl ApiGatewayNotifier {
    pub fn new(client: impl Into<super::lazy::LazyClient<Client>>) -> Self {
        Self {
            client: std::sync::Arc::new(client.into()),
        }
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn post(&self, connection_id: &str, message: &[u8]) -> Result<Posted, NotifyError> {
        let result = self
            .client
            .get()
            .await
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(message))
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(Posted::Delivered),
            Err(e) => e,
        };
        if e.as_service_error()
            .is_some_and(|se| se.is_gone_exception())
        {
            return Ok(Posted::Gone);
        }
        let reason = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
        let connection_id = connection_id.to_owned();
        let status = e.raw_response().map(|r| r.status().as_u16());
        let retryable = is_throttling(e.code())
            || e.as_service_error()
                .is_some_and(|se| se.is_limit_exceeded_exception())
            || status.is_some_and(|s| s == 429 || s >= 500)
            || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_));
        if retryable {
            Err(NotifyError::Retryable {
                connection_id,
                reason,
            })
        } else {
            Err(NotifyError::Failed {
                connection_id,
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::management_endpoint;

    #[test]
    fn endpoint_forms() {
        let want = "https://abc.execute-api.eu-west-2.amazonaws.com/production";
        for given in [
            "wss://abc.execute-api.eu-west-2.amazonaws.com/production",
            "wss://abc.execute-api.eu-west-2.amazonaws.com",
            "https://abc.execute-api.eu-west-2.amazonaws.com/production/",
            "abc.execute-api.eu-west-2.amazonaws.com",
        ] {
            assert_eq!(management_endpoint(given, "production"), want, "{given}");
        }
        assert_eq!(
            management_endpoint("http://127.0.0.1:5000", ""),
            "http://127.0.0.1:5000"
        );
    }
}
