//! `notesctl deploy`: the six stacks in dependency order, through change sets, with the change set's
//! summary first (`--preview` stops there), stack events streamed while it runs, and the failed
//! resources and their reasons when it fails — found even when a rollback already removed them.
//!
//! No changes is `unchanged` and exit 0 (the AWS CLI and SAM break pipelines there). The decision is
//! made by comparing the deployed template and parameters with ours before any change set, so it holds
//! against emulators that never report "no changes" too.
//!
//! A stack's deploy is a short sequence of steps: read the template ([`template`]), let the stack
//! settle and decide what to do with it ([`plan::next_action`]), skip it when nothing changed, make a
//! change set and read its changes ([`change_set`]), execute it, follow its events ([`events`]), and
//! report the outcome.

pub mod artifacts;
pub mod change_set;
pub mod compare;
mod data;
pub mod events;
pub mod hotswap;
pub mod inputs;
pub mod plan;
pub mod releases;
pub mod report;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::primitives::DateTime;
use aws_sdk_cloudformation::types::{ChangeSetType, Stack, StackStatus};

use super::invalidate::{self, InvalidateArgs};
use super::sync_frontend::{self, SyncArgs};
use super::validate::{self, ValidateArgs};
use crate::aws::{explain, stacks};
use crate::context::{Context, Deadline, confirm, interactive, parse_duration};
pub use artifacts::{Code, Templates};
pub use change_set::Template;
use change_set::Worked;
use events::Settled;
pub use hotswap::HotswapReport;
pub use inputs::{
    Inputs, artifact_store, carries_code, load_template, parameter_values, region_of, stack_diff,
    stack_diff_of, values_without_code,
};
use plan::{NextAction, dependency_hint, next_action};
pub use report::{
    Change, ChangeAction, DeployReport, Failure, FailureStatus, FrontendReport, StackAction,
    StackReport,
};

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Show what would change and stop.
    #[arg(long)]
    pub preview: bool,
    /// Apply without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// After the stacks, sync this frontend folder and invalidate the CDN.
    #[arg(long, value_name = "DIR")]
    pub frontend: Option<PathBuf>,
    /// When the only difference from the deployed stacks is the code zip, skip CloudFormation: point
    /// every function at the new zip and wait until each runs it (seconds, not minutes). Anything
    /// else changed → a normal deploy, saying why.
    #[arg(long)]
    pub hotswap: bool,
    /// Let --hotswap touch a protected stage — prod, production, prd or live between its hyphens
    /// (it leaves CloudFormation's CodeKey behind the running code until the next full deploy).
    #[arg(long, requires = "hotswap")]
    pub force: bool,
    /// With --hotswap: package and hotswap once, then again whenever a file under --watch-dir
    /// changes (after it has been quiet for half a second), until Ctrl-C.
    #[arg(long, requires = "hotswap")]
    pub watch: bool,
    /// The folder --watch watches.
    #[arg(long, value_name = "DIR", default_value = "handlers")]
    pub watch_dir: PathBuf,
    /// Skip `notesctl validate` of the templates before deploying.
    #[arg(long)]
    pub no_validate: bool,
    /// How long to wait for CloudFormation in all (30s, 15m, 1h); past it, deploy reports what is
    /// still running and exits 1 (CloudFormation goes on).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Set by `rollback`: the release this deploy goes back to, recorded with the new release.
    #[arg(skip)]
    pub rollback_of: Option<String>,
}

/// One deploy run: the context, the stacks' client, the arguments and the parameter values.
struct Deploy<'a> {
    ctx: &'a Context,
    cfn: Client,
    args: &'a DeployArgs,
    values: BTreeMap<&'static str, String>,
    deadline: Deadline,
    /// Where the change sets read the templates from.
    templates: Templates,
}

const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

fn status_of(stack: &Option<Stack>) -> String {
    stack
        .as_ref()
        .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
        .unwrap_or_default()
}

