//! `notesctl validate`: the templates held, before AWS sees them, to the handlers' own declaration
//! (`notes_handlers::dispatch`) and to the rules AWS enforces only at run time — the classic first-
//! deploy failures that pass a linter: a role missing one action, a variable renamed on one side, a
//! route without its Lambda permission, a rule aimed at the wrong function, an import nobody exports.
//!
//! [`functions`] checks each function (handler, name, code, environment, role), [`triggers`] how each
//! is reached (routes, permissions, event rules, the queue mapping), [`stacks`] the stacks together
//! (imports, parameters, the visibility-timeout rule, name lengths), and [`limits`] every documented
//! AWS limit a template can break — limits no emulator here enforces, so a first real deploy would be
//! the first to meet them. Each finding names the file, the resource, what is wrong and how to fix it.

mod destinations;
pub mod functions;
pub mod limits;
pub mod model;
pub mod stacks;
pub mod triggers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::output::{Exit, Report};
use model::{App, Res};

/// What `Stage` is bound to when names are compared with the app's convention.
pub const STAGE: &str = "STAGE";

#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The CloudFormation templates.
    #[arg(long, default_value = "templates")]
    pub templates: PathBuf,
}

/// Which rule a finding breaks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every function serves a declared handler, once, under its name, from the uploaded zip.
    Handler,
    /// A function's environment is exactly its handler's variables, each naming the right resource.
    Environment,
    /// A function's role grants exactly the declared actions, on the declared resources.
    Permissions,
    /// Every function traces actively (X-Ray), and its role lets it write its traces.
    Tracing,
    /// Every route reaches its declared handler, with the permission API Gateway needs.
    Route,
    /// Every event rule sends the declared detail-types to the declared target, allowed, with a DLQ.
    EventRule,
    /// Every function an event rule invokes (asynchronously) has an EventInvokeConfig with its
    /// retries and maximum event age set on purpose and an on-failure destination (a queue) its role
    /// may send to. Source: Lambda's asynchronous invocation,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>.
    FailureDestination,
    /// The processing queue feeds save through a mapping that reports partial failures.
    QueueTrigger,
    /// The queue's visibility timeout is at least six times save's timeout.
    Visibility,
    /// Every import has an export in an earlier stack.
    Import,
    /// Every parameter gets a value; deploy's parameters reach the stacks that need them.
    Parameter,
    /// Every name fits its service's limit for the longest allowed stage, and every template's
    /// `Stage` accepts exactly the stages `--stage` accepts. Sources: each service's limit in
    /// [`limits::names::NAMES`].
    NameLength,
    /// Every name uses only the characters its service allows, for every stage `--stage` accepts.
    /// Sources: each service's pattern in [`limits::names::NAMES`].
    NameCharacters,
    /// A template fits CloudFormation: at most 51,200 bytes in a request body (a warning: notesctl
    /// sends every template by URL) and "1 MB" from S3 (checked as 1,000,000 bytes, the smaller
    /// reading). Sources: CloudFormation quotas,
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html>;
    /// CreateChangeSet's `TemplateBody`/`TemplateURL`,
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html>.
    TemplateSize,
    /// At most 500 resources in a template. Source: CloudFormation quotas.
    ResourceCount,
    /// At most 200 parameters in a template. Source: CloudFormation quotas.
    ParameterCount,
    /// At most 200 outputs in a template. Source: CloudFormation quotas.
    OutputCount,
    /// At most 200 mappings in a template, of at most 200 attributes each. Source: CloudFormation
    /// quotas.
    MappingCount,
    /// Logical ids, parameter, output, mapping and condition names: alphanumeric, at most 255
    /// characters. Sources: CloudFormation quotas; "Resources" and "Outputs" template sections,
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/resources-section-structure.html>.
    IdLength,
    /// A template's `Description` is a literal of at most 1,024 bytes, and so is each output's.
    /// Sources: CloudFormation quotas;
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/template-description-structure.html>.
    DescriptionLength,
    /// Export names are unique within a region: no two of the six stacks export one name, and every
    /// name is `${Stage}-<Key>` with a key free of hyphens, so no two stages can export one name
    /// either; a name refers to no resource. Source: the "Outputs" section,
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/outputs-section-structure.html>.
    ExportName,
    /// A role's inline policies together are at most 10,240 characters, whitespace not counted.
    /// Source: IAM and STS quotas,
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>.
    InlinePolicySize,
    /// A role's trust policy is at most 2,048 characters (the default quota), a managed policy at
    /// most 6,144, whitespace not counted. Source: IAM and STS quotas.
    PolicyDocumentSize,
    /// A function's environment variables are at most 4 KB together (4,096 bytes of names and
    /// values), with the longest stage and every reference at its longest; names match
    /// `[a-zA-Z][a-zA-Z0-9_]+`. Sources: Lambda quotas,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>;
    /// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>.
    EnvironmentSize,
    /// A function's `Description` is at most 256 characters. Source: CreateFunction,
    /// <https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html>.
    FunctionDescription,
    /// `MemorySize` 128–10,240 MB and ephemeral storage 512–10,240 MB, for every value the template
    /// accepts. Source: Lambda quotas.
    FunctionMemory,
    /// `Timeout` 1–900 seconds, for every value the template accepts. Source: Lambda quotas.
    FunctionTimeout,
    /// Queue settings in SQS's ranges: `VisibilityTimeout` 0–43,200, `MessageRetentionPeriod`
    /// 60–1,209,600, `DelaySeconds` 0–900, `ReceiveMessageWaitTimeSeconds` 0–20,
    /// `MaximumMessageSize` 1,024–1,048,576. Source: CreateQueue,
    /// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html>.
    QueueSettings,
    /// A redrive policy's `maxReceiveCount` is 1–1,000. Source: configuring a dead-letter queue,
    /// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue.html>.
    ReceiveCount,
    /// An event rule's pattern is at most 2,048 characters (the default quota; PutRule itself takes
    /// 4,096). Sources: EventBridge quotas,
    /// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html>; PutRule.
    EventPatternSize,
    /// A route key is `$default`, or for an HTTP API `METHOD /path` (a greedy `{name+}` only last),
    /// for a WebSocket API `$connect`, `$disconnect` or a custom key. Sources:
    /// <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html>;
    /// <https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-routes.html>.
    RouteKey,
    /// A stage name is `$default` (HTTP APIs) or 1–128 letters, digits, hyphens and underscores.
    /// Source: the AWS::ApiGatewayV2::Stage reference.
    StageName,
    /// A dashboard body is JSON with at most 500 widgets (CloudWatch documents no byte limit on the
    /// body). Sources: CloudWatch quotas,
    /// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html>;
    /// PutDashboard.
    Dashboard,
    /// A log group's `RetentionInDays` is one of the values CloudWatch Logs allows. Source:
    /// PutRetentionPolicy,
    /// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>.
    LogRetention,
}

