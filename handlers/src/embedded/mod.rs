//! Embedded twins of the AWS adapters, for `notesctl dev` and for tests: a redb database for users,
//! notes and connections, a channel for events, local WebSocket senders for notifications, and a
//! key file for the JWT secret.

mod bus;
mod notifier;
mod secret;
mod store;

pub use bus::ChannelBus;
pub use notifier::LocalNotifier;
pub use secret::{FileSecret, StaticSecret};
pub use store::EmbeddedStore;