impl StackReport {
    fn new(name: &str, action: StackAction, stack: &Option<Stack>) -> StackReport {
        StackReport {
            name: name.to_owned(),
            action,
            status: status_of(stack),
            outputs: match action {
                StackAction::Created
                | StackAction::Updated
                | StackAction::Unchanged
                | StackAction::Hotswapped => {
                    stack.as_ref().map(stacks::outputs_of).unwrap_or_default()
                }
                _ => BTreeMap::new(),
            },
            failures: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// The stack as a whole failed at one of our steps.
    fn failed(
        name: &str,
        stack: &Option<Stack>,
        status: FailureStatus,
        reason: String,
    ) -> StackReport {
        let mut r = StackReport::new(name, StackAction::Failed, stack);
        r.failures.push(Failure {
            logical_id: name.to_owned(),
            resource_type: STACK_TYPE.into(),
            status,
            reason,
        });
        r
    }
}

impl Deploy<'_> {
    /// The stack's template and parameters, from `--templates`.
    async fn template(&self, short: &str) -> anyhow::Result<Template> {
        load_template(&self.args.inputs.templates, short, &self.values).await
    }

    async fn confirm(&self, action: &str) -> anyhow::Result<()> {
        if self.args.yes {
            return Ok(());
        }
        confirm(action, "nothing changed").await
    }

    /// Settles the stack and decides: a change set of this type, or a report without one (blocked, or
    /// a recreate under `--preview`). A stack whose first create failed is deleted first.
    async fn decide(
        &self,
        name: &str,
    ) -> anyhow::Result<Result<(Option<Stack>, ChangeSetType), StackReport>> {
        let mut stack =
            match events::settle(self.ctx, &self.cfn, name, None, &self.deadline).await? {
                Settled::Done(s) => s,
                Settled::StillRunning(s) => return Ok(Err(self.still_running(name, &s))),
            };
        let mut action = next_action(name, stack.as_ref().and_then(|s| s.stack_status()));
        if action == NextAction::DeleteAndRecreate {
            let review = stack.as_ref().and_then(|s| s.stack_status())
                == Some(&StackStatus::ReviewInProgress);
            if self.args.preview {
                let mut r = StackReport::new(name, StackAction::Preview, &stack);
                r.changes.push(Change {
                    action: ChangeAction::Recreate,
                    logical_id: name.to_owned(),
                    resource_type: STACK_TYPE.into(),
                    replacement: true,
                });
                return Ok(Err(r));
            }
            if !review {
                self.confirm(&format!("{name} is ROLLBACK_COMPLETE (its first create failed); delete it and create it again"))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}. {name} is ROLLBACK_COMPLETE: rerun with --yes to delete and recreate it"))?;
            }
            self.ctx.say(format!(
                "{name}: deleting the {} stack",
                if review { "never-created" } else { "failed" }
            ));
            self.cfn
                .delete_stack()
                .stack_name(name)
                .send()
                .await
                .map_err(|e| explain(&format!("deleting {name}"), &e))?;
            stack = match events::settle(self.ctx, &self.cfn, name, None, &self.deadline).await? {
                Settled::Done(s) => s,
                Settled::StillRunning(s) => return Ok(Err(self.still_running(name, &s))),
            };
            action = next_action(name, stack.as_ref().and_then(|s| s.stack_status()));
        }
        match action {
            NextAction::Create => Ok(Ok((stack, ChangeSetType::Create))),
            NextAction::Update => Ok(Ok((stack, ChangeSetType::Update))),
            NextAction::Blocked(why) => Ok(Err(StackReport::failed(
                name,
                &stack,
                FailureStatus::Blocked,
                why,
            ))),
            other => anyhow::bail!("{name}: unexpected next action {other:?} after waiting"),
        }
    }

    /// The report of a stack CloudFormation is still working on at the deadline.
    fn still_running(&self, name: &str, stack: &Option<Stack>) -> StackReport {
        let mut r = StackReport::new(name, StackAction::StillRunning, stack);
        r.failures.push(Failure {
            logical_id: name.to_owned(),
            resource_type: STACK_TYPE.into(),
            status: FailureStatus::NextStep,
            reason: format!(
                "{name} is still {} after --timeout {}: CloudFormation goes on without notesctl. Follow it with `notesctl status`, or deploy again with a longer --timeout once it settles",
                if r.status.is_empty() { "in progress" } else { &r.status },
                self.deadline.shown()
            ),
        });
        r
    }

