//! `notesctl invalidate`: a CloudFront invalidation that a retry never duplicates (its caller
//! reference is derived from the paths and the bucket's content), retried on throttling, and with
//! `--wait` followed to `Completed` — or, at `--timeout`, a clear "still running" and exit 1, not the
//! AWS CLI waiter's exit 255 after ten fixed minutes.

use std::fmt;
use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::aws::s3::{content_hash, list_bucket, s3_client};
use crate::aws::{Failure, explain, failure_of, is_transient, persist, stacks};
use crate::context::{Context, Deadline, parse_duration};
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct InvalidateArgs {
    /// Distribution to invalidate (default: the frontend stack's DistributionId output).
    #[arg(long)]
    pub distribution_id: Option<String>,
    /// Paths to invalidate (repeatable).
    #[arg(long = "path", value_name = "PATH", default_value = "/*")]
    pub paths: Vec<String>,
    /// Wait until the invalidation has completed.
    #[arg(long)]
    pub wait: bool,
    /// How long to keep at it, creating and with --wait waiting (30s, 15m, 1h); past it, exit 1.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bucket whose content names the invalidation (default: the frontend stack's BucketName output).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The bucket's content hash when the caller already knows it (`deploy --frontend` just synced).
    #[arg(skip)]
    pub content: Option<String>,
}

