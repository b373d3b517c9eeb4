//! What each port does, counted: calls, the records they carry and those records' size. `notesctl
//! dev` wraps its ports in [`Metered`] (`Deps::metered`) and serves the [`Meter`]'s counts, so `notesctl load --cost`
//! can say what one note costs in store reads and writes, events put, queue operations, WebSocket
//! posts and function invocations. The counting knows nothing of the adapter underneath; what AWS
//! itself is asked for per note is counted at the SDK (the tests' interceptor on moto).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::cursor::{Page, PageRequest};
use crate::domain::events::NoteEvent;
use crate::domain::feed::FeedRequest;
use crate::domain::note::{Note, NoteId};
use crate::domain::user::UserRecord;
use crate::ports::{
    Connection, ConnectionRegistry, Created, EventBus, Metric, MetricSink, Migrated, NoteStore,
    Notifier, NotifyError, Posted, PublishReport, Saved, StoreError, UserStore,
};

/// One counter: how often, how many records, how many bytes of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Calls made (or, for a function, invocations).
    pub calls: u64,
    /// Records the calls carried: notes, events, messages, connections.
    pub items: u64,
    /// Their size in bytes: the records as JSON; for a function, microseconds of run time.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.calls += other.calls;
        self.items += other.items;
        self.bytes += other.bytes;
    }
}

/// Counters by name (`{port}.{operation}`, `queue.{operation}`, `function.{handler}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counts(pub BTreeMap<String, Tally>);

impl Counts {
    /// What happened after `earlier` was taken (counters only grow; one that did not is left out).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .filter_map(|(k, now)| {
                    let was = earlier.0.get(k).copied().unwrap_or_default();
                    let d = Tally {
                        calls: now.calls.saturating_sub(was.calls),
                        items: now.items.saturating_sub(was.items),
                        bytes: now.bytes.saturating_sub(was.bytes),
                    };
                    (d.calls > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Tally {
        self.0.get(name).copied().unwrap_or_default()
    }
}

/// Counters shared by every metered port of one process.
#[derive(Debug, Default)]
pub struct Meter {
    counts: Mutex<BTreeMap<String, Tally>>,
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::default()
    }

    /// Counts one call of `name` that carried `items` records of `bytes` bytes in all.
    pub fn add(&self, name: &str, items: u64, bytes: u64) {
        let one = Tally {
            calls: 1,
            items,
            bytes,
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get_mut(name) {
            Some(tally) => tally.add(one),
            None => {
                counts.insert(name.to_owned(), one);
            }
        }
    }

    /// Counts one invocation of `function` that ran for `elapsed`.
    pub fn invoked(&self, function: &str, elapsed: std::time::Duration) {
        self.add(
            &format!("function.{function}"),
            1,
            elapsed.as_micros() as u64,
        );
    }

    pub fn snapshot(&self) -> Counts {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        Counts(counts.clone())
    }
}

/// A port that counts what goes through it into a [`Meter`].
pub struct Metered<T: ?Sized> {
    inner: Arc<T>,
    meter: Arc<Meter>,
}

impl<T: ?Sized> Metered<T> {
    pub fn new(inner: Arc<T>, meter: Arc<Meter>) -> Self {
        Self { inner, meter }
    }
}

/// The app's metrics as counters (`metric.{Name}`, and `metric.NotesFailed.{reason}`): a count
/// adds its value to `items`; a latency adds microseconds to `bytes`, so `bytes ÷ calls` is the mean.
pub struct MeterSink(pub Arc<Meter>);

impl MetricSink for MeterSink {
    fn record(&self, metric: Metric) {
        match metric {
            Metric::SaveLatency(ms) => {
                self.0
                    .add("metric.SaveLatency", 1, (ms * 1000.0).max(0.0) as u64)
            }
            Metric::NotesFailed(reason) => {
                self.0
                    .add(&format!("metric.NotesFailed.{}", reason.as_str()), 1, 0)
            }
            other => self
                .0
                .add(&format!("metric.{}", other.name()), other.value() as u64, 0),
        }
    }
}

fn json_size<T: Serialize + ?Sized>(value: &T) -> u64 {
    serde_json::to_vec(value).map_or(0, |v| v.len() as u64)
}

fn connection_size(c: &Connection) -> u64 {
    (c.connection_id.len() + c.username.len() + c.connected_at.len() + 8) as u64
}

fn page_size(page: &Page<Note>) -> (u64, u64) {
    (
        page.items.len() as u64,
        page.items.iter().map(json_size).sum(),
    )
}

#[async_trait]
impl<T: UserStore + ?Sized> UserStore for Metered<T> {
    async fn create_user(&self, user: &UserRecord) -> Result<Created, StoreError> {
        self.meter.add("users.create_user", 1, json_size(user));
        self.inner.create_user(user).await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let got = self.inner.get_user(username).await;
        let found = got.as_ref().ok().and_then(|u| u.as_ref());
        self.meter.add(
            "users.get_user",
            found.is_some() as u64,
            found.map_or(0, json_size),
        );
        got
    }
}

#[async_trait]
impl<T: NoteStore + ?Sized> NoteStore for Metered<T> {
    async fn save_if_absent(&self, note: &Note, lease_until_ms: i64) -> Result<Saved, StoreError> {
        self.meter.add("notes.save_if_absent", 1, json_size(note));
        self.inner.save_if_absent(note, lease_until_ms).await
    }

