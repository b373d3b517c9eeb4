//! The public feed in the embedded store: its shards' keys, a page merged from every partition in
//! one snapshot, and the migration out of the unsharded partition — as the DynamoDB adapter does.

use redb::{ReadableDatabase, ReadableTable};

use super::{During, EmbeddedStore, NOTES, PUBLIC, StoredNote, from_json, to_json, user_note_key};
use crate::domain::cursor::Page;
use crate::domain::feed::{FeedRequest, Fetch, Fetched, Partition, ShardCount, shard_of};
use crate::domain::note::Note;
use crate::ports::{Migrated, StoreError};

/// A feed copy's key in [`PUBLIC`]: `{pk}|{sort key}` as DynamoDB's `pk`/`sk`, except the
/// unsharded partition, whose keys are the bare sort keys the store used before shards.
pub(super) fn public_key(partition: Partition, sort_key: &str) -> String {
    match partition {
        Partition::Legacy => sort_key.to_owned(),
        Partition::Shard(_) => format!("{}|{sort_key}", partition.pk()),
    }
}

/// The keys of a partition's notes older than `before` (all of them without it), as a range.
fn partition_range(partition: Partition, before: Option<&str>) -> (String, String) {
    (
        public_key(partition, "NOTE#"),
        public_key(partition, before.unwrap_or("NOTE#\u{10FFFF}")),
    )
}

impl EmbeddedStore {
    /// Stores a public note the way the store did before the feed had shards (tests of the
    /// migration and of reading both layouts).
    #[doc(hidden)]
    pub async fn save_unsharded(&self, note: &Note, owner_copy: bool) -> Result<(), StoreError> {
        const OP: &str = "saving a note unsharded";
        let note = note.clone();
        self.write(OP, move |txn| {
            let sort_key = note.note_id.sort_key();
            let stored = to_json(&StoredNote {
                note: note.clone(),
                notified: true,
                lease_until: 0,
                feed_shard: None,
            });
            if owner_copy {
                let mut notes = txn.open_table(NOTES).during(OP)?;
                let key = user_note_key(&note.username, &sort_key);
                notes.insert(key.as_str(), stored.as_slice()).during(OP)?;
            }
            let mut public = txn.open_table(PUBLIC).during(OP)?;
            public
                .insert(sort_key.as_str(), stored.as_slice())
                .during(OP)?;
            Ok(())
        })
        .await
    }

    /// Where each public note's feed copy is, by partition key: what a test of sharding looks at.
    #[doc(hidden)]
    pub async fn public_partitions(&self) -> Result<Vec<(String, String)>, StoreError> {
        const OP: &str = "listing the feed's partitions";
        self.reading(OP, |db| {
            let txn = db.begin_read().during(OP)?;
            let table = txn.open_table(PUBLIC).during(OP)?;
            let mut out = Vec::new();
            for entry in table.iter().during(OP)? {
                let (k, v) = entry.during(OP)?;
                let stored: StoredNote = from_json(OP, v.value())?;
                let pk = match k.value().split_once('|') {
                    Some((pk, _)) => pk.to_owned(),
                    None => Partition::Legacy.pk(),
                };
                out.push((pk, stored.note.note_id.as_str().to_owned()));
            }
            Ok(out)
        })
        .await
    }

    /// What every partition of a page yields, merged lazily: the partitions are walked newest
    /// first side by side, and only the notes the page needs are decoded — the `limit` newest of
    /// them all, then each partition's next one (so the merge knows where each stands) — instead
    /// of `limit` from every shard.
    fn read_partitions(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        operation: &'static str,
        fetches: &[Fetch],
    ) -> Result<Vec<Fetched>, StoreError> {
        let bounds: Vec<(String, String)> = fetches
            .iter()
            .map(|f| partition_range(f.partition, f.before.as_deref()))
            .collect();
        let mut walks = Vec::with_capacity(fetches.len());
        for (lower, upper) in &bounds {
            walks.push(
                table
                    .range(lower.as_str()..upper.as_str())
                    .during(operation)?
                    .rev()
                    .peekable(),
            );
        }
        // The sort key in a table key: after the partition's `|`, or all of it (unsharded).
        let sort_key = |key: &str| key.rsplit_once('|').map_or(key, |(_, sk)| sk).to_owned();
        let decode = |entry: Result<
            (redb::AccessGuard<'_, &str>, redb::AccessGuard<'_, &[u8]>),
            redb::StorageError,
        >| {
            let (_, v) = entry.during(operation)?;
            Ok::<_, StoreError>(from_json::<StoredNote>(operation, v.value())?.note)
        };
        let mut out = vec![Fetched::default(); fetches.len()];
        let wanted = fetches.first().map_or(0, |f| f.limit);
        for _ in 0..wanted {
            let mut newest: Option<(usize, String)> = None;
            for (i, walk) in walks.iter_mut().enumerate() {
                let head = match walk.peek() {
                    None => continue,
                    Some(Ok((k, _))) => sort_key(k.value()),
                    // Surface the storage error by taking it.
                    Some(Err(_)) => return Err(decode(walk.next().expect("peeked")).unwrap_err()),
                };
                if newest.as_ref().is_none_or(|(_, sk)| head > *sk) {
                    newest = Some((i, head));
                }
            }
            let Some((i, _)) = newest else { break };
            let entry = walks[i].next().expect("peeked");
            out[i].notes.push(decode(entry)?);
        }
        for (i, walk) in walks.iter_mut().enumerate() {
            if let Some(entry) = walk.next() {
                out[i].notes.push(decode(entry)?);
                out[i].more = walk.peek().is_some();
            }
        }
        Ok(out)
    }

