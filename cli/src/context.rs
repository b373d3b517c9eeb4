//! What every command shares, below all of them: the global options, the AWS configuration they
//! select, whether a person is there to be asked or shown progress, the one confirmation prompt, and
//! the logs.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

use crate::output::{Lines, Output};

/// The longest stage name `--stage` accepts: every template's `Stage` parameter has this
/// `MaxLength`, and `validate` checks every name built from the stage with a stage this long.
pub const MAX_STAGE_LEN: usize = 30;
/// The stage's pattern, as every template's `Stage` parameter spells it.
pub const STAGE_PATTERN: &str = "^[a-z0-9][a-z0-9-]*$";

/// `--stage`: lowercase letters, digits and hyphens, starting with a letter or digit, at most
/// [`MAX_STAGE_LEN`] characters — refused here, before any call, rather than by CloudFormation
/// half-way through a deploy.
pub fn parse_stage(s: &str) -> Result<String, String> {
    let len = s.chars().count();
    if len == 0 {
        return Err("a stage name is needed (e.g. dev, prod)".into());
    }
    if len > MAX_STAGE_LEN {
        return Err(format!(
            "{s:?} is {len} characters; a stage is at most {MAX_STAGE_LEN}, so every name built from it fits its AWS service's limit (a Lambda function name, for one, is at most 64)"
        ));
    }
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{s:?} has {c:?}: a stage is lowercase letters, digits and hyphens (it prefixes S3, SQS and DynamoDB names)"
        ));
    }
    if !first_ok {
        return Err(format!(
            "{s:?} starts with a hyphen: a stage starts with a letter or a digit"
        ));
    }
    Ok(s.to_owned())
}

/// The stage when neither `--stage` nor NOTESCTL_STAGE names one.
pub const DEFAULT_STAGE: &str = "production";

/// The stage `notesctl dev` is, and the one commands with `--local` name when none is given.
pub const LOCAL_STAGE: &str = "dev";

/// The words that make a stage protected wherever they stand between its hyphens.
pub const PROTECTED_WORDS: [&str; 4] = ["prod", "production", "prd", "live"];

/// A protected stage is one people use: `prod`, `production`, `prd` or `live`, alone or as a word
/// between hyphens (`prod-eu`, `eu-prod`, `live-2`). On it `deploy --hotswap` and a code-only
/// `rollback` go through CloudFormation unless `--force`, `load` needs `--force` beside `--yes`, and
/// `destroy` needs `--confirm-stage` naming it. The rule is a pattern so it holds before the first
/// deploy and needs no call to AWS.
pub fn protected(stage: &str) -> bool {
    stage.split('-').any(|word| PROTECTED_WORDS.contains(&word))
}

/// Fails with one line when nothing accepts connections at `url` (a `--local` whose `notesctl
/// dev` is not running), instead of each command's own transport error.
pub async fn dev_answers(url: &str) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().map_err(|e| {
        anyhow::anyhow!("--local {url:?} is not a URL ({e}): pass e.g. http://127.0.0.1:3000")
    })?;
    let host = uri.host().ok_or_else(|| {
        anyhow::anyhow!("--local {url:?} has no host: pass e.g. http://127.0.0.1:3000")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => anyhow::bail!(
            "nothing answers at {url} ({}): start `notesctl dev` in another terminal, or pass --local URL where it runs",
            e.kind()
        ),
        Err(_) => anyhow::bail!(
            "nothing answers at {url} (no connection in 3 s): start `notesctl dev` in another terminal, or pass --local URL where it runs"
        ),
    }
}

/// The heading the global options are listed under in every command's `--help`.
pub const GLOBAL: &str = "Global options";

/// Options every command accepts, before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Prefix of every resource name (default: production). `smoke` and `load` against a deployed
    /// stage need it given, here or in NOTESCTL_STAGE.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "NOTESCTL_STAGE",
        value_parser = parse_stage
    )]
    pub stage: Option<String>,
    /// Result format on stdout: text for people, json for scripts.
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "NOTESCTL_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true,
        help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true,
        help_heading = GLOBAL, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Never draw progress, even on a terminal (progress is off when CI is set).
    #[arg(long, global = true,
        help_heading = GLOBAL)]
    pub no_progress: bool,
    /// AWS profile (default: the usual chain — AWS_PROFILE, SSO, environment).
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// AWS region (default: AWS_REGION or the profile's).
    #[arg(long, global = true,
        help_heading = GLOBAL)]
    pub region: Option<String>,
    /// Any AWS-compatible endpoint (moto, LocalStack) for every service. Without it, the SDK reads
    /// AWS_ENDPOINT_URL and the service-specific AWS_ENDPOINT_URL_<SERVICE> variables itself.
    #[arg(long, global = true,
        help_heading = GLOBAL)]
    pub endpoint_url: Option<String>,
}

