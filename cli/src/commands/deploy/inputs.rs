//! What a deploy reads before it touches a stack, shared by `deploy`, `diff` and `--hotswap`: the
//! flags that name the templates, the zip and the parameter values ([`Inputs`]); the values themselves
//! ([`parameter_values`]); a stack's template with its parameters ([`load_template`]); and one stack
//! against its template ([`stack_diff`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Parameter, Stack};

use super::artifacts::{self, Code};
use super::change_set::{self, Template};
use super::compare;
use super::plan::{declared_parameters, expected_parameters};
use crate::aws::artifacts::Artifacts;
use crate::aws::s3::s3_client;
use crate::aws::stacks;
use crate::context::Context;
use crate::lambda::Arch;

/// What the stacks are deployed from: the templates, the code zip, and the values `deploy` passes as
/// parameters. `deploy` and `diff` take the same flags, so a diff shows what that deploy would do.
#[derive(Debug, Clone, clap::Args)]
pub struct Inputs {
    /// Where `notesctl package` wrote the zips.
    #[arg(long, default_value = "dist")]
    pub artifacts: PathBuf,
    /// The functions' architecture (the zip `notes-lambda-{arch}.zip` is deployed).
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Only these stacks (event, data, auth, websocket, notes, frontend); repeatable.
    #[arg(long = "stack", value_name = "NAME")]
    pub stacks: Vec<String>,
    /// The CloudFormation templates.
    #[arg(long, default_value = "templates")]
    pub templates: PathBuf,
    /// CORS origin allowed by the API.
    #[arg(long, default_value = "*")]
    pub allowed_origin: String,
    /// notes-save's timeout in seconds; the queue's visibility timeout is six times this.
    #[arg(long, default_value_t = 30)]
    pub save_timeout: u32,
    /// Partitions of the public feed (1–64). Raising it is safe; after lowering it, run
    /// `notesctl migrate public-feed`.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub public_feed_shards: u32,
    /// Bucket for the code zips and releases (default: notesctl-artifacts-{account}-{region},
    /// created if missing).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

/// The parameter values a deploy passes, and the code zip when one of `order` runs code (read from
/// `--artifacts`; its key is where it lives in the artifacts bucket). Nothing is uploaded here.
pub async fn parameter_values(
    ctx: &Context,
    inputs: &Inputs,
    config: &aws_config::SdkConfig,
    order: &[&str],
) -> anyhow::Result<(BTreeMap<&'static str, String>, Option<(Code, Artifacts)>)> {
    let mut values = values_without_code(ctx, inputs);
    if !carries_code(order) {
        return Ok((values, None));
    }
    let code = artifacts::read(ctx, inputs).await?;
    let s3 = s3_client(config, ctx.custom_endpoint());
    let store = Artifacts::locate(config, s3, inputs.artifacts_bucket.as_deref()).await?;
    values.insert("CodeBucket", store.bucket.clone());
    values.insert("CodeKey", code.key.clone());
    Ok((values, Some((code, store))))
}

/// Every parameter but the code's (`CodeBucket`, `CodeKey`), from the flags alone.
pub fn values_without_code(ctx: &Context, inputs: &Inputs) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("Stage", ctx.stage().to_owned()),
        ("Architecture", inputs.arch.as_str().to_owned()),
        ("AllowedOrigin", inputs.allowed_origin.clone()),
        ("SaveFunctionTimeout", inputs.save_timeout.to_string()),
        ("PublicFeedShards", inputs.public_feed_shards.to_string()),
    ])
}

/// Whether any of the stacks runs the Lambda code (and so takes `CodeBucket` and `CodeKey`).
pub fn carries_code(order: &[&str]) -> bool {
    order
        .iter()
        .any(|s| matches!(*s, "auth" | "websocket" | "notes"))
}

/// The artifacts bucket a deploy of `inputs` uses: the one the code's upload located, or the given
/// or default one — every deploy needs it now, for the templates.
pub async fn artifact_store(
    ctx: &Context,
    inputs: &Inputs,
    config: &aws_config::SdkConfig,
    code: &Option<(Code, Artifacts)>,
) -> anyhow::Result<Artifacts> {
    if let Some((_, store)) = code {
        return Ok(store.clone());
    }
    let s3 = s3_client(config, ctx.custom_endpoint());
    Artifacts::locate(config, s3, inputs.artifacts_bucket.as_deref()).await
}

/// The region the stacks go to, as the templates' URLs name it.
pub fn region_of(config: &aws_config::SdkConfig) -> anyhow::Result<String> {
    config.region().map(|r| r.to_string()).ok_or_else(|| {
        anyhow::anyhow!("no AWS region: pass --region, or set AWS_REGION or a profile's region")
    })
}

/// One stack of the stage against its template in `inputs`: what differs, the template with its
/// parameters, and the stack as it is (`None` when it does not exist).
pub async fn stack_diff(
    ctx: &Context,
    cfn: &Client,
    inputs: &Inputs,
    values: &BTreeMap<&'static str, String>,
    short: &str,
) -> anyhow::Result<(compare::StackDiff, Template, Option<Stack>)> {
    let stack = stacks::describe(cfn, &stacks::stack_name(ctx.stage(), short)).await?;
    stack_diff_of(ctx, cfn, inputs, values, short, stack).await
}

/// [`stack_diff`] for a stack already described (`None`: it does not exist).
pub async fn stack_diff_of(
    ctx: &Context,
    cfn: &Client,
    inputs: &Inputs,
    values: &BTreeMap<&'static str, String>,
    short: &str,
    stack: Option<Stack>,
) -> anyhow::Result<(compare::StackDiff, Template, Option<Stack>)> {
    let name = stacks::stack_name(ctx.stage(), short);
    let template = load_template(&inputs.templates, short, values).await?;
    let ours = crate::template::parse(&template.body)?;
    let before = change_set::deployed(cfn, &name, &stack).await?;
    let diff = compare::stack(&name, before, &ours, &template.expected);
    Ok((diff, template, stack))
}

/// A stack's template from `templates`, with the parameters `values` gives it.
pub async fn load_template(
    templates: &Path,
    short: &str,
    values: &BTreeMap<&'static str, String>,
) -> anyhow::Result<Template> {
    let path = templates.join(format!("{short}.yaml"));
    let body = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}; pass --templates DIR", path.display()))?;
    let declared = declared_parameters(&body)?;
    let expected = expected_parameters(&declared, values);
    let parameters = declared
        .iter()
        .filter_map(|(k, _)| {
            values.get(k.as_str()).map(|v| {
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build()
            })
        })
        .collect();
    Ok(Template {
        body,
        expected,
        parameters,
    })
}
