//! Recorded SQS answers for the redrive tests: the queues, their ARNs, and a run's starting point.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

use super::{Method, RedriveArgs, RedriveReport};
use crate::aws::queues::{QueueRef, Queues};
use crate::context::{Context, LocalArg};

pub fn ctx() -> Context {
    use clap::Parser;
    Context::new(crate::Cli::parse_from(["notesctl", "--quiet", "queue-depth"]).global)
}

/// A context that says its progress lines (no `--quiet`); read them with `Context::said`.
pub fn ctx_saying() -> Context {
    use clap::Parser;
    Context::new(crate::Cli::parse_from(["notesctl", "queue-depth"]).global)
}

pub fn args() -> RedriveArgs {
    RedriveArgs {
        yes: true,
        dry_run: false,
        max: None,
        max_per_second: Some(50),
        manual: false,
        visibility_timeout: 30,
        refusals: 3,
        timeout: Duration::from_secs(30),
        local: LocalArg::default(),
    }
}

pub fn report(method: Method, found: u64) -> RedriveReport {
    RedriveReport {
        moved: 0,
        failed: 0,
        method,
        dry_run: false,
        found,
        sample: vec![],
        refused: vec![],
        problem: None,
        source: "p-note-processing-dlq".into(),
        destination: "p-note-processing-queue".into(),
    }
}

/// GetQueueAttributes answering each queue's ARN.
pub fn arns() -> Rule {
    mock!(Client::get_queue_attributes).then_compute_output(|req| {
        let url = req.queue_url().unwrap_or_default();
        let name = url.rsplit('/').next().unwrap_or_default();
        GetQueueAttributesOutput::builder()
            .attributes(
                QueueAttributeName::QueueArn,
                format!("arn:aws:sqs:eu-west-2:1:{name}"),
            )
            .build()
    })
}

/// The stage's two queues on a client that answers by `rules`, without the SDK's retries.
pub fn queues(rules: &[&Rule]) -> Queues {
    let client = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| c.retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
    );
    let queue = |name: &str| QueueRef {
        name: name.into(),
        url: format!("https://sqs/1/{name}"),
    };
    Queues::new(
        client,
        queue("p-note-processing-queue"),
        queue("p-note-processing-dlq"),
    )
}

/// An HTTP answer with this status, content type and body.
pub fn answer(
    status: u16,
    content_type: &str,
    body: &'static str,
) -> aws_smithy_runtime_api::http::Response {
    let mut r = aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
        aws_smithy_types::body::SdkBody::from(body),
    );
    r.headers_mut()
        .insert("content-type", content_type.to_owned());
    r
}
