//! Connections in the embedded store: the registry's index of every connection, and each user's.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{CONNECTIONS, During, EmbeddedStore, USER_CONNECTIONS, from_json, to_json};
use crate::ports::{Connection, ConnectionRegistry, StoreError};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredConnection {
    connection_id: String,
    username: String,
    connected_at: String,
    ttl: i64,
}

impl From<&Connection> for StoredConnection {
    fn from(c: &Connection) -> Self {
        Self {
            connection_id: c.connection_id.clone(),
            username: c.username.clone(),
            connected_at: c.connected_at.clone(),
            ttl: c.ttl,
        }
    }
}

impl From<StoredConnection> for Connection {
    fn from(c: StoredConnection) -> Self {
        Self {
            connection_id: c.connection_id,
            username: c.username,
            connected_at: c.connected_at,
            ttl: c.ttl,
        }
    }
}

#[async_trait]
impl ConnectionRegistry for EmbeddedStore {
    async fn register(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "registering a connection";
        let stored = StoredConnection::from(connection);
        self.write(OP, move |txn| {
            let bytes = to_json(&stored);
            let mut all = txn.open_table(CONNECTIONS).during(OP)?;
            all.insert(stored.connection_id.as_str(), bytes.as_slice())
                .during(OP)?;
            let mut by_user = txn.open_table(USER_CONNECTIONS).during(OP)?;
            let key = format!("{}\0{}", stored.username, stored.connection_id);
            by_user.insert(key.as_str(), bytes.as_slice()).during(OP)?;
            Ok(())
        })
        .await
    }

    async fn unregister(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        const OP: &str = "removing a connection";
        let id = connection_id.to_owned();
        self.write(OP, move |txn| {
            let mut all = txn.open_table(CONNECTIONS).during(OP)?;
            let removed = all
                .remove(id.as_str())
                .during(OP)?
                .map(|v| v.value().to_vec());
            let Some(bytes) = removed else {
                return Ok(None);
            };
            let stored: StoredConnection = from_json(OP, &bytes)?;
            let mut by_user = txn.open_table(USER_CONNECTIONS).during(OP)?;
            let key = format!("{}\0{}", stored.username, stored.connection_id);
            by_user.remove(key.as_str()).during(OP)?;
            Ok(Some(stored.into()))
        })
        .await
    }

    async fn remove(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "removing a connection";
        let stored = StoredConnection::from(connection);
        self.write(OP, move |txn| {
            let mut all = txn.open_table(CONNECTIONS).during(OP)?;
            all.remove(stored.connection_id.as_str()).during(OP)?;
            let mut by_user = txn.open_table(USER_CONNECTIONS).during(OP)?;
            let key = format!("{}\0{}", stored.username, stored.connection_id);
            by_user.remove(key.as_str()).during(OP)?;
            Ok(())
        })
        .await
    }

    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError> {
        const OP: &str = "listing a user's connections";
        let (lower, upper) = (format!("{username}\0"), format!("{username}\u{1}"));
        self.reading(OP, move |db| {
            let txn = db.begin_read().during(OP)?;
            let t = txn.open_table(USER_CONNECTIONS).during(OP)?;
            let mut out = Vec::new();
            for entry in t.range(lower.as_str()..upper.as_str()).during(OP)? {
                let (_, v) = entry.during(OP)?;
                out.push(from_json::<StoredConnection>(OP, v.value())?.into());
            }
            Ok(out)
        })
        .await
    }

    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        const OP: &str = "listing connections";
        self.reading(OP, move |db| {
            let txn = db.begin_read().during(OP)?;
            let t = txn.open_table(CONNECTIONS).during(OP)?;
            let mut out = Vec::new();
            for entry in t.iter().during(OP)? {
                let (_, v) = entry.during(OP)?;
                out.push(from_json::<StoredConnection>(OP, v.value())?.into());
            }
            Ok(out)
        })
        .await
    }
}
