//! `outputs` and `ws-url`: what `deploy` made, read back from the stacks.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_cloudformation::Client;
use serde::{Deserialize, Serialize};

use crate::aws::stacks;
use crate::context::Context;
use crate::output::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct OutputsArgs {
    /// Only these stacks (event, data, auth, websocket, notes, frontend); repeatable.
    #[arg(long = "stack", value_name = "NAME")]
    pub stacks: Vec<String>,
}

/// Stack name → its outputs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct OutputsReport(pub BTreeMap<String, BTreeMap<String, String>>);

impl Report for OutputsReport {}

impl fmt::Display for OutputsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (stack, outs) in &self.0 {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{stack}")?;
            for (k, v) in outs {
                write!(f, "\n  {k:<28} {v}")?;
            }
        }
        Ok(())
    }
}

pub async fn run(ctx: &Context, args: OutputsArgs) -> anyhow::Result<OutputsReport> {
    let cfn = Client::new(&ctx.aws().await?);
    let mut all = BTreeMap::new();
    for short in stacks::selected(&args.stacks)? {
        let name = stacks::stack_name(ctx.stage(), short);
        match stacks::outputs(&cfn, &name).await? {
            Some(o) => {
                all.insert(name, o);
            }
            None if !args.stacks.is_empty() => anyhow::bail!(
                "stack {name} does not exist: deploy it first, or check --stage and --region"
            ),
            None => {}
        }
    }
    if all.is_empty() {
        anyhow::bail!(
            "no {}-*-stack exists here: deploy first, or check --stage and --region",
            ctx.stage()
        );
    }
    Ok(OutputsReport(all))
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WsUrl {
    pub web_socket_url: String,
}

impl Report for WsUrl {}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.web_socket_url)
    }
}

/// The WebSocket URL alone, for scripts: `wscat -c "$(notesctl ws-url)?token=…"`.
pub async fn ws_url(ctx: &Context) -> anyhow::Result<WsUrl> {
    let cfn = Client::new(&ctx.aws().await?);
    let url = stacks::output(&cfn, ctx.stage(), "websocket", "WebSocketUrl", "--stage").await?;
    Ok(WsUrl {
        web_socket_url: url,
    })
}
