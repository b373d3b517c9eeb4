//! The releases every successful deploy records ([`deploy::releases`]): `notesctl history` lists them, newest (live) first. `notesctl rollback [--to ID]` fetches a
//! release's templates and zip and deploys them through `deploy` itself — a hotswap when only the code
//! differs, change sets otherwise — and that deploy is recorded as a new release.
//!
//! Rollback trusts nothing it downloads: a release names only the six stacks, each object's SHA-256
//! must be the one its content-addressed key names (an object overwritten in the bucket is refused),
//! and the templates pass `validate` before they are deployed.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::deploy::releases::{Release, list};
use super::deploy::{self, DeployArgs, DeployReport, Inputs};
use super::validate::{self, ValidateArgs};
use crate::aws::artifacts::{Addressed, Artifacts, addressed_sha256, releases_prefix};
use crate::aws::s3::s3_client;
use crate::aws::stacks::STACKS;
use crate::context::{Context, parse_duration};
use crate::lambda::Arch;
use crate::lambda::sha256_hex;
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Show at most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Bucket for the code zips and releases (default: notesctl-artifacts-{account}-{region}).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryReport {
    pub stage: String,
    pub bucket: String,
    /// Newest first: the first is live.
    pub releases: Vec<Release>,
}

impl Report for HistoryReport {
    fn exit(&self) -> Exit {
        Exit::Ok
    }
}

/// The zip's digest, short, from its content-addressed key.
fn short_code(key: &Option<String>) -> String {
    key.as_deref()
        .and_then(|k| k.rsplit_once("notes-lambda/"))
        .map(|(_, file)| file.trim_end_matches(".zip").chars().take(12).collect())
        .unwrap_or_else(|| "-".to_owned())
}

impl fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.releases.is_empty() {
            return writeln!(
                f,
                "no releases of {} in s3://{} yet: each successful `notesctl deploy` records one",
                self.stage, self.bucket
            );
        }
        writeln!(
            f,
            "{:<20} {:<20} {:<12} {:<12} NOTES",
            "RELEASE", "TIME", "CODE", "COMMIT"
        )?;
        for (i, r) in self.releases.iter().enumerate() {
            let commit = r.git.as_ref().map_or("-".to_owned(), |g| {
                let short: String = g.commit.chars().take(10).collect();
                if g.dirty { format!("{short}+") } else { short }
            });
            let mut notes = Vec::new();
            if i == 0 {
                notes.push("live".to_owned());
            }
            if r.hotswap {
                notes.push("hotswap".to_owned());
            }
            if let Some(of) = &r.rollback_of {
                notes.push(format!("rollback to {of}"));
            }
            writeln!(
                f,
                "{:<20} {:<20} {:<12} {:<12} {}",
                r.id,
                r.time.get(..19).unwrap_or(&r.time),
                short_code(&r.code_key),
                commit,
                notes.join(", ")
            )?;
        }
        Ok(())
    }
}

async fn locate(ctx: &Context, bucket: Option<&str>) -> anyhow::Result<Artifacts> {
    let config = ctx.aws().await?;
    let s3 = s3_client(&config, ctx.custom_endpoint());
    Artifacts::locate(&config, s3, bucket).await
}

pub async fn history(ctx: &Context, args: HistoryArgs) -> anyhow::Result<HistoryReport> {
    let store = locate(ctx, args.artifacts_bucket.as_deref()).await?;
    let releases = if store.exists().await? {
        list(&store, ctx.stage(), args.limit).await?
    } else {
        Vec::new()
    };
    Ok(HistoryReport {
        stage: ctx.stage().to_owned(),
        bucket: store.bucket,
        releases,
    })
}

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The release to go back to (its id from `notesctl history`, or a unique prefix of it);
    /// default: the one before the live release.
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Apply without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Let a code-only rollback of a protected stage (prod, production, prd or live between its
    /// hyphens) hotswap; otherwise it goes back through CloudFormation.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for CloudFormation in all.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bucket for the code zips and releases (default: notesctl-artifacts-{account}-{region}).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
    /// Skip `notesctl validate` of the release's templates (for a release of fewer than the six
    /// stacks, or one today's checks refuse). Their SHA-256 is checked all the same.
    #[arg(long)]
    pub no_validate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    /// The release that was live.
    pub from: String,
    /// The release deployed again.
    pub to: String,
    pub deploy: DeployReport,
}

