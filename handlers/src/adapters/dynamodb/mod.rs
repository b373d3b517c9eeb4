//! DynamoDB: users and notes in the single table `{stage}-data-table`, connections in
//! `{stage}-websocket-connections`. Item layout is the original's (see `docs/API.md`), plus:
//! - `notified` on a note item: its `note-saved` went out (idempotent save, required fix 4);
//! - `pk CONNECTIONS#{0..7}`, `sk CONNECTION#{id}`: the registry's index of live connections, in
//!   eight partitions, so a public broadcast is eight Queries, never a Scan (required fix 6);
//! - a deleted note's tombstone is its owner's item itself, `deleted` set and the note's fields
//!   gone (TTL `ttl`), so the one conditional write that stores a note also refuses a deleted id and
//!   a late redelivery of its `note-created` cannot bring it back;
//! - `sk DELETED#{noteId}` under the owner: where tombstones were kept before (a separate item the
//!   save had to check in a transaction). Nothing writes them now; saves look for one only until
//!   the last could have expired, as `pk TOMBSTONES#DELETED`, `sk UNTIL` says (0 for a new table);
//! - `pk FEED#LEGACY`, `sk EMPTIED`: the unsharded feed partition holds no note and never will
//!   (written by `migrate public-feed` when done, and by the deploy that creates a table), so
//!   readers that have seen it query the shards alone.
//!
//! Item layout and the shared calls are here; each port's operations in its own file.

mod connections;
mod marks;
mod notes;
mod users;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::store_error;
use crate::domain::cursor::{Page, PageRequest};
use crate::domain::feed::{
    FeedRequest, Fetch, Fetched, LEGACY_EMPTIED, Partition, ShardCount, fnv1a, shard_of,
};
use crate::domain::note::{Note, NoteId};
use crate::domain::user::{UserRecord, username_key};
use crate::ports::{
    Connection, ConnectionRegistry, Created, Migrated, NoteStore, Saved, StoreError, UserStore,
};

type Item = HashMap<String, AttributeValue>;

pub const CONNECTIONS_INDEX_PK: &str = "CONNECTIONS";

/// One item's condition in a cancelled transaction.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    Passed,
    /// It failed; the item as it was, when asked for.
    Failed(Option<Item>),
}

/// A Query on one partition: `pk = :pk AND begins_with(sk, :prefix)`.
struct Query<'a> {
    table: &'a str,
    pk: String,
    sk_prefix: &'a str,
    start_after: Option<String>,
    limit: Option<usize>,
    newest_first: bool,
}

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: std::sync::Arc<crate::adapters::lazy::LazyClient<Client>>,
    table: String,
    connections_table: String,
    shards: ShardCount,
    legacy: std::sync::Arc<LegacyMark>,
    /// Until when (epoch ms) a tombstone under its own `DELETED#` key may still count, once read.
    keyed_tombstones: std::sync::Arc<tokio::sync::OnceCell<i64>>,
}

/// Until when a table may hold tombstones under their own `DELETED#` keys: `until` (epoch ms).
const KEYED_TOMBSTONES: (&str, &str) = ("TOMBSTONES#DELETED", "UNTIL");

/// A condition that holds for a stored note and fails for a tombstone or nothing.
const LIVE: &str = "attribute_exists(pk) AND attribute_not_exists(deleted)";

