//! The one writer of an embedded database: a thread that takes every write sent to it and runs
//! those that arrived together in one write transaction, so one commit (and one fsync) backs many
//! of them. Each caller is answered only once its own write is on disk (or has failed), with its own
//! result: under load, save's ten notes of a batch cost one commit instead of ten, with the same
//! guarantee as alone. Callers never hold a thread while they wait: an async caller awaits its
//! answer, and the database sees one writer, never several contending for redb's write slot.
//!
//! A write is durable (its commit waits for the disk) or lazy (for facts whose loss in a crash only
//! repeats work); a group with any durable write commits durably.
//!
//! A write that fails leaves the transaction; the others of its group run again without it, so one
//! bad record never fails its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::reopen::{Reopening, store_error};
use crate::ports::StoreError;

/// The most writes one transaction takes: a bound on how long the first of them waits.
const MAX_GROUP: usize = 256;

/// One caller's write, its result kept until the commit decides it.
trait Job: Send {
    fn operation(&self) -> &'static str;
    /// Runs the write in `txn`. Run again (from the start) if a neighbour failed the transaction.
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError>;
    /// Tells the caller: its result once `committed` is Ok, else the commit's error.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Typed<T, F> {
    operation: &'static str,
    write: F,
    result: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send,
    F: Fn(&WriteTransaction) -> Result<T, StoreError> + Send,
{
    fn operation(&self) -> &'static str {
        self.operation
    }

    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        self.result = Some((self.write)(txn)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let this = *self;
        let out = committed.and_then(|()| {
            this.result
                .ok_or_else(|| StoreError::new(this.operation, "the write never ran"))
        });
        // The caller may have gone (its task cancelled): nothing to tell.
        let _ = this.reply.send(out);
    }
}

/// Whether a write's commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged only once on disk.
    Durable,
    /// Committed without waiting for the disk (`redb::Durability::None`); it reaches the disk with
    /// the next durable commit. Lost in a crash, it must only repeat work.
    Lazy,
}

struct Queued {
    durability: Durability,
    job: Box<dyn Job>,
}

/// A database's writer thread. Dropping the last handle lets the thread finish the writes sent
/// and waits for it, so the database is closed when the drop returns.
pub struct Writer {
    jobs: Option<mpsc::Sender<Queued>>,
    thread: Option<JoinHandle<()>>,
    /// Transactions committed: fewer than writes when writes were grouped.
    commits: Arc<AtomicU64>,
}

/// A write whose answer is still to come: `.await` it, or [`Pending::wait`] on a thread that may block.
pub struct Pending<T> {
    operation: &'static str,
    answer: Option<oneshot::Receiver<Result<T, StoreError>>>,
}

fn lost(operation: &'static str) -> StoreError {
    StoreError::new(
        operation,
        "the database's writer did not answer: it stopped, or this write panicked (see the log)",
    )
}

impl<T> Pending<T> {
    /// Blocks the calling thread until the write is decided (never call it on an async worker).
    pub fn wait(self) -> Result<T, StoreError> {
        match self.answer {
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(lost(self.operation))),
            None => Err(lost(self.operation)),
        }
    }
}

impl<T> std::future::IntoFuture for Pending<T>
where
    T: Send + 'static,
{
    type Output = Result<T, StoreError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.answer {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(lost(self.operation))),
                None => Err(lost(self.operation)),
            }
        })
    }
}

impl Writer {
    /// Starts the writer thread of `db` (`name` names the thread).
    pub fn start(name: &str, db: Arc<Reopening>) -> Writer {
        let (tx, rx) = mpsc::channel::<Queued>();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{name} writer"))
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let lazy = group.iter().all(|q| q.durability == Durability::Lazy);
                    let jobs = group.into_iter().map(|q| q.job).collect();
                    // A write that panics fails its group (each caller is told the writer did not
                    // answer); the thread goes on with the next.
                    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        commit_group(&db, jobs, &counted, lazy)
                    }));
                    if committed.is_err() {
                        tracing::error!(database = %name, "a write panicked; its group failed");
                    }
                }
            })
            .expect("a thread can be started for the database writer");
        Writer {
            jobs: Some(tx),
            thread: Some(thread),
            commits,
        }
    }

    /// Sends `write` to the writer; it runs in the next transaction with the writes sent beside it.
    pub fn submit<T, F>(
        &self,
        operation: &'static str,
        durability: Durability,
        write: F,
    ) -> Pending<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            operation,
            write,
            result: None,
            reply,
        });
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Queued { durability, job }).is_ok());
        Pending {
            operation,
            answer: sent.then_some(answer),
        }
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // The writes already sent are finished first; then the thread lets the database go.
            let _ = thread.join();
        }
    }
}

/// Runs every job in one transaction and commits it; a job that fails is answered with its error
/// and the rest run again without it.
fn commit_group(db: &Reopening, mut group: Vec<Box<dyn Job>>, commits: &AtomicU64, lazy: bool) {
    while !group.is_empty() {
        let handle = match db.get() {
            Ok(handle) => handle,
            Err(e) => {
                let text = crate::domain::error::Chain(&e).to_string();
                for job in group {
                    let err = shared(job.operation(), true, &text);
                    job.finish(Err(err));
                }
                return;
            }
        };
        match run_all(&handle, &mut group, lazy) {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for job in group {
                    job.finish(Ok(()));
                }
                return;
            }
            Err((None, e)) => {
                // Beginning or committing failed: every write of the group shares that fate.
                db.failed(&handle, &e);
                let text = e.chain().to_string();
                for job in group {
                    let err = shared(job.operation(), e.is_throttled(), &text);
                    job.finish(Err(err));
                }
                return;
            }
            Err((Some(i), e)) => {
                db.failed(&handle, &e);
                group.remove(i).finish(Err(e));
            }
        }
    }
}