/// Where a `--local` flag points when given without a URL.
pub const DEFAULT_LOCAL: &str = "http://127.0.0.1:3000";

/// `--local [URL]`: run against a `notesctl dev` server instead of AWS.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LocalArg {
    /// Talk to a running `notesctl dev` (default http://127.0.0.1:3000) instead of AWS.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = DEFAULT_LOCAL)]
    pub local: Option<String>,
}

/// The run's shared state: the global options and, loaded once on first use, the AWS configuration.
#[derive(Debug)]
pub struct Context {
    pub global: Global,
    aws: OnceCell<SdkConfig>,
    /// Where tests read the progress lines that `say` would print.
    #[cfg(test)]
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Context {
    pub fn new(global: Global) -> Context {
        crate::patience::set_quiet(global.quiet);
        Context {
            global,
            aws: OnceCell::new(),
            #[cfg(test)]
            said: Default::default(),
        }
    }

    /// The progress lines said so far (tests only).
    #[cfg(test)]
    pub fn said(&self) -> Vec<String> {
        self.said.lock().unwrap().clone()
    }

    /// `--stage` (or NOTESCTL_STAGE), else [`DEFAULT_STAGE`].
    pub fn stage(&self) -> &str {
        self.global.stage.as_deref().unwrap_or(DEFAULT_STAGE)
    }

    /// The stage of a command that writes to a deployed stage: only one given with `--stage` or
    /// NOTESCTL_STAGE, never the default, so a forgotten flag does not write to production.
    pub fn explicit_stage(&self) -> anyhow::Result<&str> {
        self.global
            .stage
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("pass --stage (this writes to a deployed stage)"))
    }

    pub fn output(&self) -> Output {
        self.global.output
    }

    /// The writer of result lines for streams.
    pub fn lines(&self) -> Lines {
        Lines::new(self.global.output)
    }

    /// The AWS configuration of `--profile`, `--region` and `--endpoint-url`, loaded once.
    pub async fn aws(&self) -> anyhow::Result<SdkConfig> {
        self.aws
            .get_or_try_init(|| sdk_config(&self.global, None))
            .await
            .cloned()
    }

    /// The configuration for `--local URL` (a running `notesctl dev`), or for AWS without it.
    pub async fn aws_or_local(&self, local: &LocalArg) -> anyhow::Result<SdkConfig> {
        match &local.local {
            Some(url) => sdk_config(&self.global, Some(url)).await,
            None => self.aws().await,
        }
    }

    /// Whether a custom endpoint serves S3 here (`--endpoint-url`, `AWS_ENDPOINT_URL` or
    /// `AWS_ENDPOINT_URL_S3`): S3 is then addressed by path, not by bucket subdomain.
    pub fn custom_endpoint(&self) -> bool {
        self.global.endpoint_url.is_some()
            || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
    }

    /// A progress line on stderr, unless `-q`.
    pub fn say(&self, text: impl std::fmt::Display) {
        if !self.global.quiet {
            #[cfg(test)]
            self.said.lock().unwrap().push(text.to_string());
            eprintln!("{text}");
        }
    }

    /// Spinners and bars are drawn only for a person: on a terminal, outside CI, without `-q` or
    /// `--no-progress`. Elsewhere commands print plain lines (or nothing).
    pub fn progress_enabled(&self) -> bool {
        progress_allowed(
            &self.global,
            std::env::var_os("CI").is_some(),
            std::io::stderr().is_terminal(),
        )
    }

    /// A spinner on stderr when progress is enabled.
    pub fn spinner(&self) -> Option<indicatif::ProgressBar> {
        self.progress_enabled().then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(120));
            s
        })
    }
}