    fn show_changes(&self, name: &str, new_stack: bool, changes: &[Change]) {
        let kind = if new_stack { "create" } else { "update" };
        self.ctx.say(format!("{name}: {kind} change set"));
        for c in changes {
            self.ctx.say(format!(
                "  {:<7} {:<36} {}{}",
                c.action.to_string(),
                c.logical_id,
                c.resource_type,
                if c.replacement { "  (replacement)" } else { "" }
            ));
        }
    }

    /// What the stack is after its change set ran: created/updated, or failed with the resources
    /// that failed (from this run's events) and the next step where a person must act.
    async fn outcome(
        &self,
        name: &str,
        new_stack: bool,
        changes: Vec<Change>,
        started: DateTime,
        token: &str,
    ) -> anyhow::Result<StackReport> {
        let done =
            match events::settle(self.ctx, &self.cfn, name, Some(started), &self.deadline).await? {
                Settled::Done(s) => s,
                Settled::StillRunning(s) => {
                    let mut r = self.still_running(name, &s);
                    r.changes = changes;
                    return Ok(r);
                }
            };
        let status = done.as_ref().and_then(|s| s.stack_status()).cloned();
        if matches!(
            status,
            Some(StackStatus::CreateComplete | StackStatus::UpdateComplete)
        ) {
            let action = if new_stack {
                StackAction::Created
            } else {
                StackAction::Updated
            };
            let mut r = StackReport::new(name, action, &done);
            r.changes = changes;
            return Ok(r);
        }
        let mut r = StackReport::new(name, StackAction::Failed, &done);
        if done.is_none() {
            r.status = "DELETE_COMPLETE".into();
        }
        r.changes = changes;
        r.failures = match events::failures(&self.cfn, name, started, Some(token)).await {
            Ok(found) => found,
            Err(e) => vec![Failure {
                logical_id: name.to_owned(),
                resource_type: STACK_TYPE.into(),
                status: FailureStatus::Resource(r.status.clone()),
                reason: format!(
                    "the failed resources cannot be named: {e:#}. See the stack's events in the console"
                ),
            }],
        };
        if r.failures.is_empty() {
            r.failures.push(Failure {
                logical_id: name.to_owned(),
                resource_type: STACK_TYPE.into(),
                status: FailureStatus::Resource(r.status.clone()),
                reason: done
                    .as_ref()
                    .and_then(|s| s.stack_status_reason())
                    .unwrap_or("no reason given")
                    .to_owned(),
            });
        }
        if let NextAction::Blocked(why) = next_action(name, status.as_ref()) {
            r.failures.push(Failure {
                logical_id: name.to_owned(),
                resource_type: STACK_TYPE.into(),
                status: FailureStatus::NextStep,
                reason: why,
            });
        }
        Ok(r)
    }

