//! `notesctl validate`: the templates held, before AWS sees them, to the handlers' own declaration
//! (`notes_handlers::dispatch`) and to the rules AWS enforces only at run time — the classic first-
//! deploy failures that pass a linter: a role missing one action, a variable renamed on one side, a
//! route without its Lambda permission, a rule aimed at the wrong function, an import nobody exports.
//!
//! [`functions`] checks each function (handler, name, code, environment, role), [`triggers`] how each
//! is reached (routes, permissions, event rules, the queue mapping), [`stacks`] the stacks together
//! (imports, parameters, the visibility-timeout rule, name lengths). Each finding names the file, the
//! resource, what is wrong and how to fix it.

pub mod functions;
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
    /// The processing queue feeds save through a mapping that reports partial failures.
    QueueTrigger,
    /// The queue's visibility timeout is at least six times save's timeout.
    Visibility,
    /// Every import has an export in an earlier stack.
    Import,
    /// Every parameter gets a value; deploy's parameters reach the stacks that need them.
    Parameter,
    /// Every name fits its service's limit for the longest allowed stage.
    NameLength,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub rule: Rule,
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

impl Report for ValidateReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(!self.findings.is_empty())
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
            writeln!(f, "✗ {at}: {}", x.problem)?;
            writeln!(f, "    fix: {}", x.fix)?;
        }
        let summary = format!(
            "{} functions, {} routes, {} event rules in {}",
            self.functions, self.routes, self.event_rules, self.templates
        );
        match self.findings.len() {
            0 => write!(
                f,
                "✓ {summary}: deployable as far as the templates can tell"
            ),
            n => write!(f, "{n} findings in {summary}"),
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
    stacks::check(&app, &mut findings);
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
