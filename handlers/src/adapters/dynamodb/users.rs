//! Users: one profile item per account, keyed by the name's normalised form.

use super::*;

#[async_trait]
impl UserStore for DynamoStore {
    async fn create_user(&self, user: &UserRecord) -> Result<Created, StoreError> {
        const OP: &str = "creating a user";
        let mut item = key(profile_pk(&user.username), "PROFILE");
        item.insert("username".into(), s(&user.username));
        item.insert("passwordHash".into(), s(&user.password_hash));
        item.insert("createdAt".into(), s(&user.created_at));
        match self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(Created::Created),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(Created::AlreadyExists)
            }
            Err(e) => Err(store_error(OP, e)),
        }
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        const OP: &str = "reading a user";
        let Some(item) = self
            .get_item(OP, &self.table, key(profile_pk(username), "PROFILE"))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(UserRecord {
            username: get_s(&item, "username").ok_or_else(|| malformed(OP, "username"))?,
            password_hash: get_s(&item, "passwordHash")
                .ok_or_else(|| malformed(OP, "passwordHash"))?,
            created_at: get_s(&item, "createdAt").unwrap_or_default(),
        }))
    }
}
