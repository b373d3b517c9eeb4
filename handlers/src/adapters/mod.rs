//! AWS adapters: each AWS service is touched here and nowhere else, one module per service.

pub mod apigw_management;
pub mod dynamodb;
pub mod emf;
pub mod eventbridge;
pub mod lazy;
pub mod secrets_manager;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::StoreError;

/// Error codes AWS uses for "slow down": worth a retry, not a 500.
pub(crate) fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
        )
    )
}

/// A storage failure with its cause and whether a retry may fix it.
pub(crate) fn store_error<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = is_throttling(e.code())
        || e.raw_response()
            .is_some_and(|r| r.status().is_server_error())
        || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_));
    if retryable {
        StoreError::throttled(operation, e)
    } else {
        StoreError::new(operation, e)
    }
}
