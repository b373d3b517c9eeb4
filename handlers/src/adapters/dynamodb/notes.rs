//! Notes: idempotent save with its tombstone check, updates and deletes by key, and paged lists.

use super::*;

#[async_trait]
impl NoteStore for DynamoStore {
    async fn save_if_absent(&self, note: &Note, lease_until_ms: i64) -> Result<Saved, StoreError> {
        const OP: &str = "saving a note";
        if self
            .keyed_tombstone_counts(OP, &note.username, &note.note_id)
            .await?
        {
            return Ok(Saved::Deleted);
        }
        // One conditional write both deduplicates and refuses a deleted id: the owner's item is
        // absent, or a tombstone that has expired. A failed condition returns the item, which says
        // which. A public note's feed copy is written with it, in one transaction.
        let shard = note.is_public.then(|| shard_of(&note.note_id, self.shards));
        let owner = note_item(user_pk(&note.username), note, lease_until_ms, shard);
        const ABSENT_OR_EXPIRED: &str =
            "attribute_not_exists(pk) OR (attribute_exists(deleted) AND #ttl < :now)";
        let refused = |old: Option<&Item>| match old {
            Some(item) if is_tombstone(item) => Saved::Deleted,
            _ => Saved::AlreadyExists,
        };
        let Some(shard) = shard else {
            let result = self
                .client
                .get()
                .await
                .put_item()
                .table_name(&self.table)
                .set_item(Some(owner))
                .condition_expression(ABSENT_OR_EXPIRED)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", now_seconds())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match result {
                Ok(_) => Ok(Saved::Created),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        Ok(refused(failed.item.as_ref()))
                    }
                    _ => Err(store_error(OP, e)),
                },
            };
        };
        let owner = build(
            OP,
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(owner))
                .condition_expression(ABSENT_OR_EXPIRED)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", now_seconds())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )?;
        let feed = build(
            OP,
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(note_item(
                    Partition::Shard(shard).pk(),
                    note,
                    lease_until_ms,
                    Some(shard),
                )))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let items = vec![
            TransactWriteItem::builder().put(owner).build(),
            TransactWriteItem::builder().put(feed).build(),
        ];
        Ok(match self.transact(OP, items).await? {
            None => Saved::Created,
            Some(checks) => match checks.first() {
                Some(Check::Failed(old)) => refused(old.as_ref()),
                // The owner's item was new and the feed copy there: a copy no delete removed.
                _ => Saved::AlreadyExists,
            },
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
            .client.get().await
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(username), note_id.sort_key())))
            .update_expression("SET leaseUntil = :lease")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(deleted) AND notified = :f AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
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
            .get()
            .await
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(username), note_id.sort_key())))
            .update_expression("SET notified = :t")
            .condition_expression(LIVE)
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
            .filter(|i| !is_tombstone(i))
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
        // A migration may move the feed copy between the read and the write: read again then.
        for _ in 0..MOVED_RETRIES {
            let Some((mut note, feed)) = self.read_note_and_feed(OP, username, note_id).await?
            else {
                return Ok(None);
            };
            let update = |pk: String, (condition, values): (&str, Item)| {
                build(
                    OP,
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk, note_id.sort_key())))
                        .update_expression("SET content = :c, updatedAt = :u")
                        .condition_expression(condition)
                        .set_expression_attribute_values(Some(values))
                        .expression_attribute_values(":c", s(content))
                        .expression_attribute_values(":u", s(updated_at))
                        .build(),
                )
                .map(|u| TransactWriteItem::builder().update(u).build())
            };
            let mut items = vec![update(user_pk(username), feed_unmoved(feed))?];
            if let Some(feed) = feed {
                items.push(update(feed.pk(), ("attribute_exists(pk)", Item::new()))?);
            }
            if self.transact(OP, items).await?.is_some() {
                continue;
            }
            note.content = content.to_owned();
            note.updated_at = Some(updated_at.to_owned());
            return Ok(Some(note));
        }
        Ok(None)
    }

    async fn delete_note(
        &self,
        username: &str,
        note_id: &NoteId,
        tombstone_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "deleting a note";
        for _ in 0..MOVED_RETRIES {
            let Some((note, feed)) = self.read_note_and_feed(OP, username, note_id).await? else {
                return Ok(None);
            };
            // The owner's item becomes the tombstone, if it still is the note as read.
            let (condition, values) = feed_unmoved(feed);
            let tombstone = tombstone_item(username, note_id, tombstone_until_ms);
            let Some(feed) = feed else {
                let result = self
                    .client
                    .get()
                    .await
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(tombstone))
                    .condition_expression(condition)
                    .set_expression_attribute_values((!values.is_empty()).then_some(values))
                    .send()
                    .await;
                match result {
                    Ok(_) => return Ok(Some(note)),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(store_error(OP, e)),
                }
            };
            let items = vec![
                TransactWriteItem::builder()
                    .put(build(
                        OP,
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(tombstone))
                            .condition_expression(condition)
                            .set_expression_attribute_values((!values.is_empty()).then_some(values))
                            .build(),
                    )?)
                    .build(),
                TransactWriteItem::builder()
                    .delete(build(
                        OP,
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(feed.pk(), note_id.sort_key())))
                            .build(),
                    )?)
                    .build(),
            ];
            if self.transact(OP, items).await?.is_some() {
                continue;
            }
            return Ok(Some(note));
        }
        Ok(None)
    }

    async fn list_user_notes(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        self.list_notes("listing notes", user_pk(username), page)
            .await
    }

    async fn list_public_notes(&self, page: &FeedRequest) -> Result<Page<Note>, StoreError> {
        const OP: &str = "listing public notes";
        let page = if self.legacy_emptied().await {
            page.clone().without_legacy()
        } else {
            page.clone()
        };
        // The partitions are read side by side: a page costs the slowest Query, not their sum.
        let fetches = page.fetches(self.shards);
        let fetched =
            futures::future::try_join_all(fetches.iter().map(|f| self.fetch(OP, f))).await?;
        Ok(page.merge(self.shards, fetches.into_iter().zip(fetched).collect()))
    }

    async fn migrate_public_feed(&self, max: usize) -> Result<Migrated, StoreError> {
        const OP: &str = "migrating the public feed";
        let mut done = Migrated::default();
        for source in self.shards.migration_sources() {
            let budget = max.saturating_sub(done.moved);
            let (items, last) = self
                .query_page(
                    OP,
                    Query {
                        table: &self.table,
                        pk: source.pk(),
                        sk_prefix: "NOTE#",
                        start_after: None,
                        limit: Some(budget + 1),
                        newest_first: false,
                    },
                )
                .await?;
            for item in items.iter().take(budget) {
                self.migrate_one(OP, source, item, &mut done).await?;
            }
            if items.len() > budget || last.is_some() {
                done.remaining = true;
                break;
            }
        }
        if !done.remaining {
            // Nothing is left under the legacy key, and nothing writes there any more.
            self.mark_legacy_feed_emptied().await?;
        }
        Ok(done)
    }
}