    async fn deploy_stack(&self, short: &str) -> anyhow::Result<StackReport> {
        let name = stacks::stack_name(self.ctx.stage(), short);
        let template = self.template(short).await?;
        let (stack, change_type) = match self.decide(&name).await? {
            Ok(go) => go,
            Err(report) => return Ok(report),
        };
        let new_stack = change_type == ChangeSetType::Create;
        if let Some(s) = &stack
            && !new_stack
            && change_set::deployed_matches(&self.cfn, &name, s, &template).await
        {
            return Ok(StackReport::new(&name, StackAction::Unchanged, &stack));
        }
        let cfn = &self.cfn;
        let url = self.templates.url(self.ctx, &name, &template.body).await?;
        let arn = match change_set::create(cfn, &name, short, &template, &url, change_type).await? {
            Ok(arn) => arn,
            Err(reason) => {
                let reason = dependency_hint(&reason);
                let status = FailureStatus::ChangeSetFailed;
                return Ok(StackReport::failed(&name, &stack, status, reason));
            }
        };
        let changes = match change_set::worked_out(cfn, &name, &arn, &self.deadline).await? {
            Worked::Changes(changes) => changes,
            Worked::NoChanges => {
                change_set::discard(cfn, &name, &arn, new_stack).await;
                let now = stacks::describe(cfn, &name).await?;
                return Ok(StackReport::new(&name, StackAction::Unchanged, &now));
            }
            Worked::Failed(reason) => {
                change_set::discard(cfn, &name, &arn, new_stack).await;
                let reason = dependency_hint(&reason);
                let status = FailureStatus::ChangeSetFailed;
                return Ok(StackReport::failed(&name, &stack, status, reason));
            }
        };
        self.show_changes(&name, new_stack, &changes);
        if self.args.preview {
            change_set::discard(cfn, &name, &arn, new_stack).await;
            let mut r = StackReport::new(&name, StackAction::Preview, &stack);
            r.changes = changes;
            return Ok(r);
        }
        if let Err(e) = self
            .confirm(&format!("apply these changes to {name}"))
            .await
        {
            change_set::discard(cfn, &name, &arn, new_stack).await;
            return Err(e);
        }
        let token = format!(
            "notesctl-{short}-{}",
            notes_handlers::domain::clock::now_millis()
        );
        let started = DateTime::from(std::time::SystemTime::now() - Duration::from_secs(2));
        if let Err(reason) = change_set::execute(cfn, &name, &arn, &token).await? {
            let now = stacks::describe(cfn, &name).await?;
            let status = FailureStatus::ExecuteFailed;
            return Ok(StackReport::failed(
                &name,
                &now,
                status,
                dependency_hint(&reason),
            ));
        }
        change_set::wait_for_execution(cfn, &name, &arn).await;
        self.outcome(&name, new_stack, changes, started, &token)
            .await
    }
}

