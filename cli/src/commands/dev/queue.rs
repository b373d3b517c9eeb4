//! A durable local queue with SQS semantics: visibility timeout, receive counts, and a dead-letter
//! queue that takes a message once it has been received `max_receives` times without being deleted.
//! Messages live in a redb file, so what was queued survives a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notes_handlers::embedded::group::{Durability, Pending, Writer};
use notes_handlers::embedded::reopen::{Reopening, store_error};
use notes_handlers::ports::StoreError;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead_letters");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub body: String,
    pub sent_at_ms: i64,
    pub receive_count: u32,
    pub visible_at_ms: i64,
    #[serde(default)]
    pub first_received_at_ms: Option<i64>,
    /// SQS message attributes, kept as sent (JSON protocol shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
}

/// The processing queue or its dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Main,
    Dead,
}

impl Which {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Which::Main => MESSAGES,
            Which::Dead => DEAD,
        }
    }
}

/// Counts as `GetQueueAttributes` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// Age in seconds of the oldest message, if any.
    pub oldest_age_seconds: Option<u64>,
}

#[derive(Clone)]
pub struct LocalQueue {
    /// Reopened by itself after an I/O error (a full disk), once the disk allows.
    db: Arc<Reopening>,
    /// The database's one writer thread: sends that arrive together share one commit (one fsync
    /// backs many 202s, each with the same guarantee as alone), and receives and deletes join them.
    writer: Arc<Writer>,
    pub visibility: Duration,
    pub max_receives: u32,
}

pub type QueueResult<T> = Result<T, redb::Error>;

/// A failed write as the queue's error, its whole story in the message.
fn from_store(e: StoreError) -> redb::Error {
    redb::Error::Io(std::io::Error::other(e.chain().to_string()))
}

fn now_ms() -> i64 {
    notes_handlers::domain::clock::now_millis()
}

fn next_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // Sortable by send time; unique within the process; random tail against restarts.
    format!(
        "{:013}-{:08}-{:08x}",
        now_ms(),
        SEQ.fetch_add(1, Ordering::SeqCst) % 100_000_000,
        rand::random::<u32>()
    )
}

impl LocalQueue {
    /// Runs `f` on the database; an I/O error closes it, to be reopened by the next call.
    fn run<T>(&self, f: impl FnOnce(&Database) -> QueueResult<T>) -> QueueResult<T> {
        let db = self.db.get()?;
        let out = f(&db);
        if let Err(e) = &out {
            self.db.failed(&db, e);
        }
        out
    }

    /// Sends `f` to the queue's writer, to run in its next transaction: `.await` the answer, or
    /// `.wait()` for it on a thread that may block.
    fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        durability: Durability,
        f: impl Fn(&WriteTransaction) -> QueueResult<T> + Send + 'static,
    ) -> Pending<T> {
        self.writer.submit(operation, durability, move |txn| {
            f(txn).map_err(|e| store_error(operation, e))
        })
    }
}

/// A stored record as a message. One that no longer parses (damaged, or written by another version)
/// comes back whole, its bytes as the body, so that reading never stops on it and nothing is lost.
fn decode(id: &str, raw: &[u8]) -> Message {
    serde_json::from_slice(raw).unwrap_or_else(|_| Message {
        id: id.to_owned(),
        body: String::from_utf8_lossy(raw).into_owned(),
        sent_at_ms: 0,
        receive_count: 0,
        visible_at_ms: 0,
        first_received_at_ms: None,
        attributes: None,
    })
}

fn encode(msg: &Message) -> Vec<u8> {
    serde_json::to_vec(msg).expect("a message is plain JSON")
}

impl LocalQueue {
    pub fn open(path: &Path, visibility: Duration, max_receives: u32) -> QueueResult<Self> {
        let path_buf = path.to_path_buf();
        Self::open_with(
            move || Database::create(&path_buf),
            visibility,
            max_receives,
        )
    }

