//! `notesctl diff`: what a deploy with the same flags would change, stack by stack, before anything is
//! created. From the deployed template (GetTemplate) and parameters against ours: resources added,
//! removed and modified with each changed property (old → new), parameters and outputs old → new, the
//! IAM grants added and taken away, and the resources CloudFormation will replace — from each
//! property's update behaviour ([`replacement`](super::deploy::compare::replacement)), or, with
//! `--change-set`, from a change set CloudFormation works out (and notesctl deletes). Exit 0 when
//! nothing differs, 1 when something does: a gate for CI.

use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::ChangeSetType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::deploy::change_set::{self, Worked};
use super::deploy::compare::{Action, Replacement, StackDiff, show};
use super::deploy::{
    Change, Inputs, Templates, artifact_store, carries_code, parameter_values, region_of,
    stack_diff_of, values_without_code,
};
use crate::aws::stacks;
use crate::context::{Context, Deadline};
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Also let CloudFormation work out a change set for each stack that differs (deleted
    /// afterwards), and take its word on which resources it replaces.
    #[arg(long)]
    pub change_set: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffReport {
    pub stacks: Vec<StackDiff>,
    /// Why the Lambda code was not compared (no zip packaged yet): the templates were, with the
    /// deployed stacks' own `CodeBucket` and `CodeKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Report for DiffReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.stacks.iter().any(|s| s.differs))
    }
}

