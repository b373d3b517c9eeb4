//! DynamoDB: users and notes in the single table `{stage}-data-table`, connections in
//! `{stage}-websocket-connections`. Item layout is the original's (see `spec/API.md`), plus:
//! - `notified` on a note item: its `note-saved` went out (idempotent save, required fix 4);
//! - `pk CONNECTIONS#{0..7}`, `sk CONNECTION#{id}`: the registry's index of live connections, in
//!   eight partitions, so a public broadcast is eight Queries, never a Scan (required fix 6);
//! - `sk DELETED#{noteId}` under the owner: a deleted note's tombstone (TTL `ttl`), so a late
//!   redelivery of its `note-created` does not bring it back.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValue, TransactWriteItem, Update,
};

use super::store_error;
use crate::domain::cursor::{Page, PageRequest};
use crate::domain::note::{Note, NoteId};
use crate::domain::user::{UserRecord, username_key};
use crate::ports::{
    Connection, ConnectionRegistry, Created, NoteStore, Saved, StoreError, UserStore,
};

type Item = HashMap<String, AttributeValue>;

pub const PUBLIC_PK: &str = "PUBLIC#NOTES";
pub const CONNECTIONS_INDEX_PK: &str = "CONNECTIONS";

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
    client: Client,
    table: String,
    connections_table: String,
}

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