    async fn claim_announcement(
        &self,
        username: &str,
        note_id: &NoteId,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        let got = self
            .inner
            .claim_announcement(username, note_id, now_ms, lease_until_ms)
            .await;
        let found = got.as_ref().ok().and_then(|n| n.as_ref());
        self.meter.add(
            "notes.claim_announcement",
            found.is_some() as u64,
            found.map_or(0, json_size),
        );
        got
    }

    async fn mark_notified(&self, username: &str, note_id: &NoteId) -> Result<(), StoreError> {
        self.meter.add("notes.mark_notified", 1, 0);
        self.inner.mark_notified(username, note_id).await
    }

    async fn get_note(&self, username: &str, note_id: &NoteId) -> Result<Option<Note>, StoreError> {
        let got = self.inner.get_note(username, note_id).await;
        let found = got.as_ref().ok().and_then(|n| n.as_ref());
        self.meter.add(
            "notes.get_note",
            found.is_some() as u64,
            found.map_or(0, json_size),
        );
        got
    }

    async fn update_content(
        &self,
        username: &str,
        note_id: &NoteId,
        content: &str,
        updated_at: &str,
    ) -> Result<Option<Note>, StoreError> {
        let got = self
            .inner
            .update_content(username, note_id, content, updated_at)
            .await;
        let found = got.as_ref().ok().and_then(|n| n.as_ref());
        self.meter.add(
            "notes.update_content",
            found.is_some() as u64,
            found.map_or(0, json_size),
        );
        got
    }

    async fn delete_note(
        &self,
        username: &str,
        note_id: &NoteId,
        tombstone_until_ms: i64,
    ) -> Result<Option<Note>, StoreError> {
        let got = self
            .inner
            .delete_note(username, note_id, tombstone_until_ms)
            .await;
        let found = got.as_ref().ok().and_then(|n| n.as_ref());
        self.meter.add(
            "notes.delete_note",
            found.is_some() as u64,
            found.map_or(0, json_size),
        );
        got
    }

    async fn list_user_notes(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError> {
        let got = self.inner.list_user_notes(username, page).await;
        let (items, bytes) = got.as_ref().map_or((0, 0), page_size);
        self.meter.add("notes.list_user_notes", items, bytes);
        got
    }

    async fn list_public_notes(&self, page: &FeedRequest) -> Result<Page<Note>, StoreError> {
        let got = self.inner.list_public_notes(page).await;
        let (items, bytes) = got.as_ref().map_or((0, 0), page_size);
        self.meter.add("notes.list_public_notes", items, bytes);
        got
    }

    async fn migrate_public_feed(&self, max: usize) -> Result<Migrated, StoreError> {
        let got = self.inner.migrate_public_feed(max).await;
        let moved = got.as_ref().map_or(0, |m| m.moved as u64);
        self.meter.add("notes.migrate_public_feed", moved, 0);
        got
    }
}

#[async_trait]
impl<T: EventBus + ?Sized> EventBus for Metered<T> {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        self.meter
            .add("bus.publish", events.len() as u64, json_size(events));
        self.inner.publish(events).await
    }
}

#[async_trait]
impl<T: ConnectionRegistry + ?Sized> ConnectionRegistry for Metered<T> {
    async fn register(&self, connection: &Connection) -> Result<(), StoreError> {
        self.meter
            .add("connections.register", 1, connection_size(connection));
        self.inner.register(connection).await
    }

    async fn unregister(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let got = self.inner.unregister(connection_id).await;
        let found = got.as_ref().ok().and_then(|c| c.as_ref());
        self.meter.add(
            "connections.unregister",
            found.is_some() as u64,
            found.map_or(0, connection_size),
        );
        got
    }

    async fn remove(&self, connection: &Connection) -> Result<(), StoreError> {
        self.meter
            .add("connections.remove", 1, connection_size(connection));
        self.inner.remove(connection).await
    }

    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError> {
        let got = self.inner.connections_of(username).await;
        let list = got.as_deref().unwrap_or_default();
        self.meter.add(
            "connections.connections_of",
            list.len() as u64,
            list.iter().map(connection_size).sum(),
        );
        got
    }

    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let got = self.inner.all_connections().await;
        let list = got.as_deref().unwrap_or_default();
        self.meter.add(
            "connections.all_connections",
            list.len() as u64,
            list.iter().map(connection_size).sum(),
        );
        got
    }
}

#[async_trait]
impl<T: Notifier + ?Sized> Notifier for Metered<T> {
    async fn post(&self, connection_id: &str, message: &[u8]) -> Result<Posted, NotifyError> {
        self.meter.add("notifier.post", 1, message.len() as u64);
        self.inner.post(connection_id, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::LocalNotifier;

    #[tokio::test]
    async fn posts_are_counted_with_their_bytes_and_since_subtracts() {
        let meter = Meter::new();
        let notifier = Metered::new(Arc::new(LocalNotifier::new()), meter.clone());
        let before = meter.snapshot();
        let _ = notifier.post("nobody", b"hello").await;
        let _ = notifier.post("nobody", b"hi").await;
        let after = meter.snapshot();
        assert_eq!(
            after.since(&before).get("notifier.post"),
            Tally {
                calls: 2,
                items: 2,
                bytes: 7
            }
        );
        assert!(after.since(&after).0.is_empty());
    }
}