    /// Opens with `open`, and reopens with it after an I/O error.
    pub fn open_with(
        open: impl Fn() -> Result<Database, redb::DatabaseError> + Send + Sync + 'static,
        visibility: Duration,
        max_receives: u32,
    ) -> QueueResult<Self> {
        let db = Reopening::new("local queue", open)?;
        let handle = db.get()?;
        let txn = handle.begin_write()?;
        txn.open_table(MESSAGES)?;
        txn.open_table(DEAD)?;
        txn.commit()?;
        drop(handle);
        let db = Arc::new(db);
        let queue = Self {
            writer: Arc::new(Writer::start("local queue", db.clone())),
            db,
            visibility,
            max_receives,
        };
        queue.quarantine_unreadable()?;
        Ok(queue)
    }

    /// Records that no longer parse go to the dead-letter queue as they are (their bytes as the body),
    /// each with a log line, where `redrive-dlq` and an operator can see them; the rest start.
    fn quarantine_unreadable(&self) -> QueueResult<()> {
        self.run(|db| {
        fn unreadable(
            table: &redb::Table<&str, &[u8]>,
        ) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError> {
            let mut bad = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                if serde_json::from_slice::<Message>(v.value()).is_err() {
                    bad.push((k.value().to_owned(), v.value().to_vec()));
                }
            }
            Ok(bad)
        }
        let txn = db.begin_write()?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut dead = txn.open_table(DEAD)?;
            let from_queue = unreadable(&messages)?;
            let in_dlq = unreadable(&dead)?;
            for (id, raw) in from_queue.iter().chain(&in_dlq) {
                messages.remove(id.as_str())?;
                dead.insert(id.as_str(), encode(&decode(id, raw)).as_slice())?;
                tracing::warn!(
                    message_id = %id,
                    bytes = raw.len(),
                    "a stored queue record no longer parses: kept in the dead-letter queue, its bytes as the body"
                );
            }
        }
        txn.commit()?;
        Ok(())
    })
    }

    /// Stores a message durably; its id is returned once the write is on disk.
    pub fn send(&self, body: &str) -> QueueResult<String> {
        self.send_to(Which::Main, body, None, Duration::ZERO)
    }

    /// Stores a message durably, visible after `delay` (SQS's `DelaySeconds`). Sends that arrive
    /// while another commits share the next commit; each returns only once its own record is on disk.
    pub fn send_to(
        &self,
        which: Which,
        body: &str,
        attributes: Option<serde_json::Value>,
        delay: Duration,
    ) -> QueueResult<String> {
        self.sending(which, body, attributes, delay)
            .wait()
            .map_err(from_store)
    }

    /// [`send_to`](Self::send_to) without blocking: the id once the record is on disk.
    pub fn sending(
        &self,
        which: Which,
        body: &str,
        attributes: Option<serde_json::Value>,
        delay: Duration,
    ) -> Pending<String> {
        let now = now_ms();
        let msg = Message {
            id: next_id(),
            body: body.to_owned(),
            sent_at_ms: now,
            receive_count: 0,
            visible_at_ms: now + delay.as_millis() as i64,
            first_received_at_ms: None,
            attributes,
        };
        let record = encode(&msg);
        self.write("sending a message", Durability::Durable, move |txn| {
            txn.open_table(which.table())?
                .insert(msg.id.as_str(), record.as_slice())?;
            Ok(msg.id.clone())
        })
    }

    /// Takes up to `max` visible messages, oldest first, hiding each for the visibility timeout and
    /// counting the receive. A message already received `max_receives` times moves to the DLQ instead.
    pub fn receive(&self, max: usize) -> QueueResult<Vec<Message>> {
        self.receive_from(Which::Main, max, self.visibility)
    }

    /// Deletes the processing queue's messages `done` and receives the next up to `max`, in one
    /// write: what the save poller does between batches, one commit instead of two. Receive counts,
    /// visibility and deletes need not reach the disk before the next durable write: lost in a crash,
    /// they only make a message visible again — at-least-once delivery, which save's idempotency
    /// absorbs. Only a send (which backs an HTTP 202) must be durable at once.
    pub fn delete_and_receive(&self, done: Vec<String>, max: usize) -> Pending<Vec<Message>> {
        self.receive_in(Which::Main, done, max, self.visibility)
    }

    /// Receives from either queue; only the processing queue redrives to the DLQ.
    pub fn receive_from(
        &self,
        which: Which,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<Message>> {
        self.receive_in(which, Vec::new(), max, visibility)
            .wait()
            .map_err(from_store)
    }

    /// Deletes `done` from `which`, then receives.
    fn receive_in(
        &self,
        which: Which,
        done: Vec<String>,
        max: usize,
        visibility: Duration,
    ) -> Pending<Vec<Message>> {
        let max_receives = self.max_receives;
        self.write("receiving messages", Durability::Lazy, move |txn| {
            let now = now_ms();
            let mut out = Vec::new();
            let mut messages = txn.open_table(which.table())?;
            for id in &done {
                messages.remove(id.as_str())?;
            }
            // Only the processing queue has a dead-letter queue to move to.
            let mut dead = match which {
                Which::Main => Some(txn.open_table(DEAD)?),
                Which::Dead => None,
            };
            let mut due = Vec::new();
            for entry in messages.iter()? {
                let (k, v) = entry?;
                let msg = decode(k.value(), v.value());
                if msg.visible_at_ms <= now {
                    due.push(msg);
                    if due.len() >= max * 4 + 16 {
                        break;
                    }
                }
            }
            for mut msg in due {
                if out.len() >= max {
                    break;
                }
                if let Some(dead) = dead.as_mut().filter(|_| msg.receive_count >= max_receives) {
                    messages.remove(msg.id.as_str())?;
                    msg.visible_at_ms = now;
                    dead.insert(msg.id.as_str(), encode(&msg).as_slice())?;
                    tracing::warn!(message_id = %msg.id, receives = msg.receive_count, "message moved to the dead-letter queue");
                    continue;
                }
                msg.receive_count += 1;
                msg.visible_at_ms = now + visibility.as_millis() as i64;
                msg.first_received_at_ms.get_or_insert(now);
                messages.insert(msg.id.as_str(), encode(&msg).as_slice())?;
                out.push(msg);
            }
            Ok(out)
        })
    }

    /// Deletes processed messages; the deletes need not reach the disk before the next durable
    /// write (see [`delete_and_receive`](Self::delete_and_receive)).
    pub fn delete(&self, ids: &[String]) -> QueueResult<()> {
        self.deleting(Which::Main, ids, Durability::Lazy)
            .wait()
            .map_err(from_store)
    }

    /// Deletes for a client that expects them to stick (a manual redrive deletes from the DLQ only
    /// after its copy is sent; losing that delete in a crash would duplicate the message).
    pub fn delete_durably(&self, which: Which, ids: &[String]) -> QueueResult<()> {
        self.deleting(which, ids, Durability::Durable)
            .wait()
            .map_err(from_store)
    }

    /// Deletes `ids` from `which` without blocking.
    pub fn deleting(&self, which: Which, ids: &[String], durability: Durability) -> Pending<()> {
        let ids = ids.to_vec();
        self.write("deleting messages", durability, move |txn| {
            let mut messages = txn.open_table(which.table())?;
            for id in &ids {
                messages.remove(id.as_str())?;
            }
            Ok(())
        })
    }

    fn depth_of(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> QueueResult<Depth> {
        self.run(|db| {
            let now = now_ms();
            let txn = db.begin_read()?;
            let t = txn.open_table(table)?;
            let mut d = Depth::default();
            let mut oldest: Option<i64> = None;
            for entry in t.iter()? {
                let (k, v) = entry?;
                let msg = decode(k.value(), v.value());
                if msg.visible_at_ms <= now {
                    d.visible += 1;
                } else if msg.receive_count == 0 {
                    // Never received and not yet visible: sent with a delay.
                    d.delayed += 1;
                } else {
                    d.in_flight += 1;
                }
                oldest = Some(oldest.map_or(msg.sent_at_ms, |o| o.min(msg.sent_at_ms)));
            }
            d.oldest_age_seconds = oldest.map(|o| ((now - o).max(0) / 1000) as u64);
            Ok(d)
        })
    }

    pub fn depth(&self) -> QueueResult<Depth> {
        self.depth_of(MESSAGES)
    }

    pub fn dlq_depth(&self) -> QueueResult<Depth> {
        self.depth_of(DEAD)
    }

    pub fn depth_of_queue(&self, which: Which) -> QueueResult<Depth> {
        self.depth_of(which.table())
    }

    pub fn queued_count(&self) -> QueueResult<u64> {
        self.run(|db| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(MESSAGES)?.len()?)
        })
    }

    /// Dead letters, oldest first (at most `max`).
    pub fn peek_dead(&self, max: usize) -> QueueResult<Vec<Message>> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(DEAD)?;
            let mut out = Vec::new();
            for entry in t.iter()?.take(max) {
                let (k, v) = entry?;
                out.push(decode(k.value(), v.value()));
            }
            Ok(out)
        })
    }

    /// Moves up to `max` dead letters back to the queue as new messages (fresh receive count), in
    /// one transaction: none is lost or duplicated.
    pub fn redrive(&self, max: usize) -> QueueResult<usize> {
        self.write("redriving dead letters", Durability::Durable, move |txn| {
            let now = now_ms();
            let mut dead = txn.open_table(DEAD)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let batch: Vec<Message> = dead
                .iter()?
                .take(max)
                .map(|e| e.map(|(k, v)| decode(k.value(), v.value())))
                .collect::<Result<_, _>>()?;
            let moved = batch.len();
            for old in batch {
                dead.remove(old.id.as_str())?;
                let msg = Message {
                    id: next_id(),
                    body: old.body,
                    sent_at_ms: now,
                    receive_count: 0,
                    visible_at_ms: now,
                    first_received_at_ms: None,
                    attributes: old.attributes,
                };
                messages.insert(msg.id.as_str(), encode(&msg).as_slice())?;
            }
            Ok(moved)
        })
        .wait()
        .map_err(from_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(vis_ms: u64) -> (tempfile::TempDir, LocalQueue) {
        let dir = tempfile::tempdir().unwrap();
        let q =
            LocalQueue::open(&dir.path().join("q.redb"), Duration::from_millis(vis_ms), 3).unwrap();
        (dir, q)
    }

    #[test]
    fn visibility_receive_counts_and_the_dlq() {
        let (_d, q) = queue(30);
        q.send("a").unwrap();
        let got = q.receive(10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, 1);
        assert!(q.receive(10).unwrap().is_empty(), "hidden while in flight");
        assert_eq!(
            q.depth().unwrap(),
            Depth {
                visible: 0,
                in_flight: 1,
                delayed: 0,
                oldest_age_seconds: Some(0)
            }
        );
        for expected in [2, 3] {
            std::thread::sleep(Duration::from_millis(40));
            assert_eq!(q.receive(10).unwrap()[0].receive_count, expected);
        }
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            q.receive(10).unwrap().is_empty(),
            "the fourth receive moves it to the DLQ"
        );
        assert_eq!(q.dlq_depth().unwrap().visible, 1);
        assert_eq!(q.queued_count().unwrap(), 0);
        assert_eq!(q.peek_dead(5).unwrap()[0].body, "a");
        assert_eq!(q.redrive(10).unwrap(), 1);
        let again = q.receive(10).unwrap();
        assert_eq!((again[0].body.as_str(), again[0].receive_count), ("a", 1));
        q.delete(&[again[0].id.clone()]).unwrap();
        assert_eq!(q.depth().unwrap().visible + q.depth().unwrap().in_flight, 0);
    }

    /// The poller's one write between batches: the processed messages are gone, the next ones taken,
    /// and a message not reported done stays in flight (redelivered after the timeout).
    #[test]
    fn delete_and_receive_settles_the_last_batch_and_takes_the_next() {
        let (_d, q) = queue(60_000);
        for body in ["a", "b"] {
            q.send(body).unwrap();
        }
        let first = q.delete_and_receive(vec![], 1).wait().unwrap();
        assert_eq!(first[0].body, "a");
        let second = q
            .delete_and_receive(vec![first[0].id.clone()], 10)
            .wait()
            .unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].body, "b");
        let d = q.depth().unwrap();
        assert_eq!((d.visible, d.in_flight), (0, 1), "a deleted, b in flight");
        assert!(q.delete_and_receive(vec![], 10).wait().unwrap().is_empty());
        assert_eq!(q.depth().unwrap().in_flight, 1, "b not reported done stays");
        q.delete_and_receive(vec![second[0].id.clone()], 10)
            .wait()
            .unwrap();
        assert_eq!(q.queued_count().unwrap(), 0);
    }

    #[test]
    fn a_record_that_no_longer_parses_goes_to_the_dlq_instead_of_stopping_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let q = LocalQueue::open(&path, Duration::from_secs(30), 3).unwrap();
            q.send("good").unwrap();
        }
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(MESSAGES)
                .unwrap()
                .insert("0-broken", b"{not json".as_slice())
                .unwrap();
            txn.open_table(DEAD)
                .unwrap()
                .insert("1-broken", b"\xff\x00".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let q = LocalQueue::open(&path, Duration::from_secs(30), 3).unwrap();
        assert_eq!(
            q.depth().unwrap().visible,
            1,
            "the good message stays queued"
        );
        let dead = q.peek_dead(10).unwrap();
        let bodies: Vec<_> = dead
            .iter()
            .map(|m| (m.id.as_str(), m.body.as_str()))
            .collect();
        assert_eq!(
            bodies,
            vec![("0-broken", "{not json"), ("1-broken", "\u{FFFD}\0")],
            "both broken records are kept, readable, in the DLQ"
        );
        assert_eq!(q.receive(10).unwrap()[0].body, "good");
        assert_eq!(
            q.redrive(10).unwrap(),
            2,
            "and can be redriven like any dead letter"
        );
    }

    /// A queue whose disk is full while the flag is set.
    fn on_a_disk_that_can_fill() -> (
        tempfile::TempDir,
        Arc<std::sync::atomic::AtomicBool>,
        LocalQueue,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let q = LocalQueue::open_with(
            notes_handlers::embedded::reopen::flaky_opener(dir.path().join("q.redb"), full.clone()),
            Duration::from_secs(30),
            3,
        )
        .unwrap();
        (dir, full, q)
    }

    #[test]
    fn concurrent_sends_each_land_once_whether_committed_alone_or_together() {
        use std::sync::atomic::Ordering;
        let (_dir, full, q) = on_a_disk_that_can_fill();
        let send_all = |tag: &'static str| -> Vec<QueueResult<String>> {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        q.send_to(Which::Main, &format!("{tag} {i}"), None, Duration::ZERO)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        };
        let ids: std::collections::BTreeSet<String> = send_all("ok")
            .into_iter()
            .map(|r| r.expect("every send is acknowledged"))
            .collect();
        assert_eq!(ids.len(), 32, "one distinct id per send");
        let stored = q.receive(100).unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|m| m.id.clone())
                .collect::<std::collections::BTreeSet<_>>(),
            ids,
            "every acknowledged send is stored, and nothing else"
        );
        // A failed commit fails every caller whose message was in it: none is told "stored".
        full.store(true, Ordering::SeqCst);
        assert!(send_all("while full").iter().all(Result::is_err));
        full.store(false, Ordering::SeqCst);
        std::thread::sleep(notes_handlers::embedded::reopen::RETRY);
        let depth = q.depth().unwrap();
        // (The receive's lazy write went with the closed handle: the 32 are visible again.)
        assert_eq!(
            depth.visible + depth.in_flight,
            32,
            "nothing from the failed sends"
        );
    }

    /// A full disk fails sends (the POST answers 503) and, once space is back, the queue works again
    /// without a restart; what was queued before is all there.
    #[test]
    fn a_full_disk_is_survived_without_a_restart() {
        use notes_handlers::embedded::reopen::RETRY;
        use std::sync::atomic::Ordering;
        let (_dir, full, q) = on_a_disk_that_can_fill();
        q.send("before").unwrap();
        full.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(q.send("while full").is_err());
            std::thread::sleep(RETRY);
        }
        full.store(false, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while q.send("after").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "still failing 5 s after"
            );
            std::thread::sleep(RETRY);
        }
        let bodies: Vec<String> = q.receive(10).unwrap().into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, ["before", "after"]);
    }

    #[test]
    fn messages_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let q = LocalQueue::open(&path, Duration::from_secs(30), 3).unwrap();
            for i in 0..5 {
                q.send(&format!("m{i}")).unwrap();
            }
        }
        let q = LocalQueue::open(&path, Duration::from_secs(30), 3).unwrap();
        let bodies: Vec<_> = q.receive(10).unwrap().into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    }
}