/// How often update and delete read a note again when its feed copy moved under them.
const MOVED_RETRIES: usize = 3;

/// The owner's copy exists, is no tombstone, and still records the feed copy where it was read (a
/// migration moving it in between cancels the write, which then reads again).
fn feed_unmoved(feed: Option<Partition>) -> (&'static str, Item) {
    match feed {
        Some(Partition::Shard(n)) => (
            "attribute_exists(pk) AND attribute_not_exists(deleted) AND feedShard = :shard",
            HashMap::from([(":shard".to_owned(), AttributeValue::N(n.to_string()))]),
        ),
        Some(Partition::Legacy) => (
            "attribute_exists(pk) AND attribute_not_exists(deleted) AND attribute_not_exists(feedShard)",
            Item::new(),
        ),
        None => (LIVE, Item::new()),
    }
}

impl DynamoStore {
    /// The owner's note and where its feed copy is (`None` for a private note); `None` for no note
    /// or its tombstone.
    async fn read_note_and_feed(
        &self,
        operation: &'static str,
        username: &str,
        note_id: &NoteId,
    ) -> Result<Option<(Note, Option<Partition>)>, StoreError> {
        let Some(item) = self
            .get_item(
                operation,
                &self.table,
                key(user_pk(username), note_id.sort_key()),
            )
            .await?
        else {
            return Ok(None);
        };
        if is_tombstone(&item) {
            return Ok(None);
        }
        let note = note_from_item(operation, &item)?;
        let feed = note
            .is_public
            .then(|| Partition::recorded(feed_shard(&item)));
        Ok(Some((note, feed)))
    }

