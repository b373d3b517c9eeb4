//! A redb database that comes back by itself after an I/O error. redb refuses every call after one
//! ("Previous I/O error occurred. Please close and re-open the database"), so one full disk would
//! break `notesctl dev` until a restart. Here a failed I/O closes the database; the next call reopens
//! it (at most every [`RETRY`]), and once space is back, work resumes. A commit either reached the
//! disk before its caller was told so, or it did not happen: reopening loses nothing acknowledged.
//! Each transition (closed, reopened) is logged once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

/// How often a closed database is tried again.
pub const RETRY: Duration = Duration::from_millis(200);

type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

pub struct Reopening {
    name: String,
    open: Option<Opener>,
    state: Mutex<State>,
}

struct State {
    current: Option<Arc<Database>>,
    last_try: Option<Instant>,
    /// Why it is closed, while it is.
    broken: Option<String>,
}

/// Whether an error means the storage under the database failed (a full disk, a read-only
/// filesystem): the database must be reopened before it works again.
pub fn is_io(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<redb::Error>()
            && matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<redb::StorageError>()
            && matches!(
                e,
                redb::StorageError::Io(_) | redb::StorageError::PreviousIo
            )
        {
            return true;
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A failed database call as the store's error, its cause kept: a failed disk may come back (space
/// freed), so an I/O failure is throttled (503, a retry may succeed), anything else is not (500).
pub fn store_error(operation: &'static str, e: impl Into<redb::Error>) -> crate::ports::StoreError {
    let e: redb::Error = e.into();
    if is_io(&e) {
        crate::ports::StoreError::throttled(operation, e)
    } else {
        crate::ports::StoreError::new(operation, e)
    }
}

impl Reopening {
    /// Opens with `open`, and reopens with it after an I/O error.
    pub fn new(
        name: impl Into<String>,
        open: impl Fn() -> Result<Database, DatabaseError> + Send + Sync + 'static,
    ) -> Result<Reopening, DatabaseError> {
        let db = open()?;
        Ok(Reopening {
            name: name.into(),
            open: Some(Box::new(open)),
            state: Mutex::new(State {
                current: Some(Arc::new(db)),
                last_try: None,
                broken: None,
            }),
        })
    }

    /// A database that cannot be reopened (in memory: reopening would make an empty one).
    pub fn fixed(name: impl Into<String>, db: Database) -> Reopening {
        Reopening {
            name: name.into(),
            open: None,
            state: Mutex::new(State {
                current: Some(Arc::new(db)),
                last_try: None,
                broken: None,
            }),
        }
    }

    /// The open database, reopening it first if an I/O error closed it.
    pub fn get(&self) -> Result<Arc<Database>, redb::Error> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = &state.current {
            return Ok(db.clone());
        }
        let closed = |why: &str| {
            redb::Error::Io(std::io::Error::other(format!(
                "the {} is closed after an I/O error ({why}); it is reopened as soon as the disk allows",
                self.name
            )))
        };
        let why = state.broken.clone().unwrap_or_default();
        if state.last_try.is_some_and(|t| t.elapsed() < RETRY) {
            return Err(closed(&why));
        }
        state.last_try = Some(Instant::now());
        let Some(open) = &self.open else {
            return Err(closed(&why));
        };
        match open() {
            Ok(db) => {
                tracing::warn!(database = %self.name, "reopened after the I/O error; working again");
                let db = Arc::new(db);
                state.current = Some(db.clone());
                state.broken = None;
                Ok(db)
            }
            // Calls still finishing on the old handle keep it locked; the next call tries again.
            Err(e) => Err(closed(&format!("{why}; reopening: {e}"))),
        }
    }

    /// Reports that a call on `db` failed with `err`. An I/O error closes it, so the next call
    /// reopens it; anything else leaves it as it is.
    pub fn failed(&self, db: &Arc<Database>, err: &(dyn std::error::Error + 'static)) {
        if !is_io(err) || self.open.is_none() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, db)) {
            let text = crate::domain::error::Chain(err).to_string();
            tracing::error!(database = %self.name, error = %text, "I/O error: closing the database; it is reopened once the disk allows (is it full?)");
            state.current = None;
            state.broken = Some(text);
            state.last_try = None;
        }
    }
}

/// A storage backend that fails writes while told to, as a full disk does: for tests of recovery.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct FlakyDisk {
    inner: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
    /// `sync_data` calls that succeeded: durable commits reaching the disk.
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(any(test, feature = "test-support"))]
impl FlakyDisk {
    /// Over `file`; writes fail with "No space left on device" while `full` is set.
    pub fn new(
        file: std::fs::File,
        full: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<FlakyDisk, DatabaseError> {
        Ok(FlakyDisk {
            inner: redb::backends::FileBackend::new(file)?,
            full,
            syncs: Default::default(),
        })
    }

    /// Counts its successful `sync_data` calls in `syncs`.
    pub fn counting_syncs(mut self, syncs: Arc<std::sync::atomic::AtomicU64>) -> FlakyDisk {
        self.syncs = syncs;
        self
    }

    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }
}

#[cfg(any(test, feature = "test-support"))]
impl redb::StorageBackend for FlakyDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.inner.len()? {
            self.check()?;
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.sync_data()?;
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// An opener for `path` through a [`FlakyDisk`] (tests of recovery).
#[cfg(any(test, feature = "test-support"))]
pub fn flaky_opener(
    path: std::path::PathBuf,
    full: Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn() -> Result<Database, DatabaseError> + Send + Sync + 'static {
    counting_opener(path, full, Default::default())
}

/// [`flaky_opener`], counting the disk's successful syncs in `syncs`.
#[cfg(any(test, feature = "test-support"))]
pub fn counting_opener(
    path: std::path::PathBuf,
    full: Arc<std::sync::atomic::AtomicBool>,
    syncs: Arc<std::sync::atomic::AtomicU64>,
) -> impl Fn() -> Result<Database, DatabaseError> + Send + Sync + 'static {
    move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Database::builder()
            .create_with_backend(FlakyDisk::new(file, full.clone())?.counting_syncs(syncs.clone()))
    }
}