/// Progress is for a person watching text: never in CI, with `-q`, `--no-progress` or `--output
/// json`, or when stderr is not a terminal.
pub fn progress_allowed(global: &Global, ci: bool, terminal: bool) -> bool {
    terminal && !ci && !global.quiet && !global.no_progress && global.output == Output::Text
}

/// Whether a person can answer a prompt: stdin and stderr are terminals and CI is unset.
pub fn interactive() -> bool {
    std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// Asks "`Action`? [y/N]" on the terminal. Refuses without one (the caller skips this for `--yes`);
/// anything but yes is "not confirmed; `unchanged`".
pub async fn confirm(action: &str, unchanged: &str) -> anyhow::Result<()> {
    if !interactive() {
        anyhow::bail!(
            "refusing to {action} without confirmation: pass --yes (no terminal to ask on)"
        );
    }
    let mut question = action.to_owned();
    if let Some(first) = question.get(..1) {
        question.replace_range(..1, &first.to_uppercase());
    }
    let answer = tokio::task::spawn_blocking(move || {
        eprint!("{question}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map(|_| answer)
    })
    .await??;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        anyhow::bail!("not confirmed; {unchanged}")
    }
}

/// How every AWS call is retried: throttling, 5xx, timeouts and dropped connections up to six
/// attempts with capped exponential backoff and jitter (the SDK's standard mode, which classifies by
/// error code and status); an attempt that gets no answer at all, at most three times in all
/// ([`crate::patience`]). Waits of our own retry on top of this, within the command's deadline.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

/// No call waits forever: [`patience::CONNECT`](crate::patience::CONNECT) to connect, and 60 s for
/// one attempt, sending and answer included (enough for an 8 MB upload part on a slow line). The
/// first byte of an answer is awaited only [`patience::FIRST_BYTE`](crate::patience::FIRST_BYTE)
/// (plus the body's upload time) by the HTTP client [`sdk_config`] sets: the SDK's own
/// `read_timeout` counts from the start of the request, sending its body included, so one short
/// enough to catch a silent endpoint would cut large uploads.
pub fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(crate::patience::CONNECT)
        .operation_attempt_timeout(attempt_timeout())
        .build()
}

/// 60 s, or `NOTESCTL_ATTEMPT_TIMEOUT` seconds.
fn attempt_timeout() -> Duration {
    std::env::var("NOTESCTL_ATTEMPT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(60))
}

/// The usual credential chain (profiles, SSO, environment), `--region`, `--endpoint-url` for
/// emulators; or, for `--local URL`, a running `notesctl dev` with its own credentials.
pub async fn sdk_config(global: &Global, local: Option<&str>) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    // Every client made from this configuration: an attempt without an answer is said and retried,
    // and a call whose attempts all went unanswered fails as "nothing answered at …".
    if let Some(client) = crate::patience::sdk_http_client() {
        loader = loader.http_client(client);
    }
    if let Some(url) = local {
        let token = dev_token()?;
        loader = loader
            .endpoint_url(url)
            .region(Region::new("local"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                DEV_ACCESS_KEY,
                token,
                None,
                None,
                "notesctl-dev",
            ));
        return Ok(loader.load().await);
    }
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &global.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &global.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!(
            "no AWS region is configured: pass --region, or set AWS_REGION or a region in your profile"
        );
    }
    Ok(config)
}

/// The access key id `--local` signs with; the secret key is the runbook token of `notesctl dev`.
pub const DEV_ACCESS_KEY: &str = "notesctl-dev";
/// The token's file in `notesctl dev`'s data directory.
pub const DEV_TOKEN_FILE: &str = "runbook-token";

/// `notesctl dev`'s data directory unless `--data-dir` (or `NOTESCTL_DEV_DATA_DIR`) says otherwise.
pub const DEV_DATA_DIR: &str = ".notesctl/dev";

