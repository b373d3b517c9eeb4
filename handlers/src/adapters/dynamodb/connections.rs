//! The connection registry: a connection's rows, and the eight-partition index for broadcasts.

use super::*;

#[async_trait]
impl ConnectionRegistry for DynamoStore {
    async fn register(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "registering a connection";
        let items = connection_keys(connection)
            .into_iter()
            .map(|(pk, sk)| {
                let put = build(
                    OP,
                    Put::builder()
                        .table_name(&self.connections_table)
                        .set_item(Some(connection_item(pk, sk, connection)))
                        .build(),
                )?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.transact(OP, items).await.map(|_| ())
    }

    async fn unregister(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        const OP: &str = "removing a connection";
        let meta = self
            .get_item(
                OP,
                &self.connections_table,
                key(format!("CONNECTION#{connection_id}"), "META"),
            )
            .await?;
        let Some(meta) = meta else { return Ok(None) };
        let connection = connection_from_item(OP, &meta)?;
        self.remove(&connection).await?;
        Ok(Some(connection))
    }

    async fn remove(&self, connection: &Connection) -> Result<(), StoreError> {
        const OP: &str = "removing a connection";
        let items = connection_keys(connection)
            .into_iter()
            .map(|(pk, sk)| {
                let delete = build(
                    OP,
                    Delete::builder()
                        .table_name(&self.connections_table)
                        .set_key(Some(key(pk, sk)))
                        .build(),
                )?;
                Ok(TransactWriteItem::builder().delete(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.transact(OP, items).await.map(|_| ())
    }

    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError> {
        self.query_all_connections("listing a user's connections", user_pk(username))
            .await
    }

    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let shards = (0..INDEX_SHARDS).map(|n| {
            self.query_all_connections("listing connections", format!("{CONNECTIONS_INDEX_PK}#{n}"))
        });
        Ok(futures::future::try_join_all(shards)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
