//! Trait fakes for the outcomes the embedded ports never produce: refused events, failing stores,
//! gone and throttled connections.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use notes_handlers::domain::cursor::{Page, PageRequest};
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::feed::FeedRequest;
use notes_handlers::domain::note::{Note, NoteId};
use notes_handlers::ports::*;

/// Refuses the first `refusals` entries (as PutEvents does with `FailedEntryCount > 0`), then accepts.
/// With `only`, refuses entries of that detail-type only.
#[derive(Default)]
pub struct RefusingBus {
    pub refusals: AtomicUsize,
    pub only: Option<&'static str>,
    pub accepted: Mutex<Vec<NoteEvent>>,
    pub attempted: Mutex<Vec<NoteEvent>>,
    pub calls: AtomicUsize,
}

impl RefusingBus {
    pub fn refusing(n: usize) -> Self {
        Self {
            refusals: AtomicUsize::new(n),
            ..Default::default()
        }
    }
}

#[async_trait]
impl EventBus for RefusingBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut report = PublishReport::default();
        for (index, e) in events.iter().enumerate() {
            self.attempted.lock().unwrap().push(e.clone());
            let left = self.refusals.load(Ordering::SeqCst);
            if left > 0 && self.only.is_none_or(|t| t == e.detail_type()) {
                self.refusals.store(left - 1, Ordering::SeqCst);
                report.failed.push(FailedEntry {
                    index,
                    code: "InternalFailure".into(),
                    message: "refused by the fake".into(),
                });
            } else {
                self.accepted.lock().unwrap().push(e.clone());
            }
        }
        Ok(report)
    }
}

/// A note store whose writes always fail.
pub struct BrokenNotes;

#[async_trait]
impl NoteStore for BrokenNotes {
    async fn save_if_absent(&self, _: &Note, _: i64) -> Result<Saved, StoreError> {
        Err(StoreError::new("saving a note", "the table is unavailable"))
    }
    async fn claim_announcement(
        &self,
        _: &str,
        _: &NoteId,
        _: i64,
        _: i64,
    ) -> Result<Option<Note>, StoreError> {
        Err(StoreError::new("claiming", "unavailable"))
    }
    async fn mark_notified(&self, _: &str, _: &NoteId) -> Result<(), StoreError> {
        Err(StoreError::new("marking", "unavailable"))
    }
    async fn get_note(&self, _: &str, _: &NoteId) -> Result<Option<Note>, StoreError> {
        Err(StoreError::new("reading a note", "unavailable"))
    }
    async fn update_content(
        &self,
        _: &str,
        _: &NoteId,
        _: &str,
        _: &str,
    ) -> Result<Option<Note>, StoreError> {
        Err(StoreError::new("updating", "unavailable"))
    }
    async fn delete_note(&self, _: &str, _: &NoteId, _: i64) -> Result<Option<Note>, StoreError> {
        Err(StoreError::new("deleting", "unavailable"))
    }
    async fn list_user_notes(&self, _: &str, _: &PageRequest) -> Result<Page<Note>, StoreError> {
        Err(StoreError::throttled("listing notes", "throttled"))
    }
    async fn list_public_notes(&self, _: &FeedRequest) -> Result<Page<Note>, StoreError> {
        Err(StoreError::new("listing", "unavailable"))
    }
    async fn migrate_public_feed(&self, _: usize) -> Result<Migrated, StoreError> {
        Err(StoreError::new("migrating", "unavailable"))
    }
}

/// What a scripted post answers for a connection.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    Deliver,
    Gone,
    Throttle,
    /// Throttled this many times, then delivered.
    ThrottleTimes(u32),
}

#[derive(Default)]
pub struct ScriptedNotifier {
    pub scripts: HashMap<String, Script>,
    pub delivered: Mutex<Vec<(String, String)>>,
    /// Posts per connection, whatever they answered.
    pub posts: Mutex<HashMap<String, u32>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl ScriptedNotifier {
    pub fn new(scripts: &[(&str, Script)]) -> Self {
        Self {
            scripts: scripts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ..Default::default()
        }
    }
    pub fn posts_to(&self, connection_id: &str) -> u32 {
        self.posts
            .lock()
            .unwrap()
            .get(connection_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn delivered_to(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl Notifier for ScriptedNotifier {
    async fn post(&self, connection_id: &str, message: &[u8]) -> Result<Posted, NotifyError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let posts = {
            let mut all = self.posts.lock().unwrap();
            let n = all.entry(connection_id.to_owned()).or_default();
            *n += 1;
            *n
        };
        let script = match self.scripts.get(connection_id).copied() {
            Some(Script::ThrottleTimes(n)) if posts > n => Script::Deliver,
            Some(Script::ThrottleTimes(_)) => Script::Throttle,
            other => other.unwrap_or(Script::Deliver),
        };
        match script {
            Script::Deliver => {
                self.delivered.lock().unwrap().push((
                    connection_id.to_owned(),
                    String::from_utf8_lossy(message).into_owned(),
                ));
                Ok(Posted::Delivered)
            }
            Script::Gone => Ok(Posted::Gone),
            Script::Throttle | Script::ThrottleTimes(_) => Err(NotifyError::Retryable {
                connection_id: connection_id.to_owned(),
                reason: "LimitExceededException".into(),
            }),
        }
    }
}

/// A metric sink that keeps what it is given.
#[derive(Default)]
pub struct RecordedMetrics(std::sync::Mutex<Vec<Metric>>);

impl RecordedMetrics {
    pub fn taken(&self) -> Vec<Metric> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl MetricSink for RecordedMetrics {
    fn record(&self, metric: Metric) {
        self.0.lock().unwrap().push(metric);
    }
}

/// A bus that accepts everything and keeps, for each event, the trace it was published in.
#[derive(Default)]
pub struct TracingBus(Mutex<Vec<(&'static str, Option<String>)>>);

impl TracingBus {
    pub fn published(&self) -> Vec<(&'static str, Option<String>)> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventBus for TracingBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        let trace = notes_handlers::trace::current();
        let mut published = self.0.lock().unwrap();
        for e in events {
            published.push((e.detail_type(), trace.clone()));
        }
        Ok(PublishReport::default())
    }
}
