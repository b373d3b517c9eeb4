//! The marks a table carries for its readers and writers: the unsharded feed partition emptied
//! (`FEED#LEGACY`/`EMPTIED`), and until when tombstones under their old `DELETED#` keys may count
//! (`TOMBSTONES#DELETED`/`UNTIL`) — written by the deploy that creates a table, by `migrate`, or by
//! the first save on an older table, and read once per store.

use super::*;

impl DynamoStore {
    /// Marks a table the deploy has just created: its feed has no unsharded partition to read, and
    /// it holds no tombstone under a `DELETED#` key.
    pub async fn mark_new_table(&self) -> Result<(), StoreError> {
        self.mark_legacy_feed_emptied().await?;
        self.put_keyed_tombstones_until(0, false).await?;
        Ok(())
    }

    /// Records until when tombstones under `DELETED#` keys may count (`only_if_absent`: unless a
    /// record exists); `false` when one did.
    async fn put_keyed_tombstones_until(
        &self,
        until_ms: i64,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        const OP: &str = "recording until when keyed tombstones count";
        let mut item = key(KEYED_TOMBSTONES.0, KEYED_TOMBSTONES.1);
        item.insert("until".into(), AttributeValue::N(until_ms.to_string()));
        let put = self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = if only_if_absent {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    /// Until when a tombstone under its own `DELETED#` key may still count: read once per store.
    /// A table without the record was deployed before tombstones moved into the note's item, and
    /// its old tombstones were written until this code first ran: they count for one tombstone
    /// lifetime more (and a day, for deletes of the old code still finishing), recorded here by
    /// the first store to find no record.
    async fn keyed_tombstones_until(&self) -> Result<i64, StoreError> {
        const OP: &str = "reading until when keyed tombstones count";
        const FINISHING: i64 = 24 * 3600 * 1000;
        let until = |item: Option<Item>| {
            item.and_then(|i| i.get("until").and_then(|v| v.as_n().ok()?.parse().ok()))
        };
        let read = async {
            let mark = key(KEYED_TOMBSTONES.0, KEYED_TOMBSTONES.1);
            if let Some(at) = until(self.get_item(OP, &self.table, mark.clone()).await?) {
                return Ok(at);
            }
            let at =
                crate::domain::clock::now_millis() + crate::domain::note::TOMBSTONE_MS + FINISHING;
            if self.put_keyed_tombstones_until(at, true).await? {
                return Ok(at);
            }
            // Another container recorded it first: its time is the one.
            until(self.get_item(OP, &self.table, mark).await?).ok_or_else(|| malformed(OP, "until"))
        };
        self.keyed_tombstones
            .get_or_try_init(|| read)
            .await
            .copied()
    }

    /// Whether an unexpired tombstone of this note is kept under its own `DELETED#` key: looked
    /// for only while such tombstones may count.
    pub(super) async fn keyed_tombstone_counts(
        &self,
        operation: &'static str,
        username: &str,
        note_id: &NoteId,
    ) -> Result<bool, StoreError> {
        let now = crate::domain::clock::now_millis();
        if self.keyed_tombstones_until().await? < now {
            return Ok(false);
        }
        let found = self
            .get_item(
                operation,
                &self.table,
                keyed_tombstone_key(username, note_id),
            )
            .await?;
        let expires = found
            .as_ref()
            .and_then(|i| i.get("ttl")?.as_n().ok()?.parse::<i64>().ok());
        Ok(match (found, expires) {
            (None, _) => false,
            (Some(_), Some(ttl)) => ttl * 1000 >= now,
            (Some(_), None) => true,
        })
    }

    /// Marks the unsharded feed partition emptied for good: readers stop querying it. For a table
    /// whose legacy partition holds no note — after `migrate public-feed`, or a new one.
    pub async fn mark_legacy_feed_emptied(&self) -> Result<(), StoreError> {
        const OP: &str = "marking the unsharded public feed emptied";
        let mut item = key(LEGACY_EMPTIED.0, LEGACY_EMPTIED.1);
        item.insert(
            "emptiedAt".into(),
            AttributeValue::N(crate::domain::clock::now_millis().to_string()),
        );
        self.client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error(OP, e))?;
        Ok(())
    }

    /// Whether the unsharded feed partition is marked emptied: known for good once seen, looked
    /// up at most every [`LOOK_AGAIN`] until then. A failed look is no mark (the partition is
    /// read, which is always correct) and is said in the log.
    pub(super) async fn legacy_emptied(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.legacy.emptied.load(Ordering::Relaxed) {
            return true;
        }
        {
            let mut looked = self.legacy.looked.lock().unwrap_or_else(|p| p.into_inner());
            if looked.is_some_and(|at| at.elapsed() < LOOK_AGAIN) {
                return false;
            }
            *looked = Some(std::time::Instant::now());
        }
        let found = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(LEGACY_EMPTIED.0, LEGACY_EMPTIED.1)))
            .projection_expression("pk")
            .send()
            .await;
        match found {
            Ok(out) if out.item.is_some() => {
                self.legacy.emptied.store(true, Ordering::Relaxed);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %store_error("looking for the unsharded feed's mark", e), "reading the unsharded feed partition");
                false
            }
        }
    }
}