/// An error stops a deploy; a warning is worth knowing and deploys anyway.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub rule: Rule,
    /// `error` (the default) stops a deploy; `warning` does not.
    #[serde(default, skip_serializing_if = "Severity::is_error")]
    pub severity: Severity,
    pub file: String,
    /// The logical id of the resource (or parameter) at fault; empty for something missing.
    pub resource: String,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    pub fn new(rule: Rule, app: &App, r: Res, problem: String, fix: impl Into<String>) -> Finding {
        Finding {
            rule,
            severity: Severity::Error,
            file: app.file(r).to_owned(),
            resource: r.id.to_owned(),
            problem,
            fix: fix.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateReport {
    pub templates: String,
    /// How many functions, routes and event rules were checked.
    pub functions: usize,
    pub routes: usize,
    pub event_rules: usize,
    pub findings: Vec<Finding>,
    pub elapsed_ms: f64,
}

impl Severity {
    pub fn is_error(&self) -> bool {
        *self == Severity::Error
    }
}

impl Finding {
    /// The same finding, as a warning.
    pub fn warning(self) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..self
        }
    }
}

impl ValidateReport {
    /// The findings that stop a deploy.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity.is_error())
    }
}

impl Report for ValidateReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.errors().next().is_some())
    }
}

impl fmt::Display for ValidateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.findings {
            let at = if x.resource.is_empty() {
                x.file.clone()
            } else {
                format!("{} {}", x.file, x.resource)
            };
            let mark = if x.severity.is_error() { '✗' } else { '!' };
            writeln!(f, "{mark} {at}: {}", x.problem)?;
            writeln!(f, "    fix: {}", x.fix)?;
        }
        let summary = format!(
            "{} functions, {} routes, {} event rules in {}",
            self.functions, self.routes, self.event_rules, self.templates
        );
        let warnings = self.findings.len() - self.errors().count();
        let and_warnings = match warnings {
            0 => String::new(),
            1 => " (1 warning above)".to_owned(),
            n => format!(" ({n} warnings above)"),
        };
        match self.errors().count() {
            0 => write!(
                f,
                "✓ {summary}: deployable as far as the templates can tell{and_warnings}"
            ),
            n => write!(f, "{n} findings in {summary}{and_warnings}"),
        }
    }
}

/// Every finding in the templates of `dir`.
pub fn check(dir: &Path) -> anyhow::Result<ValidateReport> {
    let started = Instant::now();
    let app = App::load(dir)?;
    let mut findings = Vec::new();
    functions::check(&app, &mut findings);
    triggers::check(&app, &mut findings);
    destinations::check(&app, &mut findings);
    stacks::check(&app, &mut findings);
    limits::check(&app, &mut findings);
    findings.sort_by(|a, b| (&a.file, &a.resource, a.rule).cmp(&(&b.file, &b.resource, b.rule)));
    findings.dedup();
    Ok(ValidateReport {
        templates: dir.display().to_string(),
        functions: app.of_type("AWS::Lambda::Function").count(),
        routes: app.of_type("AWS::ApiGatewayV2::Route").count(),
        event_rules: app.of_type("AWS::Events::Rule").count(),
        findings,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

pub async fn run(_ctx: &Context, args: ValidateArgs) -> anyhow::Result<ValidateReport> {
    let dir = args.templates;
    tokio::task::spawn_blocking(move || check(&dir)).await?
}