    /// One partition's part of a feed page. A Query that stops at 1 MB before finding anything goes
    /// on from where it stopped, so a partition is never reported as holding more yet nothing.
    async fn fetch(&self, operation: &'static str, f: &Fetch) -> Result<Fetched, StoreError> {
        let mut start = f.before.clone();
        loop {
            let (items, last) = self
                .query_page(
                    operation,
                    Query {
                        table: &self.table,
                        pk: f.partition.pk(),
                        sk_prefix: "NOTE#",
                        start_after: start,
                        limit: Some(f.limit),
                        newest_first: true,
                    },
                )
                .await?;
            let last = last.and_then(|k| get_s(&k, "sk"));
            if items.is_empty() && last.is_some() {
                start = last;
                continue;
            }
            let notes = items
                .iter()
                .map(|i| note_from_item(operation, i))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Fetched {
                more: last.is_some() || notes.len() == f.limit,
                notes,
            });
        }
    }

    /// Moves one feed copy from `source` to its shard in one transaction: the new copy, the old one
    /// deleted only if unchanged since it was read (an update in between makes this one wait for
    /// the next step), and the owner's copy told where it went — or made, for a note the original
    /// system stored only in the feed.
    async fn migrate_one(
        &self,
        operation: &'static str,
        source: Partition,
        item: &Item,
        done: &mut Migrated,
    ) -> Result<(), StoreError> {
        let note = note_from_item(operation, item)?;
        let sort_key = note.note_id.sort_key();
        let shard = shard_of(&note.note_id, self.shards);
        let shard_n = AttributeValue::N(shard.to_string());
        let mut copy = item.clone();
        copy.insert("pk".into(), s(Partition::Shard(shard).pk()));
        copy.insert("feedShard".into(), shard_n.clone());
        let owner_key = key(user_pk(&note.username), sort_key.clone());
        let owner_item = self
            .get_item(operation, &self.table, owner_key.clone())
            .await?;
        let source_key = key(source.pk(), sort_key);
        let delete_source = build(
            operation,
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(source_key.clone()))
                .condition_expression("attribute_exists(pk) AND content = :c")
                .expression_attribute_values(":c", s(&note.content))
                .build(),
        )?;
        if owner_item.as_ref().is_some_and(is_tombstone) {
            // Its owner deleted it and the copy outlived the delete: nothing to move.
            self.client
                .get()
                .await
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(source_key))
                .send()
                .await
                .map_err(|e| store_error(operation, e))?;
            return Ok(());
        }
        let owner_exists = owner_item.is_some();
        let owner = if owner_exists {
            TransactWriteItem::builder()
                .update(build(
                    operation,
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(owner_key))
                        .update_expression("SET feedShard = :n")
                        .condition_expression(LIVE)
                        .expression_attribute_values(":n", shard_n)
                        .build(),
                )?)
                .build()
        } else {
            let mut owner = copy.clone();
            owner.insert("pk".into(), s(user_pk(&note.username)));
            owner
                .entry("notified".into())
                .or_insert(AttributeValue::Bool(true));
            TransactWriteItem::builder()
                .put(build(
                    operation,
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(owner))
                        .condition_expression("attribute_not_exists(pk)")
                        .build(),
                )?)
                .build()
        };
        let items = vec![
            TransactWriteItem::builder()
                .put(build(
                    operation,
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(copy))
                        .build(),
                )?)
                .build(),
            TransactWriteItem::builder().delete(delete_source).build(),
            owner,
        ];
        if self.transact(operation, items).await?.is_none() {
            done.moved += 1;
            if !owner_exists {
                done.owner_copies_made += 1;
            }
        } else {
            // Changed or deleted since it was read: left for the next step to see as it is now.
            done.remaining = true;
        }
        Ok(())
    }
}