pub async fn run(ctx: &Context, args: DeployArgs) -> anyhow::Result<DeployReport> {
    let order = stacks::selected(&args.inputs.stacks)?;
    if args.hotswap && crate::context::protected(ctx.stage()) && !args.force {
        anyhow::bail!(
            "refusing to hotswap {:?}, a protected stage (its name has prod, production, prd or live between hyphens): a hotswap leaves CloudFormation's CodeKey behind the code the functions run until the next full deploy. Pass --force to do it anyway, or deploy without --hotswap",
            ctx.stage()
        );
    }
    if !args.yes && !args.preview && !interactive() {
        anyhow::bail!(
            "refusing to deploy without confirmation: pass --yes (no terminal to ask on), or --preview to only look"
        );
    }
    if !args.no_validate {
        let checked = validate::run(
            ctx,
            ValidateArgs {
                templates: args.inputs.templates.clone(),
            },
        )
        .await?;
        // Warnings (a template over the body limit, which deploy sends by URL anyway) are for
        // `notesctl validate` to show; a deploy stops only on errors.
        let errors = checked.errors().count();
        if errors > 0 {
            return Ok(DeployReport {
                problem: Some(format!(
                    "deploy stopped before touching AWS: validate found {} problems in {} (each above, with its fix). Fix them, or pass --no-validate to deploy anyway",
                    errors, checked.templates
                )),
                findings: checked.errors().cloned().collect(),
                ..DeployReport::default()
            });
        }
    }
    let config = ctx.aws().await?;
    let (values, code) = parameter_values(ctx, &args.inputs, &config, &order).await?;
    let cfn = Client::new(&config);
    if args.hotswap
        && !args.preview
        && let Some(mut report) =
            hotswap::run(ctx, &cfn, &config, &args, &values, &order, &code).await?
    {
        if report.problem.is_none() && report.hotswap.is_some() {
            let deployed = code.as_ref().map(|(c, s)| (c.key.as_str(), s));
            releases::record_deploy(ctx, &config, &args, &order, &values, deployed, &mut report)
                .await;
        }
        return Ok(report);
    }
    let store = artifact_store(ctx, &args.inputs, &config, &code).await?;
    let templates = Templates::ready(ctx, store, &region_of(&config)?).await?;
    let lambda = aws_sdk_lambda::Client::new(&config);
    let behind = match (&code, args.preview) {
        (Some(_), false) => hotswap::left_behind(ctx, &cfn, &lambda, &args, &order).await?,
        _ => Vec::new(),
    };
    if let (Some((code, store)), false) = (&code, args.preview) {
        let region = config.region().map(|r| r.to_string());
        artifacts::upload(ctx, store, code, region.as_deref()).await?;
    }
    let deploy = Deploy {
        ctx,
        cfn,
        args: &args,
        values: values.clone(),
        deadline: Deadline::after(args.timeout),
        templates,
    };
    let mut report = DeployReport::default();
    for &short in &order {
        let r = deploy.deploy_stack(short).await?;
        if short == "data" {
            data::mark_new_table(ctx, &config, &r).await;
        }
        if add_stack(&mut report, ctx.stage(), short, r) {
            return Ok(report);
        }
    }
    if let (Some((code, _)), false) = (&code, args.preview) {
        let functions = functions_in(&args.inputs.templates, &order, ctx.stage())?;
        report.code_mismatches = artifacts::mismatches(&lambda, &functions, &code.sha256).await?;
        if !report.code_mismatches.is_empty() {
            let names: Vec<&str> = report
                .code_mismatches
                .iter()
                .map(|m| m.function.as_str())
                .collect();
            // A stack whose CodeKey already named this zip was unchanged, so CloudFormation left
            // alone the functions a hotswap had pointed elsewhere.
            let next = if names.iter().any(|n| behind.iter().any(|b| b == n)) {
                "a hotswap left them on other code and CloudFormation saw nothing to change: run `notesctl deploy --hotswap` to point them at this zip"
            } else {
                "deploy again, or look for an update outside notesctl"
            };
            report.problem = Some(format!(
                "{} not run the zip this deploy uploaded (CodeSha256 differs from {}): {next}",
                if names.len() == 1 {
                    format!("{} does", names[0])
                } else {
                    format!("{} do", names.join(", "))
                },
                code.sha256
            ));
            return Ok(report);
        }
        report.reconciled = behind;
    }
    if !args.preview {
        let deployed = code.as_ref().map(|(c, s)| (c.key.as_str(), s));
        releases::record_deploy(ctx, &config, &args, &order, &values, deployed, &mut report).await;
    }
    if let (Some(dir), false) = (&args.frontend, args.preview) {
        match ship_frontend(ctx, dir).await {
            Ok(shipped) => {
                report.problem = shipped.invalidation.problem.clone();
                report.frontend = Some(shipped);
            }
            Err(e) => {
                report.problem = Some(format!(
                    "the stacks are deployed, but shipping the frontend failed: {e:#}. Run `notesctl sync-frontend {}` to retry",
                    dir.display()
                ))
            }
        }
    }
    Ok(report)
}

/// Adds a stack's outcome to the report; a stack that failed, or that CloudFormation was still working
/// on at `--timeout`, stops the deploy (true) with the problem, so the run exits 1.
fn add_stack(report: &mut DeployReport, stage: &str, short: &str, r: StackReport) -> bool {
    let failed = matches!(r.action, StackAction::Failed | StackAction::StillRunning);
    let advice = r
        .failures
        .iter()
        .find(|f| f.status.is_advice())
        .map(|f| f.reason.clone());
    report.stacks.push(r);
    if failed {
        let stopped = format!(
            "deploy stopped at {}: the stacks after it were not touched",
            stacks::stack_name(stage, short)
        );
        report.problem = Some(match advice {
            Some(w) => format!("{w}\n{stopped}"),
            None => stopped,
        });
    }
    failed
}

