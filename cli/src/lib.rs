//! The `notesctl` command line. `main` parses arguments and calls [`run`]; each command returns a
//! report that is printed once here: text for people, or one JSON document with `--output json`.
//! Streams (`tail`, `queue-depth --watch`, `dev`) write their lines as they go. Results go to stdout;
//! progress and logs to stderr.
//!
//! Layout: `context` (global options, AWS configuration, prompts, logs) and `output` (reports, exit
//! codes) are at the bottom; `aws` holds the AWS helpers several verbs share; `commands` has one
//! module per verb.

pub mod app_client;
pub mod aws;
pub mod commands;
pub mod context;
pub mod lambda;
pub mod mime;
pub mod names;
pub mod output;
pub mod patience;
pub mod reference;
pub mod template;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use context::{Context, Global};
pub use output::{Exit, Output, Report, Streamed};

/// Ship and operate the event-driven serverless notes app on AWS.
///
/// Exit codes: 0 success; 1 the command ran and found a problem; 2 usage or environment error; 3
/// `smoke` could not set up its user.
#[derive(Debug, Parser)]
#[command(
    name = "notesctl",
    version,
    about,
    long_about = None,
    propagate_version = true,
    disable_help_subcommand = true,
    after_help = "Exit codes: 0 success; 1 the command ran and found a problem (deploy failed, diff found differences, queue above --fail-above, alarm firing); 2 usage or environment error; 3 smoke could not set up its user (nothing judged).\n\nStart with `notesctl dev` (no AWS account needed); `notesctl help COMMAND` explains one command."
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
    #[command(after_help = examples::PACKAGE)]
    Package(commands::package::PackageArgs),
    /// Check the templates against the handlers and the rules AWS enforces at run time (no AWS needed).
    #[command(after_help = examples::VALIDATE)]
    Validate(commands::validate::ValidateArgs),
    /// Create or update the stacks through change sets, streaming their events.
    #[command(after_help = examples::DEPLOY)]
    Deploy(commands::deploy::DeployArgs),
    /// Show what a deploy would change, per stack: resources and properties, parameters, IAM,
    /// replacements (exit 1 when anything differs).
    #[command(after_help = examples::DIFF)]
    Diff(commands::diff::DiffArgs),
    /// List the stage's releases (one per successful deploy), newest (live) first.
    #[command(after_help = examples::HISTORY)]
    History(commands::release::HistoryArgs),
    /// Deploy a previous release again: its templates, parameters and code (a hotswap when only the
    /// code differs).
    #[command(after_help = examples::ROLLBACK)]
    Rollback(commands::release::RollbackArgs),
    /// Check a deployed stage (or `dev`) end to end: log in, connect the WebSocket, post a public
    /// note, see it saved and listed, delete it (exit 1 naming the first step that failed; 3 when its
    /// user could not be set up).
    #[command(after_help = examples::SMOKE)]
    Smoke(commands::smoke::SmokeArgs),
    /// Offer load to a deployed stage (or `dev`): notes at a steady rate, open loop, timed from POST
    /// to `note-saved` on the author's socket and on every socket; `--ramp` finds the knee.
    #[command(after_help = examples::LOAD)]
    Load(commands::load::LoadArgs),
    /// Print the stacks' outputs.
    #[command(after_help = examples::OUTPUTS)]
    Outputs(commands::outputs::OutputsArgs),
    /// Print the WebSocket URL alone (for scripts).
    WsUrl,
    /// Summarise stacks, queue depths and alarm states.
    #[command(after_help = examples::STATUS)]
    Status(commands::status::StatusArgs),
    /// How the app is doing: the watch list (docs/EVENT_FLOW.md) and the app's own metrics, each with
    /// its current value and a sparkline over --since (exit 1 when a row is past its threshold).
    #[command(after_help = examples::METRICS)]
    Metrics(commands::metrics::MetricsArgs),
    /// Run the troubleshooting runbooks as checks: notes not saving, WebSocket not connecting,
    /// real-time updates not working — each ✓ / ✗ / – with evidence and the next step (exit 1 on ✗).
    #[command(after_help = examples::DOCTOR)]
    Doctor(commands::doctor::DoctorArgs),
    /// Delete the stacks in reverse order, emptying the frontend bucket first.
    #[command(after_help = examples::DESTROY)]
    Destroy(commands::destroy::DestroyArgs),
    /// Run the whole app on this machine: HTTP API, WebSocket, queue and frontend, with an embedded store.
    #[command(after_help = examples::DEV)]
    Dev(commands::dev::DevArgs),
    /// Messages in the processing queue and its dead-letter queue.
    #[command(after_help = examples::QUEUE_DEPTH)]
    QueueDepth(commands::queue_depth::QueueDepthArgs),
    /// Move dead-lettered notes back to the processing queue.
    #[command(after_help = examples::REDRIVE)]
    RedriveDlq(commands::redrive::RedriveArgs),
    /// Move stored data to the layout the current version reads (`public-feed`: into the feed's shards).
    #[command(after_help = examples::MIGRATE)]
    Migrate(commands::migrate::MigrateArgs),
    /// Print the functions' logs, interleaved by time; --follow for new ones.
    #[command(after_help = examples::TAIL)]
    Tail(commands::tail::TailArgs),
    /// Create or update the queue-depth and dead-letter alarms (with their QueueName dimension).
    #[command(after_help = examples::ALARMS)]
    Alarms(commands::alarms::AlarmsArgs),
    /// Upload the frontend to its bucket by content (MD5), with config.json from the stacks.
    #[command(after_help = examples::SYNC_FRONTEND)]
    SyncFrontend(commands::sync_frontend::SyncArgs),
    /// Invalidate the CloudFront cache (idempotent; --wait follows it to Completed).
    #[command(after_help = examples::INVALIDATE)]
    Invalidate(commands::invalidate::InvalidateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = examples::COMPLETIONS)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (notesctl.1, notesctl-deploy.1, …) into a folder.
    Man {
        /// The folder for the pages (created if missing).
        #[arg(long, value_name = "DIR", default_value = "man")]
        out: std::path::PathBuf,
    },
    /// Print the help of notesctl, or of the command named.
    Help {
        /// The command to explain, e.g. `deploy`.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// The examples at the end of each command's `--help`.
mod examples {
    pub const PACKAGE: &str = "Examples:
  notesctl package                              # arm64 (Graviton), into dist/
  notesctl package --arch x86_64 --arch arm64 --out target/dist
  notesctl package --arch x86_64 --binary target/x86_64-unknown-linux-musl/release/notes-lambda";
    pub const LOAD: &str = "Examples:
  notesctl load --local --rate 500 --duration 20s          # dev on this machine, 500 notes/s
  notesctl load --local --ramp --sockets 1000 --slo 20ms   # step the rate up to the knee
  notesctl load --stage staging --rate 50 --users 10 --yes --output json
  notesctl load --local --total 10000 --public-ratio 0.5 --keep";
    pub const MIGRATE: &str = "Examples:
  notesctl migrate public-feed --stage production       # into the notes stack's PublicFeedShards
  notesctl migrate public-feed --stage dev --shards 16 --output json";
    pub const VALIDATE: &str = "Examples:
  notesctl validate                             # templates/ against the handlers' needs
  notesctl validate --templates my-templates --output json";
    pub const DEPLOY: &str = "Examples:
  notesctl deploy --stage dev --preview         # what would change, then stop
  notesctl deploy --stage dev --yes             # all six stacks, arm64 code from dist/
  notesctl deploy --stage dev --stack notes --yes
  notesctl deploy --stage prod --frontend frontend/ --yes   # stacks, then site and CDN
  notesctl deploy --stage dev --hotswap --watch --yes       # rebuild and hotswap on every save";
    pub const DIFF: &str = "Examples:
  notesctl diff --stage dev                     # every stack against templates/ and dist/ (no zip: templates alone)
  notesctl diff --stage prod --stack data --change-set   # CloudFormation's word on replacements
  notesctl diff --stage prod --output json || echo 'the deploy would change something'";
    pub const HISTORY: &str = "Examples:
  notesctl history --stage prod                 # newest first; the first is live
  notesctl history --stage prod --output json --limit 5";
    pub const ROLLBACK: &str = "Examples:
  notesctl rollback --stage prod                # to the release before the live one
  notesctl rollback --stage prod --to 20261202-0931 --yes";
    pub const SMOKE: &str = "Examples:
  notesctl smoke --local                        # against `notesctl dev`
  NOTESCTL_SMOKE_PASSWORD=... notesctl smoke --stage prod --timeout 10s
  notesctl smoke --stage prod --output json     # each step with its latency";
    pub const OUTPUTS: &str = "Examples:
  notesctl outputs --stage dev
  notesctl outputs --stage dev --stack auth --output json";
    pub const STATUS: &str = "Examples:
  notesctl status --stage dev                   # exit 1 when an alarm fires
  notesctl status --local                       # notesctl dev: its queues and counters";
    pub const METRICS: &str = "Examples:
  notesctl metrics --stage prod                 # the last 3 hours, one point per 5 minutes
  notesctl metrics --since 30m --watch          # redrawn in place every minute
  notesctl metrics --local --since 10m          # notesctl dev's counters
  notesctl metrics --output json | jq '.rows[] | select(.over)'";
    pub const DOCTOR: &str = "Examples:
  notesctl doctor --local                       # notesctl dev: the three runbooks, checked
  NOTESCTL_DOCTOR_PASSWORD=… notesctl doctor --stage prod --since 1h";
    pub const DESTROY: &str = "Examples:
  notesctl destroy --stage dev                  # asks first; refuses while notes are queued
  notesctl destroy --stage dev --yes --force    # also when queued notes would be lost
  notesctl destroy --stage prod --confirm-stage prod   # a protected stage: its name again";
    pub const DEV: &str = "Examples:
  notesctl dev                                  # http://127.0.0.1:3000, data in .notesctl/dev
  notesctl dev --port 0 --output json           # a free port, its URLs as one JSON line
  notesctl dev --frontend ../my-client --data-dir /tmp/notes-dev
Then, in another terminal in the same folder:
  notesctl queue-depth --local
  notesctl tail save publish --local --follow";
    pub const QUEUE_DEPTH: &str = "Examples:
  notesctl queue-depth --stage dev
  notesctl queue-depth --stage dev --watch
  notesctl queue-depth --stage dev --fail-above 0   # a CI gate: exit 1 on any backlog";
    pub const REDRIVE: &str = "Examples:
  notesctl redrive-dlq --stage dev --dry-run    # count and sample, move nothing
  notesctl redrive-dlq --stage dev --yes
  notesctl redrive-dlq --stage dev --yes --max 10 --max-per-second 5";
    pub const TAIL: &str = "Examples:
  notesctl tail save publish --stage dev --since 1h
  notesctl tail save --stage dev --follow --filter ERROR
  notesctl tail notify --local --output json   # JSON Lines";
    pub const ALARMS: &str = "Examples:
  notesctl alarms --stage dev --email oncall@example.com
  notesctl alarms --stage dev --sns-topic-arn arn:aws:sns:eu-west-2:123456789012:pager";
    pub const SYNC_FRONTEND: &str = "Examples:
  notesctl sync-frontend frontend/ --stage dev --dry-run
  notesctl sync-frontend frontend/ --stage dev --delete --exclude '*.map'";
    pub const INVALIDATE: &str = "Examples:
  notesctl invalidate --stage dev --wait
  notesctl invalidate --stage dev --path /index.html --path /config.json";
    pub const COMPLETIONS: &str = "Examples:
  notesctl completions bash > ~/.local/share/bash-completion/completions/notesctl
  notesctl completions zsh > \"${fpath[1]}/_notesctl\"
  notesctl completions fish > ~/.config/fish/completions/notesctl.fish";
}

/// How a command ended, before it becomes an exit code.
enum Ended {
    Report(anyhow::Result<Exit>),
    Stream(anyhow::Result<Streamed>),
}

fn report<R: Report>(ctx: &Context, result: anyhow::Result<R>) -> Ended {
    Ended::Report(result.map(|r| output::print(ctx.output(), &r)))
}

impl Command {
    /// The `--local` of a command that can talk to `notesctl dev` instead of AWS, when given.
    fn local(&self) -> Option<&str> {
        let arg = match self {
            Command::Smoke(a) => &a.local,
            Command::Load(a) => &a.local,
            Command::Status(a) => &a.local,
            Command::Metrics(a) => &a.local,
            Command::Doctor(a) => &a.local,
            Command::QueueDepth(a) => &a.local,
            Command::RedriveDlq(a) => &a.local,
            Command::Tail(a) => &a.local,
            _ => return None,
        };
        arg.local.as_deref()
    }

    /// Whether the command writes to a deployed stage, so it needs `--stage` (or NOTESCTL_STAGE)
    /// rather than the default: a forgotten flag must not write to production.
    fn writes_to_stage(&self) -> bool {
        match self {
            Command::Deploy(_)
            | Command::Rollback(_)
            | Command::Destroy(_)
            | Command::Migrate(_)
            | Command::Alarms(_) => true,
            // With its bucket named and no config.json from the stacks, sync touches no stage.
            Command::SyncFrontend(a) => a.bucket.is_none() || !a.no_config,
            // With its distribution named, invalidate looks up no stack.
            Command::Invalidate(a) => a.distribution_id.is_none(),
            Command::Smoke(_) | Command::Load(_) | Command::RedriveDlq(_) => self.local().is_none(),
            _ => false,
        }
    }
}

async fn dispatch(ctx: &Context, command: Command) -> Ended {
    use commands::*;
    let checked = async {
        if command.writes_to_stage() {
            ctx.explicit_stage()?;
        }
        if let Some(url) = command.local() {
            context::dev_answers(url).await?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = checked.await {
        return Ended::Report(Err(e));
    }
    match command {
        Command::Package(args) => report(ctx, package::run(ctx, args).await),
        Command::Validate(args) => report(ctx, validate::run(ctx, args).await),
        Command::Deploy(args) if args.watch => Ended::Stream(deploy::watch::run(ctx, args).await),
        Command::Deploy(args) => report(ctx, deploy::run(ctx, args).await),
        Command::Diff(args) => report(ctx, diff::run(ctx, args).await),
        Command::History(args) => report(ctx, release::history(ctx, args).await),
        Command::Rollback(args) => report(ctx, release::rollback(ctx, args).await),
        Command::Smoke(args) => report(ctx, smoke::run(ctx, args).await),
        Command::Load(args) => report(ctx, load::run(ctx, args).await),
        Command::Outputs(args) => report(ctx, outputs::run(ctx, args).await),
        Command::WsUrl => report(ctx, outputs::ws_url(ctx).await),
        Command::Status(args) => report(ctx, status::run(ctx, args).await),
        Command::Metrics(args) if args.watch => Ended::Stream(metrics::watch(ctx, args).await),
        Command::Metrics(args) => report(ctx, metrics::run(ctx, args).await),
        Command::Doctor(args) => report(ctx, doctor::run(ctx, args).await),
        Command::Destroy(args) => report(ctx, destroy::run(ctx, args).await),
        Command::Dev(args) => Ended::Stream(dev::run(ctx, args).await),
        Command::QueueDepth(args) if args.watch => {
            Ended::Stream(queue_depth::watch(ctx, args).await)
        }
        Command::QueueDepth(args) => report(ctx, queue_depth::run(ctx, args).await),
        Command::RedriveDlq(args) => report(ctx, redrive::run(ctx, args).await),
        Command::Migrate(args) => report(ctx, migrate::run(ctx, args).await),
        Command::Tail(args) => Ended::Stream(tail::run(ctx, args).await),
        Command::Alarms(args) => report(ctx, alarms::run(ctx, args).await),
        Command::SyncFrontend(args) => report(ctx, sync_frontend::run(ctx, args).await),
        Command::Invalidate(args) => report(ctx, invalidate::run(ctx, args).await),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "notesctl", &mut std::io::stdout());
            Ended::Stream(Ok(Streamed(Exit::Ok)))
        }
        Command::Man { out } => report(ctx, reference::write_man_pages(&out)),
        Command::Help { command } => Ended::Stream(help(command.as_deref())),
    }
}

/// `notesctl help [COMMAND]`: the long help of notesctl or of one command, on stdout.
fn help(command: Option<&str>) -> anyhow::Result<Streamed> {
    let cli = reference::command();
    let mut cmd = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(cmd) => cmd.clone(),
            None => anyhow::bail!("there is no command {name:?}: `notesctl --help` lists them"),
        },
    };
    let text = cmd.render_long_help().to_string();
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, text.as_bytes());
    Ok(Streamed(Exit::Ok))
}

