//! AWS helpers that several commands share, one home each: an SDK error as one line (here), the
//! stacks and their outputs, S3 listing and batch deletes, the queues by name, the alarms, and the
//! artifacts bucket.

pub mod alarms;
pub mod artifacts;
pub mod queues;
pub mod s3;
pub mod stacks;

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// An SDK error as one readable line — the service's code and message, or why the endpoint could not
/// be reached — with a hint for the common environment problems.
pub fn explain<E, R>(
    action: &str,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let detail = match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(msg)) => msg.to_owned(),
                (None, None) => DisplayErrorContext(err).to_string(),
            }
        }
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) => format!("could not reach the endpoint ({})", chain(c)),
            None => "could not reach the endpoint".to_owned(),
        },
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        other => DisplayErrorContext(other).to_string(),
    };
    let hint = if detail.to_lowercase().contains("credentials") {
        "; no usable AWS credentials: run `aws sso login`, set AWS_PROFILE, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    } else if matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    ) {
        "; check --region/--endpoint-url (for --local, is `notesctl dev` running?)"
    } else {
        ""
    };
    anyhow::anyhow!("{action} failed: {detail}{hint}")
}