/// What a store has seen of the unsharded feed partition's mark: once seen, the partition is
/// never read again; until then it is read, and the mark looked for again every
/// [`LOOK_AGAIN`] (one eventually consistent GetItem, half a read unit).
#[derive(Debug, Default)]
struct LegacyMark {
    emptied: std::sync::atomic::AtomicBool,
    looked: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a store that found no mark goes on reading the legacy partition before it looks again.
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(300);

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn malformed(operation: &'static str, what: &str) -> StoreError {
    StoreError::new(operation, format!("stored item is malformed: {what}"))
}

fn user_pk(username: &str) -> String {
    format!("USER#{username}")
}

/// A user's profile is keyed by the name's normalised form, so that one account has one spelling.
fn profile_pk(username: &str) -> String {
    user_pk(&username_key(username))
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// The feed shard recorded on a note item; none: the unsharded partition (stored before shards).
fn feed_shard(item: &Item) -> Option<u32> {
    item.get("feedShard")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn note_item(pk: String, note: &Note, lease_until_ms: i64, shard: Option<u32>) -> Item {
    let mut item = key(pk, note.note_id.sort_key());
    if let Some(shard) = shard {
        item.insert("feedShard".into(), AttributeValue::N(shard.to_string()));
    }
    item.insert("noteId".into(), s(note.note_id.as_str()));
    item.insert("username".into(), s(&note.username));
    item.insert("content".into(), s(&note.content));
    item.insert("isPublic".into(), AttributeValue::Bool(note.is_public));
    item.insert("status".into(), s(&note.status));
    item.insert("createdAt".into(), s(&note.created_at));
    item.insert("savedAt".into(), s(&note.saved_at));
    if let Some(u) = &note.updated_at {
        item.insert("updatedAt".into(), s(u));
    }
    item.insert("notified".into(), AttributeValue::Bool(false));
    item.insert(
        "leaseUntil".into(),
        AttributeValue::N(lease_until_ms.to_string()),
    );
    item
}

/// `DELETED#{noteId}` under the owner: where a deleted note's tombstone was kept before it became
/// the state of the note's own item (see [`KEYED_TOMBSTONES`]).
fn keyed_tombstone_key(username: &str, note_id: &NoteId) -> Item {
    key(user_pk(username), format!("DELETED#{}", note_id.as_str()))
}

/// A deleted note's owner item: its key, `deleted`, and the `ttl` (seconds) at which DynamoDB
/// removes it. Nothing of the note is kept.
fn tombstone_item(username: &str, note_id: &NoteId, until_ms: i64) -> Item {
    let mut item = key(user_pk(username), note_id.sort_key());
    item.insert("deleted".into(), AttributeValue::Bool(true));
    item.insert(
        "ttl".into(),
        AttributeValue::N((until_ms / 1000).to_string()),
    );
    item
}

fn is_tombstone(item: &Item) -> bool {
    item.contains_key("deleted")
}

/// The ttl condition's value: now, in epoch seconds. TTL deletes expired items days late; until
/// then they are still read, and an expired tombstone counts for nothing.
fn now_seconds() -> AttributeValue {
    AttributeValue::N((crate::domain::clock::now_millis() / 1000).to_string())
}

fn note_from_item(operation: &'static str, item: &Item) -> Result<Note, StoreError> {
    let field = |name: &str| get_s(item, name).ok_or_else(|| malformed(operation, name));
    let note_id = NoteId::parse(&field("noteId")?).map_err(|_| malformed(operation, "noteId"))?;
    let username = match get_s(item, "username") {
        Some(u) => u,
        None => field("pk")?.trim_start_matches("USER#").to_owned(),
    };
    Ok(Note {
        note_id,
        username,
        content: field("content")?,
        is_public: item
            .get("isPublic")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        status: get_s(item, "status").unwrap_or_else(|| "saved".to_owned()),
        created_at: field("createdAt")?,
        saved_at: get_s(item, "savedAt").unwrap_or_default(),
        updated_at: get_s(item, "updatedAt"),
    })
}

fn connection_item(pk: String, sk: String, c: &Connection) -> Item {
    let mut item = key(pk, sk);
    item.insert("connectionId".into(), s(&c.connection_id));
    item.insert("username".into(), s(&c.username));
    item.insert("connectedAt".into(), s(&c.connected_at));
    item.insert("ttl".into(), AttributeValue::N(c.ttl.to_string()));
    item
}

fn connection_from_item(operation: &'static str, item: &Item) -> Result<Connection, StoreError> {
    Ok(Connection {
        connection_id: get_s(item, "connectionId")
            .ok_or_else(|| malformed(operation, "connectionId"))?,
        username: get_s(item, "username").ok_or_else(|| malformed(operation, "username"))?,
        connected_at: get_s(item, "connectedAt").unwrap_or_default(),
        ttl: item
            .get("ttl")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

/// Partitions of the registry index: connects, disconnects and broadcasts spread over several
/// partition keys instead of one hot one.
pub const INDEX_SHARDS: u32 = 8;

/// `CONNECTIONS#{n}` for a connection, by a stable hash (FNV-1a) of its id.
pub fn index_pk(connection_id: &str) -> String {
    format!(
        "{CONNECTIONS_INDEX_PK}#{}",
        fnv1a(connection_id) % INDEX_SHARDS
    )
}

/// The three rows of a connection: META, under its user, and in the registry index.
fn connection_keys(c: &Connection) -> [(String, String); 3] {
    let sk = format!("CONNECTION#{}", c.connection_id);
    [
        (format!("CONNECTION#{}", c.connection_id), "META".to_owned()),
        (user_pk(&c.username), sk.clone()),
        (index_pk(&c.connection_id), sk),
    ]
}

fn build<T, E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
    r: Result<T, E>,
) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::new(operation, e))
}

impl DynamoStore {
    pub fn new(
        client: impl Into<crate::adapters::lazy::LazyClient<Client>>,
        table: impl Into<String>,
        connections_table: impl Into<String>,
    ) -> Self {
        Self {
            client: std::sync::Arc::new(client.into()),
            table: table.into(),
            connections_table: connections_table.into(),
            shards: ShardCount::default(),
            legacy: Default::default(),
            keyed_tombstones: Default::default(),
        }
    }

    /// From an SDK configuration (callers that do not depend on the DynamoDB SDK themselves).
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        connections_table: impl Into<String>,
    ) -> Self {
        Self::new(Client::new(sdk), table, connections_table)
    }

    /// The public feed's shard count (8 unless set).
    pub fn with_feed_shards(mut self, shards: ShardCount) -> Self {
        self.shards = shards;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(
        &self,
        operation: &'static str,
        table: &str,
        key: Item,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get()
            .await
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(operation, e))?;
        Ok(out.item)
    }

    /// A transaction; `Ok(None)` when it committed, `Ok(Some(checks))` when conditions cancelled it
    /// (`checks[i]`: item i's condition, with the item as it was when its Put or Update asked for
    /// it with `ReturnValuesOnConditionCheckFailure`). Conflicts and throttling are retryable errors.
    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<Check>>, StoreError> {
        let e = match self
            .client
            .get()
            .await
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => return Ok(None),
            Err(e) => e,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(tc)) =
            e.as_service_error()
        {
            let reasons = tc.cancellation_reasons();
            let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.iter().any(|c| {
                matches!(
                    *c,
                    "TransactionConflict"
                        | "ThrottlingError"
                        | "ProvisionedThroughputExceeded"
                        | "RequestLimitExceeded"
                )
            }) {
                return Err(StoreError::throttled(
                    operation,
                    format!("transaction cancelled: {codes:?}"),
                ));
            }
            if codes.contains(&"ConditionalCheckFailed") {
                return Ok(Some(
                    reasons
                        .iter()
                        .map(|r| match r.code() {
                            Some("ConditionalCheckFailed") => Check::Failed(r.item.clone()),
                            _ => Check::Passed,
                        })
                        .collect(),
                ));
            }
        }
        if e.as_service_error()
            .is_some_and(|se| se.is_transaction_in_progress_exception())
        {
            return Err(StoreError::throttled(
                operation,
                "another transaction on these items is in progress",
            ));
        }
        Err(store_error(operation, e))
    }

    async fn query_page(
        &self,
        operation: &'static str,
        q: Query<'_>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let start = q.start_after.map(|sk| key(q.pk.clone(), sk));
        let out = self
            .client
            .get()
            .await
            .query()
            .table_name(q.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(q.pk))
            .expression_attribute_values(":prefix", s(q.sk_prefix))
            .scan_index_forward(!q.newest_first)
            .set_limit(q.limit.map(|l| l as i32))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error(operation, e))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// One page of a user's notes, newest first, tombstones skipped. Asks for one item more than
    /// the page so the cursor is given only when more notes exist. Where tombstones took places in
    /// what it asked for, it asks again for as many; where DynamoDB stopped early (its 1 MB page)
    /// with notes found, its own last key is the cursor (read on only when none were).
    async fn list_notes(
        &self,
        operation: &'static str,
        pk: String,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        let mut items = Vec::new();
        let mut start = page.after.clone();
        let next = loop {
            let wanted = page.limit + 1 - items.len();
            let (read, last) = self
                .query_page(
                    operation,
                    Query {
                        table: &self.table,
                        pk: pk.clone(),
                        sk_prefix: "NOTE#",
                        start_after: start,
                        limit: Some(wanted),
                        newest_first: true,
                    },
                )
                .await?;
            let stopped_early = read.len() < wanted;
            items.extend(read.into_iter().filter(|i| !is_tombstone(i)));
            if items.len() > page.limit {
                items.truncate(page.limit);
                break items.last().and_then(|i| get_s(i, "sk"));
            }
            let last = last.and_then(|k| get_s(&k, "sk"));
            match last {
                Some(sk) if stopped_early && !items.is_empty() => break Some(sk),
                Some(sk) => start = Some(sk),
                None => break None,
            }
        };
        let items = items
            .iter()
            .map(|i| note_from_item(operation, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    async fn query_all_connections(
        &self,
        operation: &'static str,
        pk: String,
    ) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (items, last) = self
                .query_page(
                    operation,
                    Query {
                        table: &self.connections_table,
                        pk: pk.clone(),
                        sk_prefix: "CONNECTION#",
                        start_after: after,
                        limit: None,
                        newest_first: false,
                    },
                )
                .await?;
            for item in &items {
                out.push(connection_from_item(operation, item)?);
            }
            match last.and_then(|k| get_s(&k, "sk")) {
                Some(sk) => after = Some(sk),
                None => return Ok(out),
            }
        }
    }
}
