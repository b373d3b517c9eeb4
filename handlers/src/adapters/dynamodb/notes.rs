//! Notes: idempotent save with its tombstone check, updates and deletes by key, and paged lists.

use super::*;

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