/// A value on one line of the text report, cut at 100 characters.
fn short(v: &Option<Value>) -> String {
    match v {
        None => "(none)".to_owned(),
        Some(v) => crate::aws::clip(&show(v), 100),
    }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.stacks {
            if !s.differs {
                writeln!(f, "{}: no differences", s.name)?;
                continue;
            }
            let count = |a: Action| s.resources.iter().filter(|r| r.action == a).count();
            let grants = s.iam.granted.len() + s.iam.revoked.len();
            let parts: Vec<String> = [
                (count(Action::Added), "resource added", "resources added"),
                (
                    count(Action::Modified),
                    "resource modified",
                    "resources modified",
                ),
                (
                    count(Action::Removed),
                    "resource removed",
                    "resources removed",
                ),
                (s.replaced.len(), "replaced", "replaced"),
                (s.parameters.len(), "parameter", "parameters"),
                (grants, "IAM grant changed", "IAM grants changed"),
                (s.outputs.len(), "output", "outputs"),
            ]
            .into_iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
            .collect();
            writeln!(
                f,
                "{}: {}{}",
                s.name,
                if s.deployed { "" } else { "not deployed — " },
                parts.join(", ")
            )?;
            if !s.parameters.is_empty() {
                writeln!(f, "  parameters")?;
                for p in &s.parameters {
                    write!(f, "    {}: {} → {}", p.name, short(&p.old), short(&p.new))?;
                    if !p.used_by.is_empty() {
                        write!(f, "  (used by {})", p.used_by.join(", "))?;
                    }
                    writeln!(f)?;
                }
            }
            if !s.resources.is_empty() {
                writeln!(f, "  resources")?;
            }
            for r in &s.resources {
                let mark = match r.action {
                    Action::Added => '+',
                    Action::Removed => '-',
                    Action::Modified => '~',
                };
                let replaced = if s.replaced.contains(&r.logical_id) {
                    "  REPLACED"
                } else if s.replacement_unknown.contains(&r.logical_id) {
                    "  (replacement unknown: --change-set)"
                } else {
                    ""
                };
                writeln!(
                    f,
                    "    {mark} {:<34} {}{replaced}",
                    r.logical_id, r.resource_type
                )?;
                for c in &r.changes {
                    writeln!(
                        f,
                        "        {}: {} → {}{}",
                        c.path,
                        short(&c.old),
                        short(&c.new),
                        if c.replacement == Replacement::Yes {
                            "  (replaces it)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
            if !s.iam.is_empty() {
                writeln!(f, "  IAM")?;
                for (mark, grants) in [('+', &s.iam.granted), ('-', &s.iam.revoked)] {
                    for g in grants {
                        write!(
                            f,
                            "    {mark} {}: {} {} on {}",
                            g.by, g.effect, g.action, g.on
                        )?;
                        if let Some(p) = &g.principal {
                            write!(f, " to {p}")?;
                        }
                        if let Some(c) = &g.condition {
                            write!(f, " when {c}")?;
                        }
                        writeln!(f)?;
                    }
                }
            }
            if !s.outputs.is_empty() {
                writeln!(f, "  outputs")?;
                for o in &s.outputs {
                    writeln!(f, "    {}: {} → {}", o.name, short(&o.old), short(&o.new))?;
                }
            }
        }
        if let Some(code) = &self.code {
            writeln!(f, "code: {code}")?;
        }
        let differ = self.stacks.iter().filter(|s| s.differs).count();
        if differ == 0 {
            write!(f, "nothing to deploy: every stack matches the templates")
        } else {
            write!(
                f,
                "{differ} of {} stacks would change: `notesctl deploy` with the same flags applies this",
                self.stacks.len()
            )
        }
    }
}

/// CloudFormation's changes for `template` on `name`, from a change set made (from the template's
/// URL in the artifacts bucket) and deleted here.
async fn ask_cloudformation(
    ctx: &Context,
    cfn: &Client,
    templates: &Templates,
    (name, short): (&str, &str),
    template: &change_set::Template,
    new_stack: bool,
) -> anyhow::Result<Vec<Change>> {
    let kind = if new_stack {
        ChangeSetType::Create
    } else {
        ChangeSetType::Update
    };
    let url = templates.url(ctx, name, &template.body).await?;
    let arn = match change_set::create(cfn, name, short, template, &url, kind).await? {
        Ok(arn) => arn,
        Err(reason) => anyhow::bail!("CloudFormation refused a change set for {name}: {reason}"),
    };
    let deadline = Deadline::after(Duration::from_secs(600));
    let worked = change_set::worked_out(cfn, name, &arn, &deadline).await;
    change_set::discard(cfn, name, &arn, new_stack).await;
    match worked? {
        Worked::Changes(changes) => Ok(changes),
        Worked::NoChanges => Ok(Vec::new()),
        Worked::Failed(reason) => {
            anyhow::bail!("CloudFormation could not work out a change set for {name}: {reason}")
        }
    }
}

/// Without a zip the templates are still compared: each code-carrying stack keeps the code it has
/// (its deployed `CodeBucket` and `CodeKey`), and the report says the code was not compared.
fn no_zip(args: &DiffArgs, order: &[&str]) -> anyhow::Result<Option<String>> {
    let zip = crate::lambda::zip_path(&args.inputs.artifacts, args.inputs.arch);
    if !carries_code(order) || zip.exists() {
        return Ok(None);
    }
    let arch = args.inputs.arch.as_str();
    anyhow::ensure!(
        !args.change_set,
        "--change-set needs the code's zip, and {} does not exist: run `notesctl package --arch {arch}` first, or diff without --change-set",
        zip.display()
    );
    Ok(Some(format!(
        "not compared: no zip at {} (`notesctl package --arch {arch}` builds it); the templates were compared with the code each stack has",
        zip.display()
    )))
}

pub async fn run(ctx: &Context, args: DiffArgs) -> anyhow::Result<DiffReport> {
    let order = stacks::selected(&args.inputs.stacks)?;
    let not_compared = no_zip(&args, &order)?;
    let config = ctx.aws().await?;
    let cfn = Client::new(&config);
    let (values, code) = match &not_compared {
        Some(_) => (values_without_code(ctx, &args.inputs), None),
        None => parameter_values(ctx, &args.inputs, &config, &order).await?,
    };
    let templates = if args.change_set {
        let store = artifact_store(ctx, &args.inputs, &config, &code).await?;
        Some(Templates::ready(ctx, store, &region_of(&config)?).await?)
    } else {
        None
    };
    let mut report = DiffReport {
        stacks: Vec::new(),
        code: not_compared.clone(),
    };
    for short in order {
        let stack = stacks::describe(&cfn, &stacks::stack_name(ctx.stage(), short)).await?;
        let mut values = values.clone();
        if let (Some(_), Some(stack)) = (&not_compared, &stack) {
            let deployed = stacks::parameters_of(stack);
            for key in ["CodeBucket", "CodeKey"] {
                if let Some(v) = deployed.get(key) {
                    values.insert(key, v.clone());
                }
            }
        }
        let (mut diff, template, _) =
            stack_diff_of(ctx, &cfn, &args.inputs, &values, short, stack).await?;
        if let (Some(templates), true) = (&templates, diff.differs) {
            let name = diff.name.clone();
            ctx.say(format!("{name}: asking CloudFormation for a change set"));
            let at = (name.as_str(), short);
            let changes =
                ask_cloudformation(ctx, &cfn, templates, at, &template, !diff.deployed).await?;
            diff.take_change_set(changes);
        }
        report.stacks.push(diff);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::deploy::ChangeAction;
    use crate::commands::deploy::compare::IamDiff;

    fn stack() -> StackDiff {
        StackDiff {
            name: "p-auth-stack".into(),
            differs: true,
            deployed: true,
            parameters: vec![],
            resources: vec![],
            outputs: vec![],
            iam: IamDiff::default(),
            replaced: vec!["Table".into()],
            replacement_unknown: vec!["Thing".into()],
            change_set: None,
        }
    }

    #[test]
    fn a_change_set_decides_what_is_replaced() {
        let mut s = stack();
        let change = |id: &str, replacement| Change {
            action: ChangeAction::Modify,
            logical_id: id.into(),
            resource_type: "AWS::Some::Type".into(),
            replacement,
        };
        s.take_change_set(vec![change("Table", false), change("Thing", true)]);
        assert_eq!(s.replaced, ["Thing"]);
        assert!(s.replacement_unknown.is_empty());
        assert_eq!(s.change_set.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn the_exit_code_is_1_when_anything_differs() {
        let mut r = DiffReport {
            stacks: vec![stack()],
            code: None,
        };
        assert_eq!(r.exit(), Exit::Problem);
        r.stacks[0].differs = false;
        assert_eq!(r.exit(), Exit::Ok);
        assert!(
            r.to_string().contains("p-auth-stack: no differences"),
            "{r}"
        );
    }
}
