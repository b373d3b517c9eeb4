//! AWS helpers that several commands share, one home each: an SDK error as one line (here), the
//! stacks and their outputs, S3 listing and batch deletes, the queues by name, the alarms, and the
//! artifacts bucket.

pub mod alarms;
pub mod artifacts;
pub mod queues;
pub mod s3;
pub mod stacks;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>;

/// How a failed AWS call ended. Decided by the SDK's error kind, the service's error code and the
/// HTTP status — never by the text of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Throttling, a 5xx, a timeout, a dropped or refused connection: the same call may succeed
    /// later, so it is retried within the command's deadline.
    Transient,
    /// No usable credentials, or expired ones.
    Credentials,
    /// The credentials are not allowed to make the call.
    Denied,
    /// The endpoint answered, but not as an AWS service does (an HTML page, a proxy's error).
    NotAws,
    /// The service refused the request itself (validation, a missing resource): retrying cannot help.
    Refused,
}

impl Failure {
    pub fn transient(self) -> bool {
        self == Failure::Transient
    }
}

/// Error codes of "slow down" and of a service's passing trouble.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "TooManyInvalidationsInProgress",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "AWS.SimpleQueueService.RequestThrottled",
];

const CREDENTIAL_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidToken",
    "TokenRefreshRequired",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
];

const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
];

/// An answer that is not an AWS service's: an HTML page, or an error without an AWS error code.
fn not_aws(raw: &HttpResponse, code: Option<&str>) -> bool {
    let html = content_type(raw).is_some_and(|c| c.starts_with("text/html"));
    html || (code.is_none()
        && !raw.status().is_success()
        && raw.body().bytes().is_some_and(|b| !b.is_empty())
        && content_type(raw).is_some_and(|c| c.starts_with("text/plain")))
}

fn content_type(raw: &HttpResponse) -> Option<&str> {
    raw.headers().get("content-type")
}

fn credentials_missing(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E>,
) -> Failure {
    match err {
        SdkError::TimeoutError(_) => Failure::Transient,
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) if c.is_io() || c.is_timeout() => Failure::Transient,
            _ if credentials_missing(err) => Failure::Credentials,
            Some(c) if c.is_user() => Failure::Refused,
            // Anything else before an answer came (a TLS or proxy failure): passing, most likely.
            _ => Failure::Transient,
        },
        SdkError::ResponseError(r) => {
            let raw = r.raw();
            if not_aws(raw, None) {
                Failure::NotAws
            } else {
                // Cut short or garbled on the way: the next attempt may come whole.
                Failure::Transient
            }
        }
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            match err.code() {
                Some(c) if TRANSIENT_CODES.contains(&c) => Failure::Transient,
                Some(c) if CREDENTIAL_CODES.contains(&c) => Failure::Credentials,
                Some(c) if DENIED_CODES.contains(&c) => Failure::Denied,
                code if not_aws(raw, code) => Failure::NotAws,
                _ if status >= 500 || status == 429 => Failure::Transient,
                _ => Failure::Refused,
            }
        }
        _ => Failure::Refused,
    }
}

/// The service a client error belongs to, from its type (`aws_sdk_cloudformation::…` → CloudFormation).
fn service_of<E>() -> &'static str {
    let path = std::any::type_name::<E>();
    let krate = path.split("::").next().unwrap_or_default();
    match krate.trim_start_matches("aws_sdk_") {
        "cloudformation" => "CloudFormation",
        "cloudfront" => "CloudFront",
        "cloudwatch" => "CloudWatch",
        "cloudwatchlogs" => "CloudWatch Logs",
        "s3" => "S3",
        "sqs" => "SQS",
        "sns" => "SNS",
        "sts" => "STS",
        "lambda" => "Lambda",
        "iam" => "IAM",
        _ => "the AWS service",
    }
}

