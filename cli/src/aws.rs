//! AWS configuration for the commands: the usual credential chain (profiles, SSO, environment),
//! `--region`, `--endpoint-url` for emulators, and `--local` for a running `notesctl dev`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::Global;

/// Where a `--local` flag points when given without a URL.
pub const DEFAULT_LOCAL: &str = "http://127.0.0.1:3000";

/// `--local [URL]`: run against a `notesctl dev` server instead of AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArg {
    /// Talk to a running `notesctl dev` (default http://127.0.0.1:3000) instead of AWS.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = DEFAULT_LOCAL)]
    pub local: Option<String>,
}

pub async fn sdk_config(global: &Global, local: Option<&str>) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = local {
        loader = loader
            .endpoint_url(url)
            .region(Region::new("local"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "notesctl-dev",
            ));
        return Ok(loader.load().await);
    }
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &global.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &global.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!(
            "no AWS region is configured: pass --region, or set AWS_REGION or a region in your profile"
        );
    }
    Ok(config)
}

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
