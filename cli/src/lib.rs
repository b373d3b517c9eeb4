//! The `notesctl` command line. `main` parses arguments and calls [`run`]; each command returns a
//! report that is printed once here: text for people, or one JSON document with `--output json`.
//! Streams (`tail`, `queue-depth --watch`, `dev`) write their lines as they go. Results go to stdout;
//! progress and logs to stderr.
//!
//! Layout: `context` (global options, AWS configuration, prompts, logs) and `output` (reports, exit
//! codes) are at the bottom; `aws` holds the AWS helpers several verbs share; `commands` has one
//! module per verb.

pub mod aws;
pub mod commands;
pub mod context;
pub mod lambda;
pub mod mime;
pub mod names;
pub mod output;
pub mod template;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use context::{Context, Global};
pub use output::{Exit, Output, Report, Streamed};

/// Ship and operate the event-driven serverless notes app on AWS.
///
/// Exit codes: 0 success; 1 the command ran and found a problem; 2 usage or environment error.
#[derive(Debug, Parser)]
#[command(
    name = "notesctl",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Exit codes: 0 success; 1 the command ran and found a problem (deploy failed, queue above --fail-above, alarm firing); 2 usage or environment error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build notes-lambda for Lambda (provided.al2023) into a reproducible zip.
    Package(commands::package::PackageArgs),
    /// Check the templates against the handlers and the rules AWS enforces at run time (no AWS needed).
    Validate(commands::validate::ValidateArgs),
    /// Create or update the stacks through change sets, streaming their events.
    Deploy(commands::deploy::DeployArgs),
    /// Print the stacks' outputs.
    Outputs(commands::outputs::OutputsArgs),
    /// Print the WebSocket URL alone (for scripts).
    WsUrl,
    /// Summarise stacks, queue depths and alarm states.
    Status,
    /// Delete the stacks in reverse order, emptying the frontend bucket first.
    Destroy(commands::destroy::DestroyArgs),
    /// Run the whole app on this machine: HTTP API, WebSocket, queue and frontend, with an embedded store.
    Dev(commands::dev::DevArgs),
    /// Messages in the processing queue and its dead-letter queue.
    QueueDepth(commands::queue_depth::QueueDepthArgs),
    /// Move dead-lettered notes back to the processing queue.
    RedriveDlq(commands::redrive::RedriveArgs),
    /// Print the functions' logs, interleaved by time; --follow for new ones.
    Tail(commands::tail::TailArgs),
    /// Create or update the queue-depth and dead-letter alarms (with their QueueName dimension).
    Alarms(commands::alarms::AlarmsArgs),
    /// Upload the frontend to its bucket by content (MD5), with config.json from the stacks.
    SyncFrontend(commands::sync_frontend::SyncArgs),
    /// Invalidate the CloudFront cache (idempotent; --wait follows it to Completed).
    Invalidate(commands::invalidate::InvalidateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How a command ended, before it becomes an exit code.
enum Ended {
    Report(anyhow::Result<Exit>),
    Stream(anyhow::Result<Streamed>),
}

fn report<R: Report>(ctx: &Context, result: anyhow::Result<R>) -> Ended {
    Ended::Report(result.map(|r| output::print(ctx.output(), &r)))
}

async fn dispatch(ctx: &Context, command: Command) -> Ended {
    use commands::*;
    match command {
        Command::Package(args) => report(ctx, package::run(ctx, args).await),
        Command::Validate(args) => report(ctx, validate::run(ctx, args).await),
        Command::Deploy(args) => report(ctx, deploy::run(ctx, args).await),
        Command::Outputs(args) => report(ctx, outputs::run(ctx, args).await),
        Command::WsUrl => report(ctx, outputs::ws_url(ctx).await),
        Command::Status => report(ctx, status::run(ctx).await),
        Command::Destroy(args) => report(ctx, destroy::run(ctx, args).await),
        Command::Dev(args) => Ended::Stream(dev::run(ctx, args).await),
        Command::QueueDepth(args) if args.watch => {
            Ended::Stream(queue_depth::watch(ctx, args).await)
        }
        Command::QueueDepth(args) => report(ctx, queue_depth::run(ctx, args).await),
        Command::RedriveDlq(args) => report(ctx, redrive::run(ctx, args).await),
        Command::Tail(args) => Ended::Stream(tail::run(ctx, args).await),
        Command::Alarms(args) => report(ctx, alarms::run(ctx, args).await),
        Command::SyncFrontend(args) => report(ctx, sync_frontend::run(ctx, args).await),
        Command::Invalidate(args) => report(ctx, invalidate::run(ctx, args).await),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "notesctl", &mut std::io::stdout());
            Ended::Stream(Ok(Streamed(Exit::Ok)))
        }
    }
}

/// Runs a parsed command line to its exit code.
pub fn run(cli: Cli) -> ExitCode {
    context::init_logs(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return output::fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let ctx = Context::new(cli.global);
    let ended = runtime.block_on(dispatch(&ctx, cli.command));
    let result = match ended {
        Ended::Report(r) => r,
        Ended::Stream(r) => r.map(|Streamed(exit)| exit),
    };
    match result {
        Ok(exit) => exit.code(),
        Err(e) => output::fail(&e),
    }
}