/// At most `n` characters of `s` on one line, with an ellipsis where it was cut.
pub fn clip(s: &str, n: usize) -> String {
    let s = s.trim().replace(['\n', '\r'], " ");
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
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

/// An AWS call that failed, explained in one line, and how it failed.
#[derive(Debug, thiserror::Error)]
#[error("{line}")]
pub struct AwsError {
    pub failure: Failure,
    line: String,
    /// Every attempt went unanswered (the line says so already).
    pub no_answer: Option<crate::patience::NoAnswer>,
}

/// How the AWS call behind `err` failed, if an AWS call is behind it.
pub fn failure_of(err: &anyhow::Error) -> Option<Failure> {
    err.chain()
        .find_map(|e| e.downcast_ref::<AwsError>())
        .map(|a| a.failure)
}

/// Whether `err` is an AWS call's passing trouble, worth another try within a deadline.
pub fn is_transient(err: &anyhow::Error) -> bool {
    failure_of(err).is_some_and(Failure::transient)
}

/// An SDK error as one line a person can act on: the call, the cause, and the next step.
pub fn explain<E>(action: &str, err: &SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let service = service_of::<E>();
    let said = || match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {}", clip(msg, 120)),
        (Some(code), None) => code.to_owned(),
        (None, Some(msg)) => clip(msg, 120),
        (None, None) => clip(&DisplayErrorContext(err).to_string(), 120),
    };
    let raw_answer = || match err {
        SdkError::ServiceError(se) => Some(se.raw()),
        SdkError::ResponseError(r) => Some(r.raw()),
        _ => None,
    };
    let failure = classify(err);
    // Every attempt went unanswered (the HTTP client of `context::sdk_config` says so).
    let silent = crate::patience::no_answer_in(err).cloned();
    let line = match failure {
        Failure::NotAws => {
            let (status, ctype) = raw_answer()
                .map(|r| (r.status().as_u16(), content_type(r).unwrap_or("no content type")))
                .unwrap_or((0, "no content type"));
            let ctype = ctype.split(';').next().unwrap_or(ctype);
            format!(
                "the endpoint answered HTTP {status} ({ctype}), not {service}: is --endpoint-url an AWS-compatible server?"
            )
        }
        Failure::Credentials if credentials_missing(err) => {
            "no AWS credentials were found (nothing was sent): run `aws sso login`, set AWS_PROFILE or --profile, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned()
        }
        Failure::Credentials => format!(
            "{}; your credentials are expired or not valid: run `aws sso login` (or refresh them) and run the command again",
            said()
        ),
        Failure::Denied => format!(
            "{}; these credentials may not do that: use a role or profile that may, or ask for the permission",
            said()
        ),
        Failure::Transient => match err {
            SdkError::DispatchFailure(_) if silent.is_some() => format!(
                "{}: the server there accepts connections but sends nothing back. Check --endpoint-url (for --local, is `notesctl dev` stuck?), your network or proxy",
                silent.as_ref().map(ToString::to_string).unwrap_or_default()
            ),
            SdkError::TimeoutError(_) => format!("{service} did not answer in time (after retries): check your network, --region and --endpoint-url"),
            SdkError::DispatchFailure(d) => format!(
                "could not reach {service} ({}) after retries: check your network, --region and --endpoint-url (for --local, is `notesctl dev` running?)",
                d.as_connector_error().map(|c| clip(&chain(c), 80)).unwrap_or_else(|| "no connection".into())
            ),
            _ => format!("{} (still failing after retries): try again in a minute", said()),
        },
        Failure::Refused => said(),
    };
    anyhow::Error::new(AwsError {
        failure,
        line: format!("{action} failed: {line}"),
        no_answer: silent,
    })
}

/// Runs `call` until it succeeds, fails for good, or the deadline comes. A transient failure (one
/// the SDK's own retries did not get past) waits a capped, jittered backoff and goes again; any
/// other failure returns at once. A call still going at the deadline is dropped and ends as a
/// transient failure: like a lost answer, it may or may not have taken effect.
pub async fn persist<T, Fut>(
    deadline: &crate::context::Deadline,
    mut call: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        let answer = match tokio::time::timeout(deadline.remaining(), call()).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(anyhow::Error::new(AwsError {
                    failure: Failure::Transient,
                    line: format!(
                        "no answer before --timeout {}; what was in flight may or may not have happened",
                        deadline.shown()
                    ),
                    no_answer: None,
                }));
            }
        };
        match answer {
            Err(e) if is_transient(&e) && !deadline.expired() => {
                if let Some(none) = crate::patience::no_answer(&e) {
                    crate::patience::say(&format!(
                        "{none}; trying again until --timeout {}",
                        deadline.shown()
                    ));
                }
                if !deadline.sleep(jittered(delay)).await {
                    return Err(e);
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
            done => return done,
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.0), so that clients backing off do not retry in step.
pub fn jittered(d: std::time::Duration) -> std::time::Duration {
    d.mul_f64(rand::random_range(0.5..1.0))
}
