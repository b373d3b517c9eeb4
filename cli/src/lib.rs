//! The `notesctl` command line. `main` parses arguments and calls [`run`]; each command returns a
//! report that is printed once: text for people, or one JSON document with `--output json`.
//! Results go to stdout; progress and logs to stderr.

pub mod aws;
pub mod commands;
pub mod mime;
pub mod names;
pub mod output;
pub mod stacks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::{Exit, Output};

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

/// Options every command accepts, before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Prefix of every resource name.
    #[arg(
        long,
        global = true,
        env = "NOTESCTL_STAGE",
        default_value = "production"
    )]
    pub stage: String,
    /// Result format on stdout: text for people, json for scripts.
    #[arg(long, global = true, env = "NOTESCTL_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Never draw progress, even on a terminal (progress is off when CI is set).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// AWS profile (default: the usual chain — AWS_PROFILE, SSO, environment).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// AWS region (default: AWS_REGION or the profile's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Any AWS-compatible endpoint (moto, LocalStack).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build notes-lambda for Lambda (provided.al2023) into a reproducible zip.
    Package(commands::package::PackageArgs),
    /// Create or update the stacks through change sets, streaming their events.
    Deploy(commands::deploy::DeployArgs),
    /// Print the stacks' outputs.
    Outputs(commands::stackops::OutputsArgs),
    /// Print the WebSocket URL alone (for scripts).
    WsUrl,
    /// Summarise stacks, queue depths and alarm states.
    Status,
    /// Delete the stacks in reverse order, emptying the frontend bucket first.
    Destroy(commands::stackops::DestroyArgs),
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

fn init_logs(global: &Global) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOTESCTL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("warn,notesctl={level},notes_handlers={level}"))
    });
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    // What the handlers log inside `dev` also goes to their log groups, whatever -q/-v say for stderr.
    let functions = commands::dev::logbook::LogBookLayer.with_filter(
        tracing_subscriber::EnvFilter::new("notes_handlers=info,notesctl=info"),
    );
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(functions)
        .try_init();
}

/// Runs a parsed command line to its exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logs(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return output::fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Package(args) => commands::package::run(&cli.global, args).await,
            Command::Deploy(args) => commands::deploy::run(&cli.global, args).await,
            Command::Outputs(args) => commands::stackops::outputs(&cli.global, args).await,
            Command::WsUrl => commands::stackops::ws_url(&cli.global).await,
            Command::Status => commands::stackops::status(&cli.global).await,
            Command::Destroy(args) => commands::stackops::destroy(&cli.global, args).await,
            Command::Dev(args) => commands::dev::run(&cli.global, args).await,
            Command::QueueDepth(args) => commands::queue_depth::run(&cli.global, args).await,
            Command::RedriveDlq(args) => commands::redrive::run(&cli.global, args).await,
            Command::Tail(args) => commands::tail::run(&cli.global, args).await,
            Command::Alarms(args) => commands::alarms::run(&cli.global, args).await,
            Command::SyncFrontend(args) => commands::sync_frontend::run(&cli.global, args).await,
            Command::Invalidate(args) => commands::invalidate::run(&cli.global, args).await,
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "notesctl", &mut std::io::stdout());
                Ok(Exit::Ok)
            }
        }
    });
    match result {
        Ok(exit) => exit.code(),
        Err(e) => output::fail(&e),
    }
}
