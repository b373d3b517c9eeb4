//! Embedded twins of the AWS adapters, for `notesctl dev` and for tests: a redb database for users,
//! notes and connections, a channel for events, local WebSocket senders for notifications, and a
//! key file for the JWT secret.

mod bus;
pub mod files;
pub mod group;
mod notifier;
pub mod reopen;
mod secret;
mod store;

pub use bus::ChannelBus;
pub use notifier::LocalNotifier;
pub use secret::{FileSecret, StaticSecret};
pub use store::EmbeddedStore;

use std::sync::Arc;

use crate::deps::{Deps, Settings};
use crate::domain::events::NoteEvent;
use crate::ports::SecretSource;

/// Everything embedded: one store for users, notes and connections; a channel bus (events arrive on
/// the returned receiver); local WebSocket senders.
pub fn deps(
    store: EmbeddedStore,
    secret: Arc<dyn SecretSource>,
    settings: Settings,
) -> (
    Deps,
    LocalNotifier,
    tokio::sync::mpsc::UnboundedReceiver<NoteEvent>,
) {
    let (bus, events) = ChannelBus::new();
    let notifier = LocalNotifier::new();
    let store = Arc::new(store);
    let deps = Deps::new(
        store.clone(),
        store.clone(),
        Arc::new(bus),
        store,
        Arc::new(notifier.clone()),
        secret,
        settings,
    );
    (deps, notifier, events)
}