/// Where `--local` looks for the token: `$NOTESCTL_DEV_DATA_DIR`, else [`DEV_DATA_DIR`] (the
/// defaults of `notesctl dev --data-dir`).
pub fn dev_token_path() -> std::path::PathBuf {
    std::env::var_os("NOTESCTL_DEV_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(DEV_DATA_DIR))
        .join(DEV_TOKEN_FILE)
}

/// The runbook token of the `notesctl dev` that `--local` talks to: `$NOTESCTL_DEV_TOKEN`, else the
/// file `dev` writes in its data directory (`$NOTESCTL_DEV_DATA_DIR`, else `.notesctl/dev`).
pub fn dev_token() -> anyhow::Result<String> {
    if let Some(token) = std::env::var("NOTESCTL_DEV_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(token);
    }
    let path = dev_token_path();
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
        Ok(_) => anyhow::bail!(
            "the runbook token file {} is empty: restart `notesctl dev`",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no runbook token at {}: --local needs the token `notesctl dev` writes in its data directory. Run this from the folder where `notesctl dev` runs, or set NOTESCTL_DEV_DATA_DIR to its --data-dir",
            path.display()
        ),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("cannot read the runbook token {}", path.display()))),
    }
}

/// The app's own log targets: what the functions log.
const APP_LOGS: &str = "notes_handlers=info,notesctl=info";

type Registry = tracing_subscriber::Registry;
type ExtraLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;
static EXTRA: OnceLock<tracing_subscriber::reload::Handle<Option<ExtraLayer>, Registry>> =
    OnceLock::new();

/// Logs on stderr by `-q`/`-v` (or `NOTESCTL_LOG`), plus an empty slot that receives the app's info
/// logs whatever `-q`/`-v` say, for a command that keeps them (see [`add_app_log_layer`]).
pub fn init_logs(global: &Global) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOTESCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(global)));
    let (slot, handle) = tracing_subscriber::reload::Layer::new(None::<ExtraLayer>);
    // The filter wraps the slot, not what goes into it: a per-layer filter must be in place when the
    // subscriber is built.
    let slot = slot.with_filter(tracing_subscriber::EnvFilter::new(APP_LOGS));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    if tracing_subscriber::registry()
        .with(slot)
        .with(stderr)
        .try_init()
        .is_ok()
    {
        let _ = EXTRA.set(handle);
    }
}

/// What reaches stderr by `-q`/`-v`: our own logs at info (error with `-q`, debug and trace with
/// `-v`, `-vv`); the libraries' (the AWS SDK's credential and region chains warn at length about
/// every source they tried) only from `-v` on — what matters of them becomes our own error message.
pub fn log_filter(global: &Global) -> String {
    let (ours, theirs) = match (global.quiet, global.verbose) {
        (true, _) => ("error", "error"),
        (false, 0) => ("info", "error"),
        (false, 1) => ("debug", "warn"),
        (false, 2) => ("trace", "info"),
        _ => ("trace", "debug"),
    };
    format!("{theirs},notesctl={ours},notes_handlers={ours}")
}

/// Sends the app's info logs (`notes_handlers`, `notesctl`) to `layer` too, from now on.
pub fn add_app_log_layer(layer: ExtraLayer) {
    if let Some(handle) = EXTRA.get() {
        let _ = handle.modify(|slot| *slot = Some(layer));
    }
}

