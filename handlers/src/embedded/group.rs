//! Group commit for the embedded store: durable writes that arrive while another commits wait, and
//! run together in the next write transaction, so one fsync backs many of them. Each caller still
//! returns only once its own write is on disk (or has failed), with its own result: under load,
//! save's ten notes of a batch cost one commit instead of ten, with the same guarantee as alone.
//!
//! A write that fails leaves the transaction; the others of its group run again without it, so one
//! bad record never fails its neighbours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::reopen::Reopening;
use crate::ports::StoreError;

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

#[derive(Default)]
pub struct GroupCommit {
    /// Commits without waiting for the disk (`Durability::None`): for writes whose loss in a crash
    /// only repeats work. They reach the disk with the next durable commit.
    lazy: bool,
    pending: Mutex<Vec<Box<dyn Job>>>,
    /// Held by the one caller committing; the others queue behind it, their writes pending.
    committing: Mutex<()>,
    /// Transactions committed: fewer than writes when writes were grouped.
    commits: AtomicU64,
}

impl GroupCommit {
    /// A group whose commits do not wait for the disk: under load, one commit for the lazy writes
    /// that arrive together instead of one each.
    pub fn lazy() -> Self {
        Self {
            lazy: true,
            ..Self::default()
        }
    }

    /// Runs `write` in a write transaction shared with the writes pending beside it (durable, unless
    /// the group is [`lazy`](Self::lazy)).
    /// Blocking: call it from a blocking thread.
    pub fn write<T, F>(
        &self,
        db: &Reopening,
        operation: &'static str,
        write: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, mut outcome) = oneshot::channel();
        lock(&self.pending).push(Box::new(Typed {
            operation,
            write,
            result: None,
            reply,
        }));
        let _turn = lock(&self.committing);
        if let Ok(done) = outcome.try_recv() {
            // Committed (or failed) in another caller's group while this one waited its turn.
            return done;
        }
        let group = std::mem::take(&mut *lock(&self.pending));
        commit_group(db, group, &self.commits, self.lazy);
        outcome.try_recv().unwrap_or_else(|_| {
            Err(StoreError::new(
                operation,
                "the group commit lost this write",
            ))
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        .map_err(|e| (None, during(operation, e.into())))?;
    if lazy {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| (None, StoreError::new(operation, e)))?;
    }
    for (i, job) in group.iter_mut().enumerate() {
        job.run(&txn).map_err(|e| (Some(i), e))?;
    }
    txn.commit()
        .map_err(|e| (None, during(operation, e.into())))
}

fn during(operation: &'static str, e: redb::Error) -> StoreError {
    if super::reopen::is_io(&e) {
        StoreError::throttled(operation, e)
    } else {
        StoreError::new(operation, e)
    }
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
    use std::sync::Arc;
    use std::time::{Duration, Instant};

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

    /// Writes queued behind a commit in progress go in one transaction; one that fails is told so,
    /// leaves nothing behind, and its neighbours are stored all the same.
    #[test]
    fn writes_that_wait_share_one_commit_and_a_failure_stays_its_own() {
        share_one_commit(GroupCommit::default());
    }

    /// Lazy groups (commits that do not wait for the disk) group the same way.
    #[test]
    fn lazy_writes_that_wait_share_one_commit_too() {
        share_one_commit(GroupCommit::lazy());
    }

    fn share_one_commit(group: GroupCommit) {
        let (db, group) = (db(), Arc::new(group));
        let turn = group.committing.lock().unwrap();
        let writers: Vec<_> = [("a", false), ("bad", true), ("ccc", false)]
            .into_iter()
            .map(|(key, fail)| {
                let (db, group) = (db.clone(), group.clone());
                std::thread::spawn(move || group.write(&db, "t", insert(key, fail)))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&group.pending).len() < 3 {
            assert!(Instant::now() < deadline, "the writers never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(turn);
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
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
            group.commits.load(Ordering::Relaxed),
            1,
            "one commit for the group"
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

    #[test]
    fn a_write_alone_commits_at_once() {
        let (db, group) = (db(), GroupCommit::default());
        assert_eq!(group.write(&db, "t", insert("solo", false)).unwrap(), 4);
        assert_eq!(group.commits.load(Ordering::Relaxed), 1);
    }
}