impl Report for RollbackReport {
    fn exit(&self) -> Exit {
        self.deploy.exit()
    }
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rollback from {} to {}", self.from, self.to)?;
        write!(f, "{}", self.deploy)
    }
}

/// The release `to` names (an id or a unique prefix), or the one before the live one.
fn choose<'a>(releases: &'a [Release], to: Option<&str>) -> anyhow::Result<&'a Release> {
    let Some(to) = to else {
        return releases.get(1).ok_or_else(|| {
            anyhow::anyhow!(
                "there is no release before the live one to roll back to ({} recorded): `notesctl history` lists them",
                releases.len()
            )
        });
    };
    let matching: Vec<&Release> = releases.iter().filter(|r| r.id.starts_with(to)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!(
            "no release {to:?} among the {} newest: `notesctl history --limit N` lists them",
            releases.len()
        ),
        many => anyhow::bail!(
            "{to:?} names {} releases ({}): give more of the id",
            many.len(),
            many.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How far back `rollback` looks for the release it is given.
const ROLLBACK_WINDOW: usize = 1000;

pub async fn rollback(ctx: &Context, args: RollbackArgs) -> anyhow::Result<RollbackReport> {
    let store = locate(ctx, args.artifacts_bucket.as_deref()).await?;
    if !store.exists().await? {
        anyhow::bail!(
            "no releases of {}: the artifacts bucket {} does not exist. Deploy first (`notesctl deploy`)",
            ctx.stage(),
            store.bucket
        );
    }
    let releases = list(&store, ctx.stage(), ROLLBACK_WINDOW).await?;
    let live = releases.first().ok_or_else(|| {
        anyhow::anyhow!(
            "no releases of {} in s3://{}: nothing to roll back to",
            ctx.stage(),
            store.bucket
        )
    })?;
    let target = choose(&releases, args.to.as_deref())?;
    if target.id == live.id {
        anyhow::bail!(
            "{} is the live release already: `notesctl history` lists the ones before it",
            target.id
        );
    }
    // What the release names, checked before anything is downloaded or written.
    let record = format!(
        "s3://{}/{}{}.json",
        store.bucket,
        releases_prefix(ctx.stage()),
        target.id
    );
    checked(ctx.stage(), target, &record)?;
    let arch: Arch = match target.parameter("Architecture") {
        Some(a) => <Arch as clap::ValueEnum>::from_str(a, true)
            .map_err(|e| anyhow::anyhow!("release {}: Architecture {a:?}: {e}", target.id))?,
        None => Arch::Arm64,
    };
    // The release's templates and zip, where deploy reads them.
    let dir = tempfile::tempdir()
        .map_err(|e| anyhow::anyhow!("creating a folder for the release's files: {e}"))?;
    fetch(&store, ctx.stage(), target, arch, dir.path()).await?;
    if !args.no_validate {
        refuse_invalid(ctx, target, dir.path()).await?;
    }
    ctx.say(format!(
        "rolling {} back from {} to {} ({} stacks, code {})",
        ctx.stage(),
        live.id,
        target.id,
        target.stacks.len(),
        short_code(&target.code_key)
    ));
    let deploy_args = DeployArgs {
        inputs: Inputs {
            artifacts: dir.path().to_path_buf(),
            arch,
            stacks: target.stacks.keys().cloned().collect(),
            templates: dir.path().to_path_buf(),
            allowed_origin: target.parameter("AllowedOrigin").unwrap_or("*").to_owned(),
            save_timeout: match target.parameter("SaveFunctionTimeout") {
                Some(t) => t.parse().map_err(|e| {
                    anyhow::anyhow!("release {}: SaveFunctionTimeout {t:?}: {e}", target.id)
                })?,
                None => 30,
            },
            // Releases before the feed had shards passed none: the template's default.
            public_feed_shards: match target.parameter("PublicFeedShards") {
                Some(n) => n.parse().map_err(|e| {
                    anyhow::anyhow!("release {}: PublicFeedShards {n:?}: {e}", target.id)
                })?,
                None => 8,
            },
            artifacts_bucket: Some(store.bucket.clone()),
        },
        preview: false,
        yes: args.yes,
        frontend: None,
        hotswap: hotswaps(ctx.stage(), args.force),
        force: args.force,
        watch: false,
        watch_dir: std::path::PathBuf::from("handlers"),
        // Validated above (unless --no-validate), as they are on disk.
        no_validate: true,
        timeout: args.timeout,
        rollback_of: Some(target.id.clone()),
    };
    let deploy = deploy::run(ctx, deploy_args).await?;
    Ok(RollbackReport {
        from: live.id.clone(),
        to: target.id.clone(),
        deploy,
    })
}

/// Whether a rollback may hotswap when only the code differs (anything else goes through change
/// sets): on a protected stage only when asked to with `--force`, so that CloudFormation's CodeKey
/// keeps naming the code the functions run.
fn hotswaps(stage: &str, force: bool) -> bool {
    !crate::context::protected(stage) || force
}

/// Refuses a release that names a stack notesctl does not deploy (its name becomes a file name) or
/// an object outside this stage's content-addressed keys (its SHA-256 could not be checked).
fn checked(stage: &str, target: &Release, record: &str) -> anyhow::Result<()> {
    for (short, stack) in &target.stacks {
        if !STACKS.contains(&short.as_str()) {
            anyhow::bail!(
                "refusing to roll back to {}: its record {record} names a stack {short:?}, not one of notesctl's ({}). notesctl did not write that record; do not roll back to it; deploy instead",
                target.id,
                STACKS.join(", ")
            );
        }
        if addressed_sha256(stage, Addressed::Template, &stack.template).is_none() {
            anyhow::bail!(
                "refusing to roll back to {}: its record {record} names the template {:?} for {short}, not a key of the form {}, so what it holds cannot be checked; do not roll back to it; deploy instead",
                target.id,
                stack.template,
                Addressed::Template.form(stage)
            );
        }
    }
    if let Some(key) = &target.code_key
        && addressed_sha256(stage, Addressed::Code, key).is_none()
    {
        anyhow::bail!(
            "refusing to roll back to {}: its record {record} names the code zip {key:?}, not a key of the form {}, so what it holds cannot be checked; do not roll back to it; deploy instead",
            target.id,
            Addressed::Code.form(stage)
        );
    }
    Ok(())
}

/// The object at a content-addressed `key` (checked by [`checked`]), refused unless its SHA-256 is
/// the one the key names.
async fn get_addressed(
    store: &Artifacts,
    stage: &str,
    kind: Addressed,
    key: &str,
) -> anyhow::Result<Vec<u8>> {
    let said = addressed_sha256(stage, kind, key).ok_or_else(|| {
        anyhow::anyhow!(
            "s3://{}/{key} is not a key of the form {}",
            store.bucket,
            kind.form(stage)
        )
    })?;
    let bytes = store.get(key).await?;
    let is = sha256_hex(&bytes);
    if is != said {
        anyhow::bail!(
            "s3://{}/{key} was changed after it was stored: its SHA-256 is {is}, its key says {said}; do not roll back to it; deploy instead",
            store.bucket
        );
    }
    Ok(bytes)
}

/// Downloads the release's templates (`{short}.yaml`) and code zip into `dir`, each checked.
async fn fetch(
    store: &Artifacts,
    stage: &str,
    target: &Release,
    arch: Arch,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    for (short, stack) in &target.stacks {
        // One of the six names (`checked`): a plain file name in `dir`.
        let short = STACKS
            .iter()
            .find(|s| **s == short.as_str())
            .ok_or_else(|| anyhow::anyhow!("release {}: no stack {short:?}", target.id))?;
        let text = get_addressed(store, stage, Addressed::Template, &stack.template).await?;
        std::fs::write(dir.join(format!("{short}.yaml")), text)
            .map_err(|e| anyhow::anyhow!("writing {short}.yaml of the release: {e}"))?;
    }
    if let Some(key) = &target.code_key {
        let zip = get_addressed(store, stage, Addressed::Code, key).await?;
        std::fs::write(crate::lambda::zip_path(dir, arch), zip)
            .map_err(|e| anyhow::anyhow!("writing the release's zip: {e}"))?;
    }
    Ok(())
}

/// Refuses templates `validate` finds errors in: the checks may have grown since they were deployed.
async fn refuse_invalid(
    ctx: &Context,
    target: &Release,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    if target.stacks.len() < STACKS.len() {
        anyhow::bail!(
            "refusing to roll back to {} unvalidated: it records {} of the six stacks ({}), and validate checks the six together. Pass --no-validate to roll back without it (the templates' SHA-256 is checked all the same)",
            target.id,
            target.stacks.len(),
            target
                .stacks
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let checked = validate::run(
        ctx,
        ValidateArgs {
            templates: dir.to_path_buf(),
        },
    )
    .await?;
    let errors: Vec<_> = checked.errors().collect();
    if let Some(first) = errors.first() {
        anyhow::bail!(
            "refusing to roll back to {}: validate finds {} problems in its templates (the first: {} {}: {}). Deploy a fixed release instead, or pass --no-validate to roll back anyway",
            target.id,
            errors.len(),
            first.file,
            first.resource,
            crate::aws::clip(&first.problem, 200)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The help examples roll back `--stage prod`: a protected stage, so a code-only rollback goes
    /// through CloudFormation unless `--force`; a staging stage hotswaps (tested on moto).
    #[test]
    fn a_protected_stage_rolls_code_back_through_cloudformation() {
        for stage in ["prod", "production", "eu-prod"] {
            assert!(!super::hotswaps(stage, false), "{stage}");
            assert!(super::hotswaps(stage, true), "{stage} --force");
        }
        for stage in ["dev", "staging", "product"] {
            assert!(super::hotswaps(stage, false), "{stage}");
        }
    }

    use super::*;

    fn release(id: &str) -> Release {
        Release {
            id: id.to_owned(),
            time: String::new(),
            notesctl: String::new(),
            git: None,
            code_key: None,
            stacks: BTreeMap::new(),
            hotswap: false,
            rollback_of: None,
        }
    }

    #[test]
    fn rollback_goes_to_the_release_before_the_live_one_or_the_one_named() {
        let releases = [
            release("20261202-020000-000"),
            release("20261202-010000-000"),
            release("20261201-230000-000"),
        ];
        assert_eq!(choose(&releases, None).unwrap().id, "20261202-010000-000");
        assert_eq!(
            choose(&releases, Some("20261201")).unwrap().id,
            "20261201-230000-000"
        );
        let ambiguous = choose(&releases, Some("20261202")).unwrap_err().to_string();
        assert!(ambiguous.contains("names 2 releases"), "{ambiguous}");
        let unknown = choose(&releases, Some("1999")).unwrap_err().to_string();
        assert!(unknown.contains("history"), "{unknown}");
        let alone = choose(&releases[..1], None).unwrap_err().to_string();
        assert!(alone.contains("no release before the live one"), "{alone}");
    }

    fn with_stack(short: &str, template: String) -> Release {
        let mut r = release("20261202-010000-000");
        r.stacks.insert(
            short.to_owned(),
            super::super::deploy::releases::StackRelease {
                template,
                parameters: BTreeMap::new(),
            },
        );
        r
    }

    /// A record naming a stack outside the six, or an object outside this stage's content-addressed
    /// keys, is refused before anything is downloaded or written.
    #[test]
    fn a_release_names_only_the_six_stacks_and_content_addressed_keys() {
        let good = crate::aws::artifacts::template_key("p", b"Resources: {}");
        checked("p", &with_stack("auth", good.clone()), "s3://b/r.json").unwrap();
        for short in ["../../x", "../auth", "auth/../../x", "Auth", ""] {
            let e = checked("p", &with_stack(short, good.clone()), "s3://b/r.json")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("refusing to roll back") && e.contains("s3://b/r.json"),
                "{short}: {e}"
            );
        }
        for key in ["../../x.yaml", "q/templates/x.yaml", "p/notes-lambda/a.zip"] {
            let e = checked("p", &with_stack("auth", key.to_owned()), "s3://b/r.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains("cannot be checked"), "{key}: {e}");
        }
        let mut zip = with_stack("auth", good);
        zip.code_key = Some("p/notes-lambda/../../x.zip".to_owned());
        assert!(checked("p", &zip, "r").is_err());
    }

    /// An object whose bytes are not the ones its key names (overwritten in the bucket) is refused,
    /// naming it.
    #[tokio::test]
    async fn an_object_changed_after_it_was_stored_is_refused() {
        use aws_sdk_s3::operation::get_object::GetObjectOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let key = crate::aws::artifacts::template_key("p", b"Resources: {}");
        let store = |body: &'static [u8]| {
            let get = mock!(aws_sdk_s3::Client::get_object).then_output(move || {
                GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
                    .build()
            });
            let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get]);
            Artifacts {
                s3,
                bucket: "b".into(),
                owner: "123456789012".into(),
                plain_http: false,
            }
        };
        let ok = get_addressed(&store(b"Resources: {}"), "p", Addressed::Template, &key).await;
        assert_eq!(ok.unwrap(), b"Resources: {}");
        let e = get_addressed(
            &store(b"Resources: {pwned: 1}"),
            "p",
            Addressed::Template,
            &key,
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "s3://b/{key} was changed after it was stored: its SHA-256 is {}, its key says {}; do not roll back to it; deploy instead",
                sha256_hex(b"Resources: {pwned: 1}"),
                sha256_hex(b"Resources: {}")
            )
        );
    }

    /// The templates rollback would deploy go through `validate`: an error refuses, naming it; a
    /// release of fewer than six stacks cannot be validated and asks for --no-validate.
    #[tokio::test]
    async fn rollback_refuses_templates_validate_finds_errors_in() {
        use clap::Parser;
        let cli = crate::Cli::parse_from(["notesctl", "--quiet", "--stage", "p", "rollback"]);
        let ctx = Context::new(cli.global);
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let dir = tempfile::tempdir().unwrap();
        let mut all = release("20261202-010000-000");
        for short in STACKS {
            std::fs::copy(
                repo.join(format!("{short}.yaml")),
                dir.path().join(format!("{short}.yaml")),
            )
            .unwrap();
            all.stacks.extend(with_stack(short, String::new()).stacks);
        }
        refuse_invalid(&ctx, &all, dir.path())
            .await
            .expect("the repository's templates validate");
        let notes = dir.path().join("notes.yaml");
        let text = std::fs::read_to_string(&notes).unwrap();
        std::fs::write(&notes, text.replace("- dynamodb:Query", "- dynamodb:Scan")).unwrap();
        let e = refuse_invalid(&ctx, &all, dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("refusing to roll back to 20261202-010000-000: validate finds")
                && e.contains("notes.yaml")
                && e.contains("--no-validate"),
            "{e}"
        );
        let partial = with_stack("auth", String::new());
        let e = refuse_invalid(&ctx, &partial, dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 of the six stacks (auth)") && e.contains("--no-validate"),
            "{e}"
        );
    }
}
