//! Users, notes and connections in one redb database (a file under `--data-dir`, or in memory).
//! The layout mirrors the DynamoDB items: the same keys, ordered the same way, so paging, ownership
//! by key and the public index behave alike.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

mod connections;
mod feed;

use feed::public_key;

use super::group::{Durability, Writer};
use super::reopen::{Reopening, store_error};
use crate::domain::cursor::{Page, PageRequest};
use crate::domain::feed::{FeedRequest, Partition, ShardCount, shard_of};
use crate::domain::note::{Note, NoteId};
use crate::domain::user::{UserRecord, username_key};
use crate::ports::{Created, Migrated, NoteStore, Saved, StoreError, UserStore};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// `{username}\0{NOTE#createdAt#noteId}` → note
const NOTES: TableDefinition<&str, &[u8]> = TableDefinition::new("notes");
/// `PUBLIC#NOTES#{shard}|{NOTE#createdAt#noteId}` → note (public notes only; see
/// [`public_key`]), and `{NOTE#createdAt#noteId}` for notes stored before the feed had shards.
const PUBLIC: TableDefinition<&str, &[u8]> = TableDefinition::new("public_notes");
/// `{username}\0{noteId}` → epoch ms until which a deleted note may not be stored again.
const TOMBSTONES: TableDefinition<&str, &[u8]> = TableDefinition::new("tombstones");
/// `{connectionId}` → connection: the registry's index of every connection.
const CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
/// `{username}\0{connectionId}` → connection
const USER_CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("user_connections");

#[derive(Serialize, Deserialize)]
struct StoredNote {
    #[serde(flatten)]
    note: Note,
    #[serde(default)]
    notified: bool,
    /// Epoch ms until which a delivery holds the right to announce this note.
    #[serde(default)]
    lease_until: i64,
    /// The feed shard a public note's copy is in; none: the unsharded partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feed_shard: Option<u32>,
}

/// The embedded store. Cheap to clone; every clone shares the database, which reopens itself after
/// an I/O error (a full disk) once the disk allows.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Reopening>,
    /// The database's one writer thread: every write goes through it, grouped with its neighbours.
    writer: Arc<Writer>,
    shards: ShardCount,
    /// How `save_if_absent` commits: durably, unless [`EmbeddedStore::with_deferred_saves`].
    saves: Durability,
}

/// `.during(operation)`: a failed embedded-database call as the store's error, its cause kept.
trait During<T> {
    fn during(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> During<T> for Result<T, E> {
    fn during(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| store_error(operation, e))
    }
}

fn user_note_key(username: &str, sort_key: &str) -> String {
    format!("{username}\0{sort_key}")
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("stored values serialise")
}

fn from_json<T: for<'de> Deserialize<'de>>(
    operation: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::new(operation, e))
}