/// The names (for `stage`) of the functions the templates of `stacks` define.
pub(crate) fn functions_in(
    templates: &Path,
    stacks: &[&str],
    stage: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for short in stacks {
        let path = templates.join(format!("{short}.yaml"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let doc = crate::template::parse(&text)?;
        for r in doc["Resources"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            if r["Type"] == "AWS::Lambda::Function"
                && let Some(h) = r["Properties"]["Handler"]
                    .as_str()
                    .and_then(|h| h.parse::<notes_handlers::HandlerName>().ok())
            {
                out.push(h.spec().function_name(stage));
            }
        }
    }
    Ok(out)
}

/// `sync-frontend` then `invalidate --wait`, for `deploy --frontend`.
async fn ship_frontend(ctx: &Context, dir: &Path) -> anyhow::Result<FrontendReport> {
    let sync = sync_frontend::run(ctx, SyncArgs::for_deploy(dir.to_path_buf())).await?;
    let after_sync = InvalidateArgs::after_sync(&sync.bucket, &sync.content_hash);
    let invalidation = invalidate::run(ctx, after_sync).await?;
    Ok(FrontendReport { sync, invalidation })
}

#[cfg(test)]
mod recorded {
    //! The paths moto cannot act out, on recorded CloudFormation responses.
    use super::*;
    use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput;
    use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
    use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::{
        DescribeStacksError, DescribeStacksOutput,
    };
    use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
    use aws_sdk_cloudformation::operation::get_template::GetTemplateOutput;
    use aws_sdk_cloudformation::types::ChangeSetStatus;
    use aws_sdk_cloudformation::types::{
        ExecutionStatus, Output, ResourceStatus, Stack, StackEvent,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    const TEMPLATE: &str = "Parameters:\n  Stage:\n    Type: String\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n";

    fn stack(status: StackStatus) -> Stack {
        Stack::builder()
            .stack_name("p-event-stack")
            .stack_status(status)
            .creation_time(aws_sdk_cloudformation::primitives::DateTime::from_secs(0))
            .outputs(
                Output::builder()
                    .output_key("QueueUrl")
                    .output_value("https://sqs/q")
                    .build(),
            )
            .build()
    }

    fn setup(dir: &std::path::Path) -> (Context, DeployArgs) {
        use clap::Parser;
        std::fs::write(dir.join("event.yaml"), TEMPLATE).unwrap();
        let cli = crate::Cli::parse_from([
            "notesctl",
            "--quiet",
            "--stage",
            "p",
            "deploy",
            "--yes",
            "--stack",
            "event",
            "--templates",
            dir.to_str().unwrap(),
        ]);
        let crate::Command::Deploy(args) = cli.command else {
            unreachable!()
        };
        (Context::new(cli.global), args)
    }

    /// The template's key in the artifacts bucket, and the URL change sets must be made from.
    fn template_location() -> (String, String) {
        let key = crate::aws::artifacts::template_key("p", TEMPLATE.as_bytes());
        let url = format!("https://b.s3.eu-west-1.amazonaws.com/{key}");
        (key, url)
    }

    /// An artifacts bucket `b` that stores the template (S3 answering HeadObject 404, then PutObject)
    /// and counts the uploads.
    fn bucket() -> (Templates, aws_smithy_mocks::Rule) {
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_sdk_s3::operation::put_object::PutObjectOutput;
        let (key, _) = template_location();
        let head = mock!(aws_sdk_s3::Client::head_object).then_error(|| {
            HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
        });
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                r.bucket() == Some("b")
                    && r.key() == Some(key.as_str())
                    && r.expected_bucket_owner() == Some("123456789012")
            })
            .then_output(|| PutObjectOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&head, &put]);
        let store = crate::aws::artifacts::Artifacts {
            s3,
            bucket: "b".into(),
            owner: "123456789012".into(),
            plain_http: false,
        };
        let templates = Templates {
            store,
            region: "eu-west-1".into(),
        };
        (templates, put)
    }

    /// Deploys the event stack (a one-queue template) against CloudFormation answering by `rules`.
    async fn deploy_event(rules: &[&aws_smithy_mocks::Rule]) -> StackReport {
        deploy_event_within(rules, None).await
    }

    /// As [`deploy_event`], with `--timeout` (its default when `None`).
    async fn deploy_event_within(
        rules: &[&aws_smithy_mocks::Rule],
        timeout: Option<Duration>,
    ) -> StackReport {
        let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, rules);
        let dir = tempfile::tempdir().unwrap();
        let (ctx, args) = setup(dir.path());
        let (templates, put) = bucket();
        let deploy = Deploy {
            ctx: &ctx,
            cfn,
            args: &args,
            values: BTreeMap::from([("Stage", "p".to_owned())]),
            deadline: Deadline::after(timeout.unwrap_or(args.timeout)),
            templates,
        };
        let report = deploy.deploy_stack("event").await.unwrap();
        assert_eq!(
            put.num_calls(),
            1,
            "the template went to the artifacts bucket"
        );
        report
    }

    fn not_found() -> DescribeStacksError {
        DescribeStacksError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack with id p-event-stack does not exist")
                .build(),
        )
    }

    const SET_ARN: &str =
        "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/notesctl-1/0f1e2d3c";

    #[tokio::test]
    async fn rollback_complete_is_deleted_and_recreated() {
        let describe = mock!(Client::describe_stacks)
            .sequence()
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::RollbackComplete))
                    .build()
            })
            .error(not_found)
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::CreateComplete))
                    .build()
            })
            .repeatedly()
            .build();
        let delete =
            mock!(Client::delete_stack).then_output(|| DeleteStackOutput::builder().build());
        // From the template's URL in the artifacts bucket, never its body.
        let (_, url) = template_location();
        let create = mock!(Client::create_change_set)
            .match_requests(move |r| {
                r.change_set_type() == Some(&ChangeSetType::Create)
                    && r.template_url() == Some(url.as_str())
                    && r.template_body().is_none()
            })
            .then_output(|| CreateChangeSetOutput::builder().id(SET_ARN).build());
        // Later calls name the set by its ARN, never by a name another stack may share.
        let set = mock!(Client::describe_change_set)
            .match_requests(|r| r.change_set_name() == Some(SET_ARN))
            .sequence()
            .output(|| {
                DescribeChangeSetOutput::builder()
                    .status(ChangeSetStatus::CreateComplete)
                    .build()
            })
            .output(|| {
                DescribeChangeSetOutput::builder()
                    .status(ChangeSetStatus::CreateComplete)
                    .execution_status(ExecutionStatus::ExecuteComplete)
                    .build()
            })
            .repeatedly()
            .build();
        let execute = mock!(Client::execute_change_set)
            .match_requests(|r| r.change_set_name() == Some(SET_ARN))
            .then_output(|| ExecuteChangeSetOutput::builder().build());
        let events = mock!(Client::describe_stack_events)
            .then_output(|| DescribeStackEventsOutput::builder().build());
        let report = deploy_event(&[&describe, &delete, &create, &set, &execute, &events]).await;
        assert_eq!(
            (report.action, report.status.as_str()),
            (StackAction::Created, "CREATE_COMPLETE")
        );
        assert_eq!(report.outputs["QueueUrl"], "https://sqs/q");
        assert_eq!(delete.num_calls(), 1, "the failed stack was deleted first");
    }

    /// The failed resource and its reason are reported even though the rollback already undid it.
    #[tokio::test]
    async fn a_failed_update_names_what_failed_after_the_rollback() {
        let describe = mock!(Client::describe_stacks)
            .sequence()
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::UpdateComplete))
                    .build()
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::UpdateRollbackComplete))
                    .build()
            })
            .repeatedly()
            .build();
        let template = mock!(Client::get_template).then_output(|| {
            GetTemplateOutput::builder()
                .template_body("Resources: {}")
                .build()
        });
        let create = mock!(Client::create_change_set)
            .then_output(|| CreateChangeSetOutput::builder().id("cs").build());
        let set = mock!(Client::describe_change_set).then_output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateComplete)
                .execution_status(ExecutionStatus::ExecuteFailed)
                .build()
        });
        let execute = mock!(Client::execute_change_set)
            .then_output(|| ExecuteChangeSetOutput::builder().build());
        let events = mock!(Client::describe_stack_events).then_output(|| {
            let now =
                aws_sdk_cloudformation::primitives::DateTime::from(std::time::SystemTime::now());
            let ev = |id: &str, logical: &str, status: ResourceStatus, reason: &str| {
                StackEvent::builder()
                    .event_id(id)
                    .stack_id("s")
                    .stack_name("p-event-stack")
                    .logical_resource_id(logical)
                    .resource_type(if logical == "p-event-stack" {
                        "AWS::CloudFormation::Stack"
                    } else {
                        "AWS::SQS::Queue"
                    })
                    .resource_status(status)
                    .resource_status_reason(reason)
                    .timestamp(now)
                    .build()
            };
            // Newest first, as DescribeStackEvents returns them.
            DescribeStackEventsOutput::builder()
                .stack_events(ev(
                    "4",
                    "p-event-stack",
                    ResourceStatus::UpdateRollbackComplete,
                    "",
                ))
                .stack_events(ev(
                    "3",
                    "Queue",
                    ResourceStatus::UpdateComplete,
                    "rolled back",
                ))
                .stack_events(ev(
                    "2",
                    "Queue",
                    ResourceStatus::UpdateFailed,
                    "Invalid value for the parameter VisibilityTimeout",
                ))
                .stack_events(ev(
                    "1",
                    "p-event-stack",
                    ResourceStatus::UpdateInProgress,
                    "User Initiated",
                ))
                .build()
        });
        let report = deploy_event(&[&describe, &template, &create, &set, &execute, &events]).await;
        assert_eq!(
            (report.action, report.status.as_str()),
            (StackAction::Failed, "UPDATE_ROLLBACK_COMPLETE")
        );
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert_eq!(report.failures[0].logical_id, "Queue");
        assert_eq!(
            report.failures[0].reason,
            "Invalid value for the parameter VisibilityTimeout"
        );
    }

    /// `--timeout` reached while CloudFormation still works on the stack (UPDATE_IN_PROGRESS after the
    /// change set was executed, as long as the deploy waits): deploy stops waiting soon after the
    /// limit, the stack is `still-running` with what to do next, and the run exits 1.
    #[tokio::test]
    async fn a_stack_still_in_progress_at_the_timeout_exits_1() {
        let describe = mock!(Client::describe_stacks)
            .sequence()
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::UpdateComplete))
                    .build()
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::UpdateInProgress))
                    .build()
            })
            .repeatedly()
            .build();
        let template = mock!(Client::get_template).then_output(|| {
            GetTemplateOutput::builder()
                .template_body("Resources: {}")
                .build()
        });
        let create = mock!(Client::create_change_set)
            .then_output(|| CreateChangeSetOutput::builder().id(SET_ARN).build());
        let set = mock!(Client::describe_change_set).then_output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateComplete)
                .execution_status(ExecutionStatus::ExecuteInProgress)
                .build()
        });
        let execute = mock!(Client::execute_change_set)
            .then_output(|| ExecuteChangeSetOutput::builder().build());
        let events = mock!(Client::describe_stack_events)
            .then_output(|| DescribeStackEventsOutput::builder().build());
        let started = std::time::Instant::now();
        let report = deploy_event_within(
            &[&describe, &template, &create, &set, &execute, &events],
            Some(Duration::from_secs(1)),
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "waited {took:?} past a 1s --timeout"
        );
        assert_eq!(
            (report.action, report.status.as_str()),
            (StackAction::StillRunning, "UPDATE_IN_PROGRESS")
        );
        assert!(describe.num_calls() >= 2, "it polled the stack");
        let reason = &report.failures[0].reason;
        assert!(
            reason.contains("p-event-stack is still UPDATE_IN_PROGRESS after --timeout 1s")
                && reason.contains("notesctl status"),
            "{reason}"
        );

        let mut whole = DeployReport::default();
        assert!(
            add_stack(&mut whole, "p", "event", report),
            "the deploy stops"
        );
        use crate::output::{Exit, Report};
        assert_eq!(whole.exit(), Exit::Problem);
        let problem = whole.problem.as_deref().unwrap_or_default();
        assert!(
            problem.contains("after --timeout 1s")
                && problem.contains("deploy stopped at p-event-stack"),
            "{problem}"
        );
    }
}