fn note_item(pk: String, note: &Note, lease_until_ms: i64) -> Item {
    let mut item = key(pk, note.note_id.sort_key());
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

/// `DELETED#{noteId}` under the owner: a deleted note's tombstone, expired by the table's TTL.
fn tombstone_key(username: &str, note_id: &NoteId) -> Item {
    key(user_pk(username), format!("DELETED#{}", note_id.as_str()))
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
    let hash = connection_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{CONNECTIONS_INDEX_PK}#{}", hash % INDEX_SHARDS)
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
        client: Client,
        table: impl Into<String>,
        connections_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            connections_table: connections_table.into(),
        }
    }

    async fn get_item(
        &self,
        operation: &'static str,
        table: &str,
        key: Item,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(operation, e))?;
        Ok(out.item)
    }

    /// A transaction; `Ok(None)` when it committed, `Ok(Some(failed))` when conditions cancelled it
    /// (`failed[i]`: item i's condition failed). Conflicts and throttling are retryable errors.
    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<bool>>, StoreError> {
        let e = match self
            .client
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
                    codes
                        .iter()
                        .map(|c| *c == "ConditionalCheckFailed")
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

    /// One page, newest first. Asks for one item more than the page so the cursor is given only
    /// when more notes exist; when DynamoDB stops early (its 1 MB page), its own last key is the cursor.
    async fn list_notes(
        &self,
        operation: &'static str,
        pk: String,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        let (mut items, last) = self
            .query_page(
                operation,
                Query {
                    table: &self.table,
                    pk,
                    sk_prefix: "NOTE#",
                    start_after: page.after.clone(),
                    limit: Some(page.limit + 1),
                    newest_first: true,
                },
            )
            .await?;
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().and_then(|i| get_s(i, "sk"))
        } else {
            last.and_then(|k| get_s(&k, "sk"))
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

#[async_trait]
impl UserStore for DynamoStore {
    async fn create_user(&self, user: &UserRecord) -> Result<Created, StoreError> {
        const OP: &str = "creating a user";
        let mut item = key(profile_pk(&user.username), "PROFILE");
        item.insert("username".into(), s(&user.username));
        item.insert("passwordHash".into(), s(&user.password_hash));
        item.insert("createdAt".into(), s(&user.created_at));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(Created::Created),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(Created::AlreadyExists)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        const OP: &str = "reading a user";
        let Some(item) = self
            .get_item(OP, &self.table, key(profile_pk(username), "PROFILE"))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(UserRecord {
            username: get_s(&item, "username").ok_or_else(|| malformed(OP, "username"))?,
            password_hash: get_s(&item, "passwordHash")
                .ok_or_else(|| malformed(OP, "passwordHash"))?,
            created_at: get_s(&item, "createdAt").unwrap_or_default(),
        }))
    }
}

#[async_trait]
impl NoteStore for DynamoStore {
    async fn save_if_absent(&self, note: &Note, lease_until_ms: i64) -> Result<Saved, StoreError> {
        const OP: &str = "saving a note";
        let tombstone_check = build(
            OP,
            ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(tombstone_key(&note.username, &note.note_id)))
                // TTL deletes expired items days late; until then they are still read.
                .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(
                    ":now",
                    AttributeValue::N((crate::domain::clock::now_millis() / 1000).to_string()),
                )
                .build(),
        )?;
        let mut items = vec![
            TransactWriteItem::builder()
                .condition_check(tombstone_check)
                .build(),
        ];
        let mut pks = vec![user_pk(&note.username)];
        if note.is_public {
            pks.push(PUBLIC_PK.to_owned());
        }
        for pk in pks {
            let put = build(
                OP,
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(note_item(pk, note, lease_until_ms)))
                    .condition_expression("attribute_not_exists(pk)")
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(match self.transact(OP, items).await? {
            None => Saved::Created,
            Some(failed) if failed.first() == Some(&true) => Saved::Deleted,
            Some(_) => Saved::AlreadyExists,
        })
    }

    async fn claim_announcement(
        &self,
        username: &str,
        note_id: &NoteId,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "claiming a note's announcement";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(username), note_id.sort_key())))
            .update_expression("SET leaseUntil = :lease")
            .condition_expression(
                "attribute_exists(pk) AND notified = :f AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
            )
            .expression_attribute_values(":lease", AttributeValue::N(lease_until_ms.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(|i| note_from_item(OP, &i)).transpose(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn mark_notified(&self, username: &str, note_id: &NoteId) -> Result<(), StoreError> {
        const OP: &str = "marking a note notified";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(username), note_id.sort_key())))
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Deleted by its owner in the meantime: nothing left to mark.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn get_note(&self, username: &str, note_id: &NoteId) -> Result<Option<Note>, StoreError> {
        const OP: &str = "reading a note";
        self.get_item(OP, &self.table, key(user_pk(username), note_id.sort_key()))
            .await?
            .map(|i| note_from_item(OP, &i))
            .transpose()
    }

    async fn update_content(
        &self,
        username: &str,
        note_id: &NoteId,
        content: &str,
        updated_at: &str,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "updating a note";
        let Some(mut note) = self.get_note(username, note_id).await? else {
            return Ok(None);
        };
        let mut pks = vec![user_pk(username)];
        if note.is_public {
            pks.push(PUBLIC_PK.to_owned());
        }
        let items = pks
            .into_iter()
            .map(|pk| {
                let update = build(
                    OP,
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk, note_id.sort_key())))
                        .update_expression("SET content = :c, updatedAt = :u")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_values(":c", s(content))
                        .expression_attribute_values(":u", s(updated_at))
                        .build(),
                )?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if self.transact(OP, items).await?.is_some() {
            return Ok(None);
        }
        note.content = content.to_owned();
        note.updated_at = Some(updated_at.to_owned());
        Ok(Some(note))
    }

    async fn delete_note(
        &self,
        username: &str,
        note_id: &NoteId,
        tombstone_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "deleting a note";
        let Some(note) = self.get_note(username, note_id).await? else {
            return Ok(None);
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(build(
                    OP,
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(user_pk(username), note_id.sort_key())))
                        .condition_expression("attribute_exists(pk)")
                        .build(),
                )?)
                .build(),
        ];
        if note.is_public {
            items.push(
                TransactWriteItem::builder()
                    .delete(build(
                        OP,
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(PUBLIC_PK, note_id.sort_key())))
                            .build(),
                    )?)
                    .build(),
            );
        }
        let mut tombstone = tombstone_key(username, note_id);
        let expires = tombstone_until_ms / 1000;
        tombstone.insert("ttl".into(), AttributeValue::N(expires.to_string()));
        items.push(
            TransactWriteItem::builder()
                .put(build(
                    OP,
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(tombstone))
                        .build(),
                )?)
                .build(),
        );
        if self.transact(OP, items).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(note))
    }

    async fn list_user_notes(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        self.list_notes("listing notes", user_pk(username), page)
            .await
    }

    async fn list_public_notes(&self, page: &PageRequest) -> Result<Page<Note>, StoreError> {
        self.list_notes("listing public notes", PUBLIC_PK.to_owned(), page)
            .await
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoStore {
    async fn register(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "registering a connection";
        let items = connection_keys(connection)
            .into_iter()
            .map(|(pk, sk)| {
                let put = build(
                    OP,
                    Put::builder()
                        .table_name(&self.connections_table)
                        .set_item(Some(connection_item(pk, sk, connection)))
                        .build(),
                )?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.transact(OP, items).await.map(|_| ())
    }

    async fn unregister(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        const OP: &str = "removing a connection";
        let meta = self
            .get_item(
                OP,
                &self.connections_table,
                key(format!("CONNECTION#{connection_id}"), "META"),
            )
            .await?;
        let Some(meta) = meta else { return Ok(None) };
        let connection = connection_from_item(OP, &meta)?;
        self.remove(&connection).await?;
        Ok(Some(connection))
    }

    async fn remove(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "removing a connection";
        let items = connection_keys(connection)
            .into_iter()
            .map(|(pk, sk)| {
                let delete = build(
                    OP,
                    Delete::builder()
                        .table_name(&self.connections_table)
                        .set_key(Some(key(pk, sk)))
                        .build(),
                )?;
                Ok(TransactWriteItem::builder().delete(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.transact(OP, items).await.map(|_| ())
    }

    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError> {
        self.query_all_connections("listing a user's connections", user_pk(username))
            .await
    }

    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let shards = (0..INDEX_SHARDS).map(|n| {
            self.query_all_connections("listing connections", format!("{CONNECTIONS_INDEX_PK}#{n}"))
        });
        Ok(futures::future::try_join_all(shards)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