impl InvalidateArgs {
    /// `deploy --frontend`: everything, waited for, named by the content just synced to `bucket`.
    pub fn after_sync(bucket: &str, content_hash: &str) -> InvalidateArgs {
        InvalidateArgs {
            distribution_id: None,
            paths: vec!["/*".into()],
            wait: true,
            timeout: Duration::from_secs(900),
            bucket: Some(bucket.to_owned()),
            content: Some(content_hash.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidateReport {
    pub invalidation_id: String,
    pub status: String,
    pub distribution_id: String,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Report for InvalidateReport {
    /// Still running at `--timeout` is a problem the run found.
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some())
    }
}

impl fmt::Display for InvalidateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalidation {} of {} ({}): {}",
            self.invalidation_id,
            self.distribution_id,
            self.paths.join(" "),
            self.status
        )?;
        if let Some(p) = &self.problem {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

/// The caller reference: the same paths over the same content are the same invalidation.
pub fn caller_reference(paths: &[String], content: &str) -> String {
    let mut sorted = paths.to_vec();
    sorted.sort();
    let digest = sha2::Sha256::digest(format!("{}\n{content}", sorted.join("\n")).as_bytes());
    format!(
        "notesctl-{}",
        digest[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// CloudFront says `Completed` / `InProgress`; some emulators shout. One spelling for reports.
fn normalize(status: &str) -> String {
    match status.to_ascii_lowercase().as_str() {
        "completed" => "Completed".to_owned(),
        "inprogress" | "in_progress" => "InProgress".to_owned(),
        _ => status.to_owned(),
    }
}

/// Creates (or finds, for a repeated caller reference) the invalidation. A passing failure is
/// retried within the deadline: the caller reference makes a repeat find the first invalidation
/// instead of making a second one, even when only the answer got lost.
pub async fn create(
    cf: &Client,
    distribution_id: &str,
    paths: &[String],
    reference: &str,
    deadline: &Deadline,
) -> anyhow::Result<(String, String)> {
    let batch = InvalidationBatch::builder()
        .paths(
            Paths::builder()
                .quantity(paths.len() as i32)
                .set_items(Some(paths.to_vec()))
                .build()?,
        )
        .caller_reference(reference)
        .build()?;
    let what = format!("invalidating {}", paths.join(" "));
    let what = &what;
    persist(deadline, || {
        let call = cf
            .create_invalidation()
            .distribution_id(distribution_id)
            .invalidation_batch(batch.clone())
            .send();
        async move {
            match call.await {
                Ok(out) => {
                    let inv = out.invalidation();
                    Ok((
                        inv.map(|i| i.id().to_owned()).unwrap_or_default(),
                        inv.map(|i| normalize(i.status())).unwrap_or_default(),
                    ))
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_distribution()) =>
                {
                    anyhow::bail!(
                        "distribution {distribution_id} does not exist: check --distribution-id, or deploy the frontend stack"
                    )
                }
                Err(e) => Err(explain(what, &e)),
            }
        }
    })
    .await
}

/// The first wait between polls, growing by half each time up to 15 s. (Short in unit tests, which
/// run on recorded answers.)
#[cfg(not(test))]
const FIRST_POLL: Duration = Duration::from_secs(2);
#[cfg(test)]
const FIRST_POLL: Duration = Duration::from_millis(20);

/// Polls until `Completed` or the deadline; the last status seen. A passing failure to read it is
/// polled through; a lasting one is an error.
pub async fn wait(
    ctx: &Context,
    cf: &Client,
    distribution_id: &str,
    id: &str,
    deadline: &Deadline,
) -> anyhow::Result<String> {
    let spinner = ctx.spinner();
    let mut delay = FIRST_POLL;
    let mut status = "InProgress".to_owned();
    let what = format!("reading invalidation {id}");
    let what = &what;
    loop {
        let read = persist(deadline, || {
            let call = cf
                .get_invalidation()
                .distribution_id(distribution_id)
                .id(id)
                .send();
            async move { call.await.map_err(|e| explain(what, &e)) }
        })
        .await;
        match read {
            Ok(out) => {
                status = out
                    .invalidation()
                    .map(|i| normalize(i.status()))
                    .unwrap_or_default();
            }
            // Still failing in passing when time ran out: the last status seen stands.
            Err(e) if is_transient(&e) && deadline.expired() => break,
            Err(e) => {
                if let Some(s) = spinner {
                    s.finish_and_clear();
                }
                return Err(e);
            }
        }
        let line = format!(
            "invalidation {id}: {status} ({}s)",
            deadline.elapsed().as_secs()
        );
        match &spinner {
            Some(s) => s.set_message(line),
            None => ctx.say(line),
        }
        if status == "Completed" || !deadline.sleep(delay).await {
            break;
        }
        delay = (delay * 3 / 2).min(Duration::from_secs(15));
    }
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    Ok(status)
}

/// Invalidates and, with `--wait`, follows it to `Completed` or `--timeout`.
pub async fn run(ctx: &Context, args: InvalidateArgs) -> anyhow::Result<InvalidateReport> {
    let config = ctx.aws().await?;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let distribution_id = match &args.distribution_id {
        Some(d) => d.clone(),
        None => {
            stacks::output(
                &cfn,
                ctx.stage(),
                "frontend",
                "DistributionId",
                "--distribution-id",
            )
            .await?
        }
    };
    let content = match args.content.clone() {
        Some(c) => c,
        None => {
            let bucket = match &args.bucket {
                Some(b) => Some(b.clone()),
                // No frontend stack (or no such output) leaves the paths alone to name it; a call
                // that failed for another reason (credentials, throttling past retries) stops here.
                None => {
                    match stacks::output(&cfn, ctx.stage(), "frontend", "BucketName", "--bucket")
                        .await
                    {
                        Ok(b) => Some(b),
                        Err(e) if failure_of(&e).is_none_or(|f| f == Failure::Refused) => None,
                        Err(e) => return Err(e),
                    }
                }
            };
            match bucket {
                Some(b) => content_hash(
                    &list_bucket(&s3_client(&config, ctx.custom_endpoint()), &b).await?,
                ),
                // Without the bucket, the paths alone name it: a retry still finds the same one.
                None => String::new(),
            }
        }
    };
    // Without the bucket's content to name it, each run is its own invalidation (a retry within the
    // same minute still finds the first one).
    let content = if content.is_empty() {
        format!(
            "minute-{}",
            notes_handlers::domain::clock::now_millis() / 60_000
        )
    } else {
        content
    };
    let reference = caller_reference(&args.paths, &content);
    let cf = Client::new(&config);
    let deadline = Deadline::after(args.timeout);
    invalidate(ctx, &cf, &distribution_id, &args, &reference, &deadline).await
}

/// Creates the invalidation and, with `--wait`, follows it; still running at the deadline is the
/// report's problem (exit 1).
async fn invalidate(
    ctx: &Context,
    cf: &Client,
    distribution_id: &str,
    args: &InvalidateArgs,
    reference: &str,
    deadline: &Deadline,
) -> anyhow::Result<InvalidateReport> {
    let (id, mut status) = create(cf, distribution_id, &args.paths, reference, deadline).await?;
    let mut problem = None;
    if args.wait && status != "Completed" {
        status = wait(ctx, cf, distribution_id, &id, deadline).await?;
        if status != "Completed" {
            problem = Some(format!(
                "invalidation {id} is still {status} after --timeout {}; it goes on in CloudFront: check it with `aws cloudfront get-invalidation --distribution-id {distribution_id} --id {id}`",
                deadline.shown()
            ));
        }
    }
    Ok(InvalidateReport {
        invalidation_id: id,
        status,
        distribution_id: distribution_id.to_owned(),
        paths: args.paths.clone(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudfront::operation::create_invalidation::CreateInvalidationOutput;
    use aws_sdk_cloudfront::operation::get_invalidation::GetInvalidationOutput;
    use aws_sdk_cloudfront::types::Invalidation;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    fn invalidation(status: &str) -> Invalidation {
        Invalidation::builder()
            .id("I1")
            .status(status)
            .create_time(aws_sdk_cloudfront::primitives::DateTime::from_secs(0))
            .invalidation_batch(
                InvalidationBatch::builder()
                    .paths(Paths::builder().quantity(1).items("/*").build().unwrap())
                    .caller_reference("r")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn polled(status: &str) -> GetInvalidationOutput {
        GetInvalidationOutput::builder()
            .invalidation(invalidation(status))
            .build()
    }

    fn created() -> Rule {
        mock!(Client::create_invalidation).then_output(|| {
            CreateInvalidationOutput::builder()
                .invalidation(invalidation("InProgress"))
                .build()
        })
    }

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(
            aws_sdk_cloudfront,
            RuleMode::Sequential,
            rules.iter().copied(),
            |c| c.retry_config(aws_sdk_cloudfront::config::retry::RetryConfig::disabled())
        )
    }

    fn ctx() -> Context {
        use clap::Parser;
        Context::new(crate::Cli::parse_from(["notesctl", "--quiet", "invalidate"]).global)
    }

    fn args(timeout: Duration) -> InvalidateArgs {
        InvalidateArgs {
            wait: true,
            timeout,
            ..InvalidateArgs::after_sync("b", "c")
        }
    }

    fn answer(status: u16, body: &'static str) -> aws_smithy_runtime_api::http::Response {
        let mut r = aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::from(body),
        );
        r.headers_mut().insert("content-type", "text/xml");
        r
    }

    /// `--wait` polls through several InProgress answers, and through throttling in between, to
    /// Completed: exit 0.
    #[tokio::test]
    async fn wait_polls_in_progress_and_throttling_until_completed() {
        let create = created();
        let polls = mock!(Client::get_invalidation)
            .sequence()
            .output(|| polled("InProgress"))
            .times(3)
            .http_response(|| {
                answer(
                    400,
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>",
                )
            })
            .times(2)
            .output(|| polled("Completed"))
            .build();
        let cf = client(&[&create, &polls]);
        let a = args(Duration::from_secs(600));
        let deadline = Deadline::after(a.timeout);
        let r = invalidate(&ctx(), &cf, "D1", &a, "ref", &deadline)
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_str(), r.problem.as_deref()),
            ("Completed", None)
        );
        assert_eq!(
            polls.num_calls(),
            6,
            "three InProgress, two throttled, Completed"
        );
        assert_eq!(crate::output::Report::exit(&r), Exit::Ok);
    }

    /// Still InProgress at `--timeout 1s`: the report says what is still running and how to look at
    /// it, and the exit code is 1.
    #[tokio::test]
    async fn a_wait_past_the_timeout_is_exit_1_with_the_way_to_follow_it() {
        let create = created();
        let polls = mock!(Client::get_invalidation)
            .sequence()
            .output(|| polled("InProgress"))
            .repeatedly()
            .build();
        let cf = client(&[&create, &polls]);
        let a = args(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let deadline = Deadline::after(a.timeout);
        let r = invalidate(&ctx(), &cf, "D1", &a, "ref", &deadline)
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.status, "InProgress");
        let problem = r.problem.clone().expect("a problem");
        assert!(
            problem.contains("still InProgress after --timeout 1s")
                && problem.contains("aws cloudfront get-invalidation --distribution-id D1 --id I1"),
            "{problem}"
        );
        assert_eq!(crate::output::Report::exit(&r), Exit::Problem);
        assert!(polls.num_calls() >= 1);
    }

    #[test]
    fn caller_references_follow_paths_and_content() {
        let a = caller_reference(&["/*".into()], "c1");
        assert_eq!(
            a,
            caller_reference(&["/*".into()], "c1"),
            "a retry is the same invalidation"
        );
        assert_ne!(
            a,
            caller_reference(&["/*".into()], "c2"),
            "new content, new invalidation"
        );
        assert_eq!(
            caller_reference(&["/a".into(), "/b".into()], ""),
            caller_reference(&["/b".into(), "/a".into()], "")
        );
        assert!(a.len() <= 128);
    }
}