/// `Err((Some(i), e))`: job `i` failed (the transaction was dropped, nothing of it stored);
/// `Err((None, e))`: the transaction itself failed.
fn run_all(
    db: &Database,
    group: &mut [Box<dyn Job>],
    lazy: bool,
) -> Result<(), (Option<usize>, StoreError)> {
    let operation = group.first().map_or("writing", |j| j.operation());
    let mut txn = db
        .begin_write()
        .map_err(|e| (None, store_error(operation, e)))?;
    if lazy {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| (None, StoreError::new(operation, e)))?;
    }
    for (i, job) in group.iter_mut().enumerate() {
        job.run(&txn).map_err(|e| (Some(i), e))?;
    }
    txn.commit().map_err(|e| (None, store_error(operation, e)))
}

/// A failure the whole group shares, as each job's own error.
fn shared(operation: &'static str, throttled: bool, text: &str) -> StoreError {
    if throttled {
        StoreError::throttled(operation, text.to_owned())
    } else {
        StoreError::new(operation, text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn db() -> Arc<Reopening> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        Arc::new(Reopening::fixed("test", db))
    }

    fn insert(
        key: &'static str,
        fail: bool,
    ) -> impl Fn(&WriteTransaction) -> Result<u64, StoreError> + Send {
        move |txn| {
            let mut t = txn.open_table(T).map_err(|e| StoreError::new("t", e))?;
            t.insert(key, 1).map_err(|e| StoreError::new("t", e))?;
            if fail {
                return Err(StoreError::new("t", format!("{key} refused")));
            }
            Ok(key.len() as u64)
        }
    }

    /// Writes sent while the writer commits go in one transaction; one that fails is told so,
    /// leaves nothing behind, and its neighbours are stored all the same — durable and lazy alike.
    #[test]
    fn writes_that_wait_share_one_commit_and_a_failure_stays_its_own() {
        for durability in [Durability::Durable, Durability::Lazy] {
            share_one_commit(durability);
        }
    }

    fn share_one_commit(durability: Durability) {
        let db = db();
        let writer = Writer::start("test", db.clone());
        // A first write that holds the writer until the others are sent.
        let (running_tx, running) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = writer.submit("t", durability, move |txn| {
            let _ = running_tx.send(());
            let _ = released.recv_timeout(Duration::from_secs(10));
            insert("first", false)(txn)
        });
        running
            .recv_timeout(Duration::from_secs(10))
            .expect("the first write runs");
        let waiting: Vec<_> = [("a", false), ("bad", true), ("ccc", false)]
            .into_iter()
            .map(|(key, fail)| writer.submit("t", durability, insert(key, fail)))
            .collect();
        release.send(()).unwrap();
        assert_eq!(first.wait().unwrap(), 5);
        let results: Vec<_> = waiting.into_iter().map(Pending::wait).collect();
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(
            results[1]
                .as_ref()
                .unwrap_err()
                .chain()
                .to_string()
                .contains("bad refused")
        );
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert_eq!(
            writer.commits(),
            2,
            "one commit for the first write, one for the three sent while it ran"
        );
        let handle = db.get().unwrap();
        let read = handle.begin_read().unwrap();
        let t = read.open_table(T).unwrap();
        assert!(t.get("a").unwrap().is_some());
        assert!(t.get("ccc").unwrap().is_some());
        assert!(
            t.get("bad").unwrap().is_none(),
            "the failed write left nothing"
        );
    }

    #[tokio::test]
    async fn a_write_alone_commits_at_once_and_is_awaited() {
        let writer = Writer::start("test", db());
        let written = writer
            .submit("t", Durability::Durable, insert("solo", false))
            .await;
        assert_eq!(written.unwrap(), 4);
        assert_eq!(writer.commits(), 1);
    }

    /// A write that panics fails its own caller, not the writer: the next write is stored.
    #[test]
    fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let writer = Writer::start("test", db());
        let panicked = writer
            .submit(
                "t",
                Durability::Durable,
                |_txn| -> Result<u64, StoreError> { panic!("a bug in a write") },
            )
            .wait();
        assert!(
            panicked
                .unwrap_err()
                .chain()
                .to_string()
                .contains("writer did not answer")
        );
        let next = writer.submit("t", Durability::Durable, insert("after", false));
        assert_eq!(next.wait().unwrap(), 5);
    }

    /// Dropping the writer finishes what was sent and releases the database: a file database can be
    /// opened again at once.
    #[test]
    fn dropping_the_writer_finishes_its_writes_and_closes_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.redb");
        let open = {
            let path = path.clone();
            move || Database::create(&path)
        };
        let writer = Writer::start("test", Arc::new(Reopening::new("test", open).unwrap()));
        let pending = writer.submit("t", Durability::Lazy, insert("kept", false));
        drop(writer);
        assert_eq!(pending.wait().unwrap(), 4);
        let reopened = Database::create(&path).expect("the writer let the database go");
        let read = reopened.begin_read().unwrap();
        assert!(read.open_table(T).unwrap().get("kept").unwrap().is_some());
    }
}
