//! The capabilities the domain needs, each a narrow trait. AWS edge cases are typed outcomes
//! (`Saved::AlreadyExists`, `Posted::Gone`, `PublishReport::failed`), not errors.

use async_trait::async_trait;

use crate::domain::AppError;
use crate::domain::cursor::{Page, PageRequest};
pub use crate::domain::error::Chain;
use crate::domain::events::NoteEvent;
use crate::domain::feed::FeedRequest;
use crate::domain::note::{Note, NoteId};
use crate::domain::user::UserRecord;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// A storage operation failed. `throttled` marks failures a retry may fix. The cause is kept as
/// itself (the SDK's or the database's error), so `{:#}` and `source()` reach every layer; one line
/// of all of them is [`StoreError::chain`].
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed")]
pub struct StoreError {
    pub operation: &'static str,
    pub throttled: bool,
    #[source]
    pub source: Source,
}

impl StoreError {
    pub fn new(operation: &'static str, source: impl Into<Source>) -> Self {
        Self {
            operation,
            throttled: false,
            source: source.into(),
        }
    }

    pub fn throttled(operation: &'static str, source: impl Into<Source>) -> Self {
        Self {
            operation,
            throttled: true,
            source: source.into(),
        }
    }

    /// Throttled, conflicting or a server error: a retry may succeed.
    pub fn is_throttled(&self) -> bool {
        self.throttled
    }

    /// The error and its causes on one line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// A failed store call fails the request: 503 when a retry may succeed, 500 otherwise.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if e.is_throttled() {
            AppError::Unavailable(e.chain().to_string())
        } else {
            AppError::Internal(e.chain().to_string())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Stored now; the caller holds the announcement lease and should publish `note-saved`.
    Created,
    /// Stored by an earlier delivery.
    AlreadyExists,
    /// Its owner deleted it after an earlier delivery stored it: a redelivery must not bring it back.
    Deleted,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user unless the name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<Created, StoreError>;
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
}

#[async_trait]
pub trait NoteStore: Send + Sync {
    /// Stores the note under its owner (and in its shard of the public feed if public) unless it is already
    /// there or was deleted: the conditional write that makes save idempotent. A new note is stored
    /// with an announcement lease until `lease_until_ms`, held by the caller.
    async fn save_if_absent(&self, note: &Note, lease_until_ms: i64) -> Result<Saved, StoreError>;
    /// Takes the right to announce a stored note whose `note-saved` has not gone out, if no one
    /// holds an unexpired lease on it: the note, or `None` (announced already, leased, or gone).
    /// Concurrent deliveries of one note thus publish one `note-saved`.
    async fn claim_announcement(
        &self,
        username: &str,
        note_id: &NoteId,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Note>, StoreError>;
    /// Records that the note's `note-saved` event was published.
    async fn mark_notified(&self, username: &str, note_id: &NoteId) -> Result<(), StoreError>;
    /// The owner's note, found by key.
    async fn get_note(&self, username: &str, note_id: &NoteId) -> Result<Option<Note>, StoreError>;
    /// Replaces the content of the owner's note (both copies of a public one); `None` if the owner
    /// has no such note.
    async fn update_content(
        &self,
        username: &str,
        note_id: &NoteId,
        content: &str,
        updated_at: &str,
    ) -> Result<Option<Note>, StoreError>;
    /// Deletes the owner's note (both copies of a public one) and leaves a tombstone until
    /// `tombstone_until_ms`, so a late redelivery of its `note-created` cannot store it again; the
    /// deleted note, or `None`. Once the tombstone has expired it counts for nothing, as DynamoDB's
    /// TTL would have removed it.
    async fn delete_note(
        &self,
        username: &str,
        note_id: &NoteId,
        tombstone_until_ms: i64,
    ) -> Result<Option<Note>, StoreError>;
    /// The owner's notes, private and public, newest first.
    async fn list_user_notes(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<Note>, StoreError>;
    /// Everyone's public notes, newest first, merged from every shard of the feed (and the
    /// unsharded partition while it holds notes).
    async fn list_public_notes(&self, page: &FeedRequest) -> Result<Page<Note>, StoreError>;
    /// One step of moving the public feed into its shards: up to `max` notes from the unsharded
    /// partition, or from shards past the current count, to their shard (and each owner's copy
    /// made or told where the feed copy now is). Idempotent; run until `remaining` is false.
    async fn migrate_public_feed(&self, max: usize) -> Result<Migrated, StoreError>;
}

/// What one step of [`NoteStore::migrate_public_feed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Notes moved into their shard.
    pub moved: usize,
    /// Of those, notes that had no owner's copy (stored by the original system) and now have one.
    pub owner_copies_made: usize,
    /// Whether notes are left to move.
    pub remaining: bool,
}

/// One entry the bus did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Index into the slice given to `publish`.
    pub index: usize,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub failed: Vec<FailedEntry>,
}

