//! `notesctl migrate public-feed`: moves public notes into the feed's shards — those stored under the
//! single key `PUBLIC#NOTES` before the feed had shards, and those left in shards past the count by
//! a deploy that lowered it. Online: the app keeps reading the old key until this marks it emptied (when nothing is left), and each
//! note moves in one transaction (feed copy, old copy, owner's copy), so an interrupted run loses
//! nothing and the next run goes on from what is left. `dev` does the same for its store at start.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client as Cfn;
use notes_handlers::adapters::dynamodb::DynamoStore;
use notes_handlers::domain::feed::ShardCount;
use notes_handlers::ports::NoteStore as _;
use serde::{Deserialize, Serialize};

use crate::aws::stacks;
use crate::context::Context;
use crate::names;
use crate::output::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// What to move.
    #[arg(value_enum)]
    pub what: Migration,
    /// The shard count to move notes into (default: the notes stack's PublicFeedShards). Refused
    /// when it differs from the deployed stack's, unless --ignore-stack-shards.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: Option<u32>,
    /// Move into --shards even when the notes stack's PublicFeedShards differs (the functions read
    /// the stack's count, so notes in other shards are missed until a deploy changes it).
    #[arg(long, requires = "shards")]
    pub ignore_stack_shards: bool,
    /// Notes moved per step (one Query, then a read and a transaction per note).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Migration {
    /// Public notes into the feed's shards: from `PUBLIC#NOTES` (stored before the feed had
    /// shards) and from shards past the count. Idempotent; safe while the app runs.
    PublicFeed,
}

/// What a migration did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrateReport {
    pub table: String,
    pub shards: u32,
    /// Notes moved into their shard.
    pub moved: usize,
    /// Of those, notes the original system stored only in the feed, which now have an owner's copy
    /// (so their owner can list, change and delete them).
    pub owner_copies_made: usize,
    pub steps: usize,
    pub seconds: f64,
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.moved == 0 {
            return writeln!(
                f,
                "nothing to move: the public feed of {} is in its {} shards",
                self.table, self.shards
            );
        }
        writeln!(
            f,
            "moved {} public notes of {} into {} shards in {:.1}s",
            self.moved, self.table, self.shards, self.seconds
        )?;
        if self.owner_copies_made > 0 {
            writeln!(
                f,
                "{} of them had no owner's copy (stored by the original system): made, so their owners see them in GET /notes",
                self.owner_copies_made
            )?;
        }
        Ok(())
    }
}

impl Report for MigrateReport {}

/// Steps in a row that may move nothing while notes remain (each changed under the move) before
/// the run gives up.
const STALLS: usize = 5;

pub async fn run(ctx: &Context, args: MigrateArgs) -> anyhow::Result<MigrateReport> {
    let Migration::PublicFeed = args.what;
    let config = ctx.aws().await?;
    let shards = match (args.shards, args.ignore_stack_shards) {
        (Some(n), true) => n,
        (given, _) => {
            let deployed = stack_shards(&Cfn::new(&config), ctx.stage()).await?;
            chosen_shards(given, deployed)?
        }
    };
    let shards = ShardCount::new(shards).map_err(anyhow::Error::msg)?;
    let table = names::data_table(ctx.stage());
    let store =
        DynamoStore::from_sdk_config(&config, &table, names::connections_table(ctx.stage()))
            .with_feed_shards(shards);
    ctx.say(format!(
        "moving public notes of {table} into {} shards, {} a step",
        shards.get(),
        args.batch
    ));
    let started = Instant::now();
    let mut report = MigrateReport {
        table: table.clone(),
        shards: shards.get(),
        moved: 0,
        owner_copies_made: 0,
        steps: 0,
        seconds: 0.0,
    };
    let mut stalls = 0;
    loop {
        let step = store
            .migrate_public_feed(args.batch as usize)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} (after moving {} notes; run again to go on from there)",
                    e.chain(),
                    report.moved
                )
            })?;
        report.steps += 1;
        report.moved += step.moved;
        report.owner_copies_made += step.owner_copies_made;
        if step.moved > 0 {
            ctx.say(format!("moved {} so far", report.moved));
        }
        if !step.remaining {
            break;
        }
        if step.moved == 0 {
            stalls += 1;
            anyhow::ensure!(
                stalls < STALLS,
                "notes of {table} kept changing while being moved ({} moved so far); run again",
                report.moved
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            stalls = 0;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The count to move into: `--shards` when given and the deployed notes stack agrees (or says
/// nothing: no stack, no number), else the stack's. A `--shards` other than the stack's is refused:
/// the functions read the stack's count, so notes moved elsewhere would drop out of the feed.
fn chosen_shards(given: Option<u32>, deployed: Result<Deployed, String>) -> anyhow::Result<u32> {
    match (given, deployed) {
        (None, Ok(d)) => Ok(d.shards),
        (None, Err(why)) => anyhow::bail!(why),
        (Some(n), Ok(d)) if n != d.shards => anyhow::bail!(
            "--shards {n} differs from the notes stack {}'s PublicFeedShards {}: the functions read {} shards, so notes moved into {n} would drop out of the feed. Deploy with {n} shards first, or pass --ignore-stack-shards to move them anyway",
            d.stack,
            d.shards,
            d.shards
        ),
        (Some(n), _) => Ok(n),
    }
}

/// The notes stack and the shard count it was deployed with.
#[derive(Debug, Clone)]
struct Deployed {
    stack: String,
    shards: u32,
}

/// The notes stack's PublicFeedShards, or why there is none to go by (no stack, no number).
async fn stack_shards(cfn: &Cfn, stage: &str) -> anyhow::Result<Result<Deployed, String>> {
    let name = stacks::stack_name(stage, "notes");
    let Some(stack) = stacks::describe(cfn, &name).await? else {
        return Ok(Err(format!(
            "stack {name} does not exist (check --stage and --region): pass --shards N to say how many shards the feed has"
        )));
    };
    let params = stacks::parameters_of(&stack);
    Ok(match params.get("PublicFeedShards") {
        Some(n) => n
            .parse()
            .map(|shards| Deployed {
                stack: name.clone(),
                shards,
            })
            .map_err(|_| {
                format!("stack {name} has PublicFeedShards {n:?}, not a number: pass --shards N")
            }),
        None => Err(format!(
            "stack {name} was deployed before the feed had shards: deploy it with the current templates first (the functions must read the shards before notes move there), or pass --shards N"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed(shards: u32) -> Result<Deployed, String> {
        Ok(Deployed {
            stack: "p-notes".into(),
            shards,
        })
    }

    #[test]
    fn shards_other_than_the_stacks_are_refused_naming_both() {
        assert_eq!(chosen_shards(None, deployed(4)).unwrap(), 4);
        assert_eq!(chosen_shards(Some(4), deployed(4)).unwrap(), 4);
        let refused = chosen_shards(Some(8), deployed(4)).unwrap_err().to_string();
        assert!(
            refused.contains("--shards 8")
                && refused.contains("PublicFeedShards 4")
                && refused.contains("--ignore-stack-shards"),
            "{refused}"
        );
        let no_stack = Err("stack p-notes does not exist".to_owned());
        assert_eq!(chosen_shards(Some(8), no_stack.clone()).unwrap(), 8);
        assert!(chosen_shards(None, no_stack).is_err());
    }
}
