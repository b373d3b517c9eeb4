//! What a deploy does for the data stack beyond CloudFormation: a table it has just created holds no
//! public note under the feed's unsharded key and no tombstone under the key earlier versions kept
//! them at, and never will, so it is marked so: the app's readers query the feed's shards alone
//! from the first page, and saves look for no old tombstone (`migrate public-feed` marks a table
//! that had notes there once it has moved them; an older table's old tombstones count until the
//! last could have expired).

use notes_handlers::adapters::dynamodb::DynamoStore;

use super::{StackAction, StackReport};
use crate::context::Context;

/// Marks the table of a data stack this deploy created as new (its output `DataTableName`, else
/// the name the template gives it). A failure costs one Query per feed page and a GetItem per
/// saved note for a month, not correctness: it is said, and the deploy goes on.
pub async fn mark_new_table(ctx: &Context, config: &aws_config::SdkConfig, stack: &StackReport) {
    if stack.action != StackAction::Created {
        return;
    }
    let table = stack
        .outputs
        .get("DataTableName")
        .cloned()
        .unwrap_or_else(|| crate::names::data_table(ctx.stage()));
    let store = DynamoStore::from_sdk_config(config, &table, "");
    if let Err(e) = store.mark_new_table().await {
        ctx.say(format!(
            "warning: {e}: the app reads the feed's unsharded key (one Query more per page) until `notesctl migrate public-feed --stage {}` runs, and looks for old tombstones (one GetItem per saved note) for 31 days",
            ctx.stage()
        ));
    }
}