impl PublishReport {
    pub fn all_accepted(&self) -> bool {
        self.failed.is_empty()
    }
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes the events. Entries the bus refused are in the report; `Err` means the call itself
    /// failed and nothing is known to be published.
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError>;
}

/// A WebSocket connection as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    pub username: String,
    pub connected_at: String,
    /// Epoch seconds after which the row may be expired by the store.
    pub ttl: i64,
}

/// Connection rows live two hours, as in the original.
pub const CONNECTION_TTL_SECS: i64 = 2 * 60 * 60;

#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    async fn register(&self, connection: &Connection) -> Result<(), StoreError>;
    /// Removes a connection by id (its owner is looked up); the removed connection, if any.
    async fn unregister(&self, connection_id: &str) -> Result<Option<Connection>, StoreError>;
    /// Removes a connection whose owner is known: every row of it, under its own username.
    async fn remove(&self, connection: &Connection) -> Result<(), StoreError>;
    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError>;
    /// Every live connection, from the registry's own index (never a table scan).
    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Delivered,
    /// The connection no longer exists (HTTP 410).
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Throttled or a 5xx: worth posting again after a pause.
    #[error("posting to connection {connection_id} failed in passing: {reason}")]
    Retryable {
        connection_id: String,
        reason: String,
    },
    #[error("posting to connection {connection_id} failed: {reason}")]
    Failed {
        connection_id: String,
        reason: String,
    },
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn post(&self, connection_id: &str, message: &[u8]) -> Result<Posted, NotifyError>;
}

#[derive(Debug, thiserror::Error)]
#[error("reading the JWT secret failed: {0}")]
pub struct SecretError(pub String);

#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn jwt_secret(&self) -> Result<Vec<u8>, SecretError>;
}

/// Why a note was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// It could not be stored by its last delivery (its author got `note-failed`).
    Store,
    /// The message is not a `note-created` event: it goes to the DLQ after its last delivery.
    Unreadable,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Store => "store",
            FailReason::Unreadable => "unreadable",
        }
    }
}

/// What the app reports about itself, beside what AWS measures of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A note accepted for saving (202).
    NotesPublished,
    /// A note stored by its first delivery to do so.
    NotesSaved,
    /// A note (or message) given up on, on its last delivery.
    NotesFailed(FailReason),
    /// From `note-created` to stored, in milliseconds.
    SaveLatency(f64),
    /// Connections one notify invocation delivered to.
    ConnectionsReached(u64),
    /// Connections found gone (410) and removed from the registry.
    StaleConnectionsRemoved(u64),
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::NotesPublished => "NotesPublished",
            Metric::NotesSaved => "NotesSaved",
            Metric::NotesFailed(_) => "NotesFailed",
            Metric::SaveLatency(_) => "SaveLatency",
            Metric::ConnectionsReached(_) => "ConnectionsReached",
            Metric::StaleConnectionsRemoved(_) => "StaleConnectionsRemoved",
        }
    }

    /// The unit CloudWatch knows it by.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::SaveLatency(_) => "Milliseconds",
            _ => "Count",
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Metric::NotesPublished | Metric::NotesSaved | Metric::NotesFailed(_) => 1.0,
            Metric::SaveLatency(ms) => ms,
            Metric::ConnectionsReached(n) | Metric::StaleConnectionsRemoved(n) => n as f64,
        }
    }
}

/// Where metrics go: CloudWatch (as Embedded Metric Format log lines) on Lambda, counters in `dev`.
/// Recording never fails the caller.
pub trait MetricSink: Send + Sync {
    fn record(&self, metric: Metric);
}

/// Metrics dropped: the default of a `Deps` built without a sink (tests).
pub struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _: Metric) {}
}