impl EmbeddedStore {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        Self::open_with("embedded store", move || Database::create(&path))
    }

    /// Opens with `open`, and reopens with it after an I/O error.
    pub fn open_with(
        name: &str,
        open: impl Fn() -> Result<Database, redb::DatabaseError> + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let db = Reopening::new(name, open)
            .map_err(|e| StoreError::new("opening the embedded database", e))?;
        Self::init(db)
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> Self {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory database opens");
        Self::init(Reopening::fixed("in-memory store", db))
            .expect("an in-memory database initialises")
    }

    fn init(db: Reopening) -> Result<Self, StoreError> {
        const OP: &str = "creating the embedded tables";
        let handle = db.get().during(OP)?;
        let txn = handle.begin_write().during(OP)?;
        for table in [
            USERS,
            NOTES,
            PUBLIC,
            CONNECTIONS,
            USER_CONNECTIONS,
            TOMBSTONES,
        ] {
            txn.open_table(table).during(OP)?;
        }
        txn.commit().during(OP)?;
        drop(handle);
        let db = Arc::new(db);
        Ok(Self {
            writer: Arc::new(Writer::start("embedded store", db.clone())),
            db,
            shards: ShardCount::default(),
            saves: Durability::Durable,
        })
    }

    /// The public feed's shard count (8 unless set).
    pub fn with_feed_shards(mut self, shards: ShardCount) -> Self {
        self.shards = shards;
        self
    }

    /// Saves from the queue (`save_if_absent`) commit without waiting for the disk: they are seen by
    /// every read at once and reach the disk with the next durable commit — at the latest the next
    /// [`checkpoint`](Self::checkpoint). For a queue consumer that deletes a message only after a
    /// checkpoint that followed its save: a crash before it loses the save but not the message,
    /// which is delivered again and saved again. Every other write stays durable (an HTTP answer
    /// promises what it reports).
    pub fn with_deferred_saves(mut self) -> Self {
        self.saves = Durability::Lazy;
        self
    }

    /// Puts every write committed so far on disk: one durable commit, shared with the writes sent
    /// beside it.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.write("making deferred saves durable", |_| Ok(()))
            .await
    }

    /// Runs the read `f` on the calling task. A read takes microseconds from redb's cache: handing it
    /// to another thread and back would cost more than the read.
    async fn reading<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Database) -> Result<T, StoreError>,
    {
        let db = self.db.get().during(operation)?;
        let out = f(&db);
        if let Err(e) = &out {
            self.db.failed(&db, e);
        }
        out
    }

    /// A durable write, committed with the writes sent beside it (see [`Writer`]).
    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit(operation, Durability::Durable, f).await
    }

    /// A write that may reach the disk with the next durable commit instead of now, committed with the
    /// writes sent beside it: for facts whose loss in a crash only repeats work (a `notified` flag
    /// means at most one extra `note-saved`).
    async fn write_lazily<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit(operation, Durability::Lazy, f).await
    }

    /// Reads the note at `key` in `txn`, lets `change` edit it (or decline by returning false) and
    /// writes it back. The edited note, or `None` when there is none or `change` declined.
    fn modify_note(
        txn: &redb::WriteTransaction,
        operation: &'static str,
        key: &str,
        change: impl FnOnce(&mut StoredNote) -> bool,
    ) -> Result<Option<StoredNote>, StoreError> {
        let mut notes = txn.open_table(NOTES).during(operation)?;
        let current = notes
            .get(key)
            .during(operation)?
            .map(|v| v.value().to_vec());
        let Some(bytes) = current else {
            return Ok(None);
        };
        let mut stored: StoredNote = from_json(operation, &bytes)?;
        if !change(&mut stored) {
            return Ok(None);
        }
        notes
            .insert(key, to_json(&stored).as_slice())
            .during(operation)?;
        Ok(Some(stored))
    }

    fn read_note(
        db: &Database,
        username: &str,
        note_id: &NoteId,
    ) -> Result<Option<StoredNote>, StoreError> {
        const OP: &str = "reading a note";
        let txn = db.begin_read().during(OP)?;
        let table = txn.open_table(NOTES).during(OP)?;
        let key = user_note_key(username, &note_id.sort_key());
        match table.get(key.as_str()).during(OP)? {
            Some(v) => Ok(Some(from_json(OP, v.value())?)),
            None => Ok(None),
        }
    }

    fn list(
        db: &Database,
        operation: &'static str,
        prefix: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        let txn = db.begin_read().during(operation)?;
        let table = txn.open_table(NOTES).during(operation)?;
        let lower = prefix.to_owned();
        // Exclusive upper bound: the cursor's key, or the end of this owner's range.
        let upper = match &page.after {
            Some(after) => format!("{prefix}{after}"),
            None => format!("{prefix}\u{10FFFF}"),
        };
        let mut items = Vec::new();
        let mut more = false;
        for entry in table
            .range(lower.as_str()..upper.as_str())
            .during(operation)?
            .rev()
        {
            let (_, v) = entry.during(operation)?;
            if items.len() == page.limit {
                more = true;
                break;
            }
            let stored: StoredNote = from_json(operation, v.value())?;
            items.push(stored.note);
        }
        let next = if more {
            items.last().map(|n| n.note_id.sort_key())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[async_trait]
impl UserStore for EmbeddedStore {
    async fn create_user(&self, user: &UserRecord) -> Result<Created, StoreError> {
        const OP: &str = "creating a user";
        let user = user.clone();
        self.write(OP, move |txn| {
            let mut t = txn.open_table(USERS).during(OP)?;
            // Keyed by the normalised name, as DynamoDB's profile items are.
            let key = username_key(&user.username);
            if t.get(key.as_str()).during(OP)?.is_some() {
                return Ok(Created::AlreadyExists);
            }
            t.insert(key.as_str(), to_json(&user).as_slice())
                .during(OP)?;
            Ok(Created::Created)
        })
        .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        const OP: &str = "reading a user";
        let key = username_key(username);
        self.reading(OP, move |db| {
            let txn = db.begin_read().during(OP)?;
            let t = txn.open_table(USERS).during(OP)?;
            match t.get(key.as_str()).during(OP)? {
                Some(v) => Ok(Some(from_json(OP, v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }
}

#[async_trait]
impl NoteStore for EmbeddedStore {
    async fn save_if_absent(&self, note: &Note, lease_until_ms: i64) -> Result<Saved, StoreError> {
        const OP: &str = "saving a note";
        let note = note.clone();
        let shards = self.shards;
        self.writer
            .submit(OP, self.saves, move |txn| {
                let sort_key = note.note_id.sort_key();
                let key = user_note_key(&note.username, &sort_key);
                let mut tombstones = txn.open_table(TOMBSTONES).during(OP)?;
                let tomb_key = user_note_key(&note.username, note.note_id.as_str());
                let until = tombstones
                    .get(tomb_key.as_str())
                    .during(OP)?
                    .map(|v| from_json::<i64>(OP, v.value()))
                    .transpose()?;
                match until {
                    Some(until) if until > crate::domain::clock::now_millis() => {
                        return Ok(Saved::Deleted);
                    }
                    // Expired: gone, as DynamoDB's TTL removes it.
                    Some(_) => {
                        tombstones.remove(tomb_key.as_str()).during(OP)?;
                    }
                    None => {}
                }
                let mut notes = txn.open_table(NOTES).during(OP)?;
                if notes.get(key.as_str()).during(OP)?.is_some() {
                    return Ok(Saved::AlreadyExists);
                }
                let shard = note.is_public.then(|| shard_of(&note.note_id, shards));
                let stored = to_json(&StoredNote {
                    note: note.clone(),
                    notified: false,
                    lease_until: lease_until_ms,
                    feed_shard: shard,
                });
                notes.insert(key.as_str(), stored.as_slice()).during(OP)?;
                if let Some(shard) = shard {
                    let mut public = txn.open_table(PUBLIC).during(OP)?;
                    public
                        .insert(
                            public_key(Partition::Shard(shard), &sort_key).as_str(),
                            stored.as_slice(),
                        )
                        .during(OP)?;
                }
                Ok(Saved::Created)
            })
            .await
    }

    async fn claim_announcement(
        &self,
        username: &str,
        note_id: &NoteId,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "claiming a note's announcement";
        let key = user_note_key(username, &note_id.sort_key());
        self.write(OP, move |txn| {
            let claimed = Self::modify_note(txn, OP, &key, |stored| {
                let free = !stored.notified && stored.lease_until < now_ms;
                if free {
                    stored.lease_until = lease_until_ms;
                }
                free
            })?;
            Ok(claimed.map(|s| s.note))
        })
        .await
    }

    async fn mark_notified(&self, username: &str, note_id: &NoteId) -> Result<(), StoreError> {
        const OP: &str = "marking a note notified";
        let key = user_note_key(username, &note_id.sort_key());
        self.write_lazily(OP, move |txn| {
            Self::modify_note(txn, OP, &key, |stored| {
                stored.notified = true;
                true
            })?;
            Ok(())
        })
        .await
    }

    async fn get_note(&self, username: &str, note_id: &NoteId) -> Result<Option<Note>, StoreError> {
        let (username, note_id) = (username.to_owned(), note_id.clone());
        self.reading("reading a note", move |db| {
            Ok(Self::read_note(db, &username, &note_id)?.map(|s| s.note))
        })
        .await
    }

    async fn update_content(
        &self,
        username: &str,
        note_id: &NoteId,
        content: &str,
        updated_at: &str,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "updating a note";
        let sort_key = note_id.sort_key();
        let key = user_note_key(username, &sort_key);
        let (content, updated_at) = (content.to_owned(), updated_at.to_owned());
        self.write(OP, move |txn| {
            let Some(stored) = Self::modify_note(txn, OP, &key, |stored| {
                stored.note.content = content.clone();
                stored.note.updated_at = Some(updated_at.clone());
                true
            })?
            else {
                return Ok(None);
            };
            if stored.note.is_public {
                let mut public = txn.open_table(PUBLIC).during(OP)?;
                let at = public_key(Partition::recorded(stored.feed_shard), &sort_key);
                public
                    .insert(at.as_str(), to_json(&stored).as_slice())
                    .during(OP)?;
            }
            Ok(Some(stored.note))
        })
        .await
    }

    async fn delete_note(
        &self,
        username: &str,
        note_id: &NoteId,
        tombstone_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        const OP: &str = "deleting a note";
        let sort_key = note_id.sort_key();
        let key = user_note_key(username, &sort_key);
        let tomb_key = user_note_key(username, note_id.as_str());
        self.write(OP, move |txn| {
            let mut notes = txn.open_table(NOTES).during(OP)?;
            let removed = notes
                .remove(key.as_str())
                .during(OP)?
                .map(|v| v.value().to_vec());
            let Some(bytes) = removed else {
                return Ok(None);
            };
            let stored: StoredNote = from_json(OP, &bytes)?;
            if stored.note.is_public {
                let mut public = txn.open_table(PUBLIC).during(OP)?;
                let at = public_key(Partition::recorded(stored.feed_shard), &sort_key);
                public.remove(at.as_str()).during(OP)?;
            }
            let mut tombstones = txn.open_table(TOMBSTONES).during(OP)?;
            tombstones
                .insert(tomb_key.as_str(), to_json(&tombstone_until_ms).as_slice())
                .during(OP)?;
            Ok(Some(stored.note))
        })
        .await
    }

    async fn list_user_notes(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        let prefix = format!("{username}\0");
        let page = page.clone();
        self.reading("listing notes", move |db| {
            Self::list(db, "listing notes", &prefix, &page)
        })
        .await
    }

    async fn list_public_notes(&self, page: &FeedRequest) -> Result<Page<Note>, StoreError> {
        self.feed_page(page).await
    }

    async fn migrate_public_feed(&self, max: usize) -> Result<Migrated, StoreError> {
        self.migrate_feed(max).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::embedded::reopen::{RETRY, counting_opener, flaky_opener};

    fn user(name: &str) -> UserRecord {
        UserRecord {
            username: name.into(),
            password_hash: "$argon2id$x".into(),
            created_at: "2026-12-01T00:00:00.000Z".into(),
        }
    }

    /// What `notesctl dev` met on a 2 MB tmpfs: once the disk was full every write failed, and kept
    /// failing after space came back. Now writes answer "retry" (503) while it is full, and work
    /// again by themselves once it is not; what was written before is all there.
    #[tokio::test]
    async fn a_full_disk_is_survived_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(AtomicBool::new(false));
        let store = EmbeddedStore::open_with(
            "test store",
            flaky_opener(dir.path().join("store.redb"), full.clone()),
        )
        .unwrap();
        assert_eq!(
            store.create_user(&user("ada")).await.unwrap(),
            Created::Created
        );

        full.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            let err = store.create_user(&user("bob")).await.unwrap_err();
            assert!(
                err.is_throttled(),
                "a full disk is a 503, not a 500: {err:?}"
            );
            tokio::time::sleep(RETRY).await;
        }

        full.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        let created = loop {
            match store.create_user(&user("bob")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    assert!(e.is_throttled(), "{e:?}");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => panic!("still failing 5 s after the disk came back: {e:?}"),
            }
        };
        assert_eq!(created, Created::Created);
        assert!(
            store.get_user("ada").await.unwrap().is_some(),
            "written before: kept"
        );
        assert!(store.get_user("bob").await.unwrap().is_some());
    }

    fn note(username: &str, millis: i64) -> Note {
        let id = NoteId::parse(&format!("{millis}-abcd1234")).unwrap();
        Note {
            created_at: id.created_at(),
            note_id: id,
            username: username.into(),
            content: "c".into(),
            is_public: true,
            status: "saved".into(),
            saved_at: String::new(),
            updated_at: None,
        }
    }

    /// The store as a killed process leaves it: the file's bytes now (what was written to it, synced
    /// or not), opened as a restart opens it.
    async fn after_a_kill(file: &Path, note: &Note) -> Option<Note> {
        let copy = file.with_extension("killed.redb");
        std::fs::copy(file, &copy).unwrap();
        let reopened = EmbeddedStore::open(&copy).unwrap();
        let found = reopened
            .get_note(&note.username, &note.note_id)
            .await
            .unwrap();
        drop(reopened);
        std::fs::remove_file(&copy).unwrap();
        found
    }

    /// `dev`'s save poller defers the saves and checkpoints before it deletes their messages: a
    /// deferred save is read at once but costs no disk sync, a kill before the checkpoint loses it
    /// (its message is still queued), and after the checkpoint it survives one. Other writes stay
    /// durable.
    #[tokio::test]
    async fn deferred_saves_reach_the_disk_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.redb");
        let syncs = Arc::new(AtomicU64::new(0));
        let store = EmbeddedStore::open_with(
            "test store",
            counting_opener(file.clone(), Default::default(), syncs.clone()),
        )
        .unwrap()
        .with_deferred_saves();
        let saved = note("ada", 1_780_000_000_000);

        let before = syncs.load(Ordering::SeqCst);
        assert_eq!(
            store.save_if_absent(&saved, 0).await.unwrap(),
            Saved::Created
        );
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            before,
            "a deferred save does not wait for the disk"
        );
        assert_eq!(
            store
                .get_note("ada", &saved.note_id)
                .await
                .unwrap()
                .map(|n| n.note_id),
            Some(saved.note_id.clone()),
            "every read sees it at once"
        );
        assert_eq!(
            store
                .list_public_notes(&FeedRequest::new(None, 10))
                .await
                .unwrap()
                .items
                .len(),
            1,
            "the public feed too"
        );
        assert!(
            after_a_kill(&file, &saved).await.is_none(),
            "not yet on disk"
        );

        store.checkpoint().await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), before + 1, "one sync");
        assert!(
            after_a_kill(&file, &saved).await.is_some(),
            "on disk after the checkpoint"
        );

        let before = syncs.load(Ordering::SeqCst);
        store.create_user(&user("ada")).await.unwrap();
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            before + 1,
            "a sign-up is durable when it answers"
        );
        let durable = EmbeddedStore::open_with(
            "test store",
            counting_opener(
                dir.path().join("other.redb"),
                Default::default(),
                syncs.clone(),
            ),
        )
        .unwrap();
        let before = syncs.load(Ordering::SeqCst);
        durable.save_if_absent(&saved, 0).await.unwrap();
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            before + 1,
            "without deferral a save is durable when it answers"
        );
    }
}