/// `30s`, `15m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A whole number of the largest unit that fits (`3h`, `5m`, `90s`), as `parse_duration` reads it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// How long a command may wait, from when it starts (`--timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: std::time::Instant,
    limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            start: std::time::Instant::now(),
            limit,
        }
    }

    pub fn expired(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// Sleeps `d`, or less if the deadline comes first; whether time is left after it.
    pub async fn sleep(&self, d: Duration) -> bool {
        let left = self.limit.saturating_sub(self.start.elapsed());
        tokio::time::sleep(d.min(left)).await;
        !self.expired()
    }

    /// `15m`, `90s`: the limit as `--timeout` takes it.
    pub fn shown(&self) -> String {
        let s = self.limit.as_secs();
        if s >= 60 && s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{}s", self.limit.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_refused_up_front_with_the_limit() {
        assert_eq!(parse_stage("dev-2").unwrap(), "dev-2");
        assert_eq!(parse_stage(&"a".repeat(30)).unwrap().len(), 30);
        let long = parse_stage(&"a".repeat(31)).unwrap_err();
        assert!(
            long.contains("31 characters") && long.contains("at most 30"),
            "{long}"
        );
        assert!(parse_stage("Prod").unwrap_err().contains("'P'"));
        assert!(parse_stage("-x").unwrap_err().contains("hyphen"));
        assert!(parse_stage("").is_err());
    }

    /// `--stage` (and NOTESCTL_STAGE) go through the check before any command runs.
    #[test]
    fn every_command_refuses_a_stage_too_long_before_it_starts() {
        use clap::Parser;
        let long = "s".repeat(MAX_STAGE_LEN + 1);
        let e = crate::Cli::try_parse_from(["notesctl", "--stage", &long, "status"])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("at most 30"), "{e}");
        assert!(crate::Cli::try_parse_from(["notesctl", "--stage", "dev-1", "status"]).is_ok());
    }

    /// `stage()` falls back to production; `explicit_stage()` does not.
    #[test]
    fn a_stage_is_explicit_only_when_given() {
        use clap::Parser;
        let parsed = |args: &[&str]| {
            let mut argv = vec!["notesctl"];
            argv.extend_from_slice(args);
            Context::new(crate::Cli::try_parse_from(argv).expect("parses").global)
        };
        let default = parsed(&["status"]);
        assert_eq!(default.stage(), "production");
        assert_eq!(
            default.explicit_stage().unwrap_err().to_string(),
            "pass --stage (this writes to a deployed stage)"
        );
        let given = parsed(&["smoke", "--stage", "dev"]);
        assert_eq!(
            (given.stage(), given.explicit_stage().unwrap()),
            ("dev", "dev")
        );
        let production = parsed(&["--stage", "production", "status"]);
        assert_eq!(production.explicit_stage().unwrap(), "production");
    }

    /// The protected-stage rule on the stage names of the help examples and the README, and on names
    /// that only look like them.
    #[test]
    fn protected_stages_are_the_ones_people_use() {
        for stage in [
            "prod",
            "production",
            "prd",
            "live",
            "prod-eu",
            "eu-west-prod",
            "production-2",
            "live-a",
        ] {
            assert!(protected(stage), "{stage} is protected");
        }
        for stage in [
            "dev",
            "staging",
            "test",
            "pr-42",
            "product",
            "products-dev",
            "delivery",
            "prodx",
            "liver",
            "a0-a0",
        ] {
            assert!(!protected(stage), "{stage} is not");
        }
        assert!(protected(DEFAULT_STAGE), "the default stage is protected");
        assert!(!protected(LOCAL_STAGE));
    }

    /// A `--local` that nothing answers at fails in one line that says to start dev.
    #[tokio::test]
    async fn a_local_url_nothing_answers_at_says_to_start_dev() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        assert!(dev_answers(&url).await.is_ok(), "a listener answers");
        drop(listener);
        let refused = dev_answers(&url).await.unwrap_err().to_string();
        assert_eq!(
            refused,
            format!(
                "nothing answers at {url} (connection refused): start `notesctl dev` in another terminal, or pass --local URL where it runs"
            )
        );
        assert!(dev_answers("not a url").await.is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
        assert_eq!(Deadline::after(Duration::from_secs(900)).shown(), "15m");
    }

    fn global(args: &[&str]) -> Global {
        use clap::Parser;
        let mut argv = vec!["notesctl"];
        argv.extend_from_slice(args);
        argv.push("status");
        crate::Cli::parse_from(argv).global
    }

    #[test]
    fn progress_only_for_a_person_reading_text_on_a_terminal() {
        assert!(progress_allowed(&global(&[]), false, true));
        assert!(
            !progress_allowed(&global(&[]), false, false),
            "not a terminal"
        );
        assert!(!progress_allowed(&global(&[]), true, true), "CI");
        assert!(!progress_allowed(&global(&["-q"]), false, true));
        assert!(!progress_allowed(&global(&["--no-progress"]), false, true));
        assert!(!progress_allowed(
            &global(&["--output", "json"]),
            false,
            true
        ));
    }

    #[test]
    fn the_sdks_own_warnings_wait_for_verbose() {
        assert_eq!(
            log_filter(&global(&[])),
            "error,notesctl=info,notes_handlers=info"
        );
        assert_eq!(
            log_filter(&global(&["-q"])),
            "error,notesctl=error,notes_handlers=error"
        );
        assert_eq!(
            log_filter(&global(&["-v"])),
            "warn,notesctl=debug,notes_handlers=debug"
        );
    }
}