/// `notesctl dev` is a stage of its own, "dev": `dev` and every `--local` command name it unless a
/// stage is given (its queues are `dev-note-processing-queue`, not production's).
fn local_stage(mut global: Global, command: &Command) -> Global {
    if global.stage.is_none() && (command.local().is_some() || matches!(command, Command::Dev(_))) {
        global.stage = Some(context::LOCAL_STAGE.to_owned());
    }
    global
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
    let ctx = Context::new(local_stage(cli.global, &cli.command));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> (Context, Command) {
        let mut argv = vec!["notesctl"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parses");
        (Context::new(cli.global), cli.command)
    }

    fn refusal(ended: Ended) -> String {
        match ended {
            Ended::Report(Err(e)) | Ended::Stream(Err(e)) => e.to_string(),
            _ => panic!("the command ran"),
        }
    }

    /// Every command that writes to a deployed stage refuses without `--stage`, before it reads a
    /// file or calls AWS; the ones that only read, and `--local`, do not need it.
    #[tokio::test]
    async fn commands_that_write_to_a_stage_need_it_named() {
        let writers: [&[&str]; 11] = [
            &["deploy", "--yes"],
            &["deploy", "--preview"],
            &["rollback", "--yes"],
            &["destroy", "--yes"],
            &["migrate", "public-feed"],
            &["alarms"],
            &["sync-frontend", "frontend"],
            &["invalidate"],
            &["redrive-dlq", "--yes"],
            &["smoke"],
            &["load", "--yes"],
        ];
        for args in writers {
            let (ctx, command) = parsed(args);
            assert!(command.writes_to_stage(), "{args:?}");
            assert_eq!(
                refusal(dispatch(&ctx, command).await),
                "pass --stage (this writes to a deployed stage)",
                "{args:?}"
            );
        }
        for args in [
            &["status"][..],
            &["sync-frontend", "site", "--bucket", "b", "--no-config"],
            &["invalidate", "--distribution-id", "E2EXAMPLE"],
            &["outputs"],
            &["queue-depth"],
            &["diff"],
            &["history"],
            &["smoke", "--local"],
            &["load", "--local"],
            &["redrive-dlq", "--local", "--yes"],
        ] {
            assert!(!parsed(args).1.writes_to_stage(), "{args:?}");
        }
    }

    /// `--local` is the stage "dev" unless a stage is given; `dev` itself too.
    #[test]
    fn local_commands_speak_of_the_dev_stage() {
        let stage_of = |args: &[&str]| {
            let mut argv = vec!["notesctl"];
            argv.extend_from_slice(args);
            let cli = Cli::try_parse_from(argv).unwrap();
            Context::new(local_stage(cli.global, &cli.command))
                .stage()
                .to_owned()
        };
        assert_eq!(stage_of(&["queue-depth", "--local"]), "dev");
        assert_eq!(stage_of(&["dev"]), "dev");
        assert_eq!(stage_of(&["status", "--local"]), "dev");
        assert_eq!(stage_of(&["--stage", "mine", "dev"]), "mine");
        assert_eq!(stage_of(&["queue-depth"]), "production");
    }

    /// Each command with `--local` checks that something answers there first: one line, exit 2.
    #[tokio::test]
    async fn local_commands_without_dev_say_to_start_it() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        for command in [
            "smoke",
            "load",
            "status",
            "metrics",
            "doctor",
            "queue-depth",
            "redrive-dlq",
            "tail",
        ] {
            let mut args = vec![command, "--local", &closed];
            if command == "tail" {
                args.push("save");
            }
            let (ctx, parsed) = parsed(&args);
            assert_eq!(parsed.local(), Some(closed.as_str()), "{command}");
            let said = refusal(dispatch(&ctx, parsed).await);
            assert!(
                said.starts_with(&format!(
                    "nothing answers at {closed} (connection refused): start `notesctl dev`"
                )),
                "{command}: {said}"
            );
        }
    }
}