    /// Moves up to `max` feed copies out of `source` into their shard, making or updating each
    /// owner's copy; whether the partition still holds notes.
    fn migrate_partition(
        txn: &redb::WriteTransaction,
        shards: ShardCount,
        source: Partition,
        max: usize,
        done: &mut Migrated,
    ) -> Result<bool, StoreError> {
        const OP: &str = "migrating the public feed";
        let mut public = txn.open_table(PUBLIC).during(OP)?;
        let mut notes = txn.open_table(NOTES).during(OP)?;
        let (lower, upper) = partition_range(source, None);
        let batch: Vec<(String, Vec<u8>)> = public
            .range(lower.as_str()..upper.as_str())
            .during(OP)?
            .take(max + 1)
            .map(|e| {
                let (k, v) = e.during(OP)?;
                Ok((k.value().to_owned(), v.value().to_vec()))
            })
            .collect::<Result<_, StoreError>>()?;
        let remaining = batch.len() > max;
        for (key, bytes) in batch.into_iter().take(max) {
            let mut stored: StoredNote = from_json(OP, &bytes)?;
            let sort_key = stored.note.note_id.sort_key();
            let shard = shard_of(&stored.note.note_id, shards);
            let owner_key = user_note_key(&stored.note.username, &sort_key);
            let owner = notes
                .get(owner_key.as_str())
                .during(OP)?
                .map(|v| v.value().to_vec());
            let mut owner: StoredNote = match owner {
                Some(b) => from_json(OP, &b)?,
                None => {
                    done.owner_copies_made += 1;
                    StoredNote {
                        note: stored.note.clone(),
                        notified: true,
                        lease_until: 0,
                        feed_shard: None,
                    }
                }
            };
            owner.feed_shard = Some(shard);
            stored.feed_shard = Some(shard);
            notes
                .insert(owner_key.as_str(), to_json(&owner).as_slice())
                .during(OP)?;
            public.remove(key.as_str()).during(OP)?;
            public
                .insert(
                    public_key(Partition::Shard(shard), &sort_key).as_str(),
                    to_json(&stored).as_slice(),
                )
                .during(OP)?;
            done.moved += 1;
        }
        Ok(remaining)
    }

    pub(super) async fn feed_page(&self, page: &FeedRequest) -> Result<Page<Note>, StoreError> {
        const OP: &str = "listing public notes";
        let (page, shards) = (page.clone(), self.shards);
        self.reading(OP, move |db| {
            // Every partition from one snapshot.
            let txn = db.begin_read().during(OP)?;
            let table = txn.open_table(PUBLIC).during(OP)?;
            let fetches = page.fetches(shards);
            let got = Self::read_partitions(&table, OP, &fetches)?;
            let fetched = fetches.into_iter().zip(got).collect();
            Ok(page.merge(shards, fetched))
        })
        .await
    }

    pub(super) async fn migrate_feed(&self, max: usize) -> Result<Migrated, StoreError> {
        let shards = self.shards;
        self.write("migrating the public feed", move |txn| {
            let mut done = Migrated::default();
            for source in shards.migration_sources() {
                let budget = max.saturating_sub(done.moved);
                if Self::migrate_partition(txn, shards, source, budget, &mut done)? {
                    done.remaining = true;
                    break;
                }
            }
            Ok(done)
        })
        .await
    }
}
